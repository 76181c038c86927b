// The one catch-up path: the committed readings after a client's cursor that it selects, from the
// recent window or from storage, in id order, with a reset when retention deleted some of them.
// Long polls, SSE replays and WebSocket back-fills all read through it (docs/architecture.md).
#pragma once

#include "live/hub.hpp"
#include "core/selector.hpp"
#include "core/wire_format.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace telemetry::bridge {

class query_pool;

struct catch_up_query {
    std::int64_t after = 0;
    std::int64_t upto = INT64_MAX;  // inclusive; INT64_MAX: up to the newest reading
    selector_ptr selector;
    std::size_t limit = 1000;       // readings per step
    bool check_reset = false;       // say whether retention deleted selected readings after `after`
    // The client's cursor was this id of another epoch (hub::resume_from): say so, in this step's
    // chunk, with an epoch reset; `after` is then 0.
    std::optional<std::int64_t> epoch_reset;
    // Registered with the hub, in the same step, once the catch-up reaches the newest reading:
    // every later commit is delivered to it, with no gap and no duplicate. A long poll parks
    // (`parks`) only when the step found nothing.
    std::shared_ptr<subscriber> attach;
    bool parks = false;
};

struct catch_up_chunk {
    enum class outcome { ok, busy, failed };
    outcome result = outcome::ok;
    std::vector<live_ptr> readings;  // selected, in id order, at most `limit`
    std::int64_t reached = 0;        // every id in (after, reached] was looked at
    std::optional<reset_notice> reset;
    bool attached = false;
};

// Thread safety: next() may be called from any thread.
class catch_up {
public:
    catch_up(hub& h, query_pool& queries) : hub_(h), queries_(queries) {}

    // One step. When the window holds the cursor (and no reset check is due) the chunk is
    // returned at once; otherwise storage is read on the query pool and `done` is posted to `ex`
    // with the chunk, and nullopt is returned. A saturated query pool returns a `busy` chunk.
    std::optional<catch_up_chunk> next(const catch_up_query& q, const boost::asio::any_io_executor& ex,
                                       std::function<void(catch_up_chunk)> done);

private:
    hub& hub_;
    query_pool& queries_;
};

}  // namespace telemetry::bridge
