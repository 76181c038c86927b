// Drives one subscription's bucket_aggregator on its stream's thread: committed readings go in in
// id order; when a series needs storage's view first (its first reading here, or a late reading
// into a closed bucket), the feed pauses, reads it on the query pool, and goes on. Shared by the
// SSE stream, long polls and WebSocket bucket subscriptions (docs/api.md section 4.1).
#pragma once

#include "core/bucket_aggregator.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <deque>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

namespace telemetry::bridge {

class query_pool;

// Thread safety: every call on the owner's executor, where the sink is called too. The owner
// keeps the feed by shared_ptr; a storage read in flight holds the feed and the owner alive.
class bucket_feed : public std::enable_shared_from_this<bucket_feed> {
public:
    enum class failure { busy, storage };
    struct sink {
        std::function<void(const bucket_event&)> emit;
        std::function<void()> drained;          // a storage read ended and everything pushed is processed
        std::function<void(failure)> failed;    // the query pool refused or storage failed
    };

    bucket_feed(bucket_spec spec, query_pool& queries, boost::asio::any_io_executor ex, std::size_t max_waiting,
                sink s);

    // Readings in increasing id order, each newer than everything pushed before. Processed at
    // once as far as possible; `owner` is kept alive while storage is read. False (nothing taken)
    // when more than `max_waiting` readings would wait behind a storage read: the owner treats it
    // as a slow client.
    bool push(const std::vector<live_ptr>& readings, std::shared_ptr<void> owner);
    // The subscription ended: nothing more is processed or sent.
    void cancel() noexcept;
    // Nothing waits and no storage read is in flight.
    bool idle() const noexcept { return waiting_.empty() && !reading_storage_; }
    const bucket_spec& spec() const noexcept { return agg_.spec(); }

private:
    void run(bool resumed);
    bool request_seeds();

    bucket_aggregator agg_;
    query_pool& queries_;
    boost::asio::any_io_executor ex_;
    std::size_t max_waiting_;
    sink sink_;
    std::deque<live_ptr> waiting_;
    std::unordered_map<std::int64_t, storage::bucket_seed> seeds_;  // by reading id
    bool reading_storage_ = false;
    bool failed_ = false;
    std::shared_ptr<void> owner_;
    std::vector<bucket_event> events_;  // scratch
};

}  // namespace telemetry::bridge
