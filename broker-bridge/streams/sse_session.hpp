// Server-Sent Events on /api/v1/stream: replay from the client's last id (memory or storage), then
// live readings in id order, with heartbeats, presence events and a bounded send queue.
#pragma once

#include "core/config.hpp"
#include "http/answer.hpp"
#include "http/session.hpp"
#include "live/hub.hpp"
#include "pipeline/catch_up.hpp"
#include "streams/bucket_feed.hpp"
#include "streams/conflation.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/system_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <deque>
#include <memory>
#include <optional>
#include <string>

namespace telemetry::bridge::http {

// Owns the connection after the HTTP session hands it over. All its handlers run on its shard's
// thread; the hub calls the subscriber functions from the committing thread and they only
// hand over to that thread.
//
// Invariant: readings are queued in strictly increasing id order and each at most once
// (`last_id_` is the greatest id queued). It catches up through the one catch-up path, which
// attaches it to the hub when it reaches the newest reading. The send queue, the write in flight
// included, never holds more than the configured bytes or events: a client that falls that far
// behind is disconnected, and resumes losslessly with Last-Event-ID.
//
// Memory: while no write is in flight, frames are built straight into the next write, up to a
// chunk (32 KiB). Beyond it, and behind a write in flight, a reading is queued as a reference to
// the committed reading, which every
// stream and the hub's window share; its frame is built only when its turn to be written comes,
// a bounded chunk at a time. So a thousand stalled streams owing the same readings hold one copy
// of them plus a small entry each, not a thousand copies of the frames. Queue bounds and the send
// budget still count the bytes each client is owed on the wire.
class sse_session : public subscriber,
                    public stream_sink,
                    public std::enable_shared_from_this<sse_session> {
public:
    sse_session(connection_stream&& stream, io_shard& shard, session_context& ctx,
                const stream_config& cfg, request_info ri, stream_request req, connection_gauge::slot slot);
    ~sse_session() override;
    void start();

    void on_delivery(const delivery& d) override;
    void on_shutdown() override;
    void deliver(const delivery& d) override;
    void flush() override;
    void overflowed() override;
    // The send budget cuts this stream to make room (send_budget::share::cut_on), on its thread.
    void cut_by_budget();

private:
    void catch_up_step();
    void on_catch_up(catch_up_chunk c);
    bool queue_reading(const live_ptr& l, std::uint64_t skipped = 0);
    void queue_all(const std::vector<live_ptr>& readings);
    // bucket=: readings go to the bucket feed, which queues bucket events (docs/api.md 4.1).
    void start_buckets();
    bool feed_buckets(const std::vector<live_ptr>& readings);
    bool buckets_busy() const { return buckets_ && !buckets_->idle(); }
    void queue(std::string_view frame, std::size_t events);
    void hold_owned(std::string_view frame, std::size_t events);
    void take_held(std::size_t most_bytes);  // builds held frames into writing_
    // Whether a new frame goes straight into writing_: no write in flight, nothing held before
    // it, and the next write not yet a full chunk.
    bool builds_directly() const noexcept;
    void queue_conflated();
    bool fits(std::size_t more_bytes, std::size_t more_events);
    void overflow();
    void account();  // reports what this stream holds to the send budget
    void do_write();
    void on_write(boost::beast::error_code ec, std::size_t);
    void watch_peer();
    void on_heartbeat(boost::beast::error_code ec);
    void on_token_expired(boost::beast::error_code ec);
    void close();

    enum class phase { starting, catching_up, live, closing, closed };

    connection_stream stream_;
    io_shard& shard_;
    session_context& ctx_;
    const stream_config& cfg_;
    request_info ri_;
    stream_request req_;
    selector_ptr selector_;
    connection_gauge::slot slot_;
    send_budget::share budget_share_;  // what this stream holds of all streams' budget
    boost::asio::steady_timer heartbeat_;
    boost::asio::system_timer expiry_;  // the token's expiry ends the stream

    phase phase_ = phase::starting;
    // What waits behind the write in flight, in order: a committed reading (its frame is built
    // when written), or the next `owned` bytes of owned_ (status, reset, retry, heartbeat, a
    // conflated reading with its skipped count).
    struct held_frame {
        live_ptr reading;
        std::uint32_t owned = 0;
        std::uint32_t events = 0;
    };

    std::int64_t last_id_ = 0;       // greatest id queued to this client
    std::string writing_;            // the write in flight, or the next one while none is
    std::size_t writing_events_ = 0; // events in writing_ not yet handed to a write
    std::deque<held_frame> held_;    // behind the write in flight
    std::string owned_;              // the owned frames of held_, from owned_head_ on
    std::size_t owned_head_ = 0;
    std::size_t held_bytes_ = 0;     // wire bytes of held_
    std::size_t held_events_ = 0;
    conflation behind_;              // policy=conflate: held while a write is in flight
    std::shared_ptr<bucket_feed> buckets_;  // bucket=: the stream's live aggregates
    bool over_budget_ = false;       // the last refusal was the total budget's, not this queue's
    bool write_in_flight_ = false;
    std::chrono::steady_clock::time_point write_started_{};  // of the write in flight, if any
    bool step_in_flight_ = false;     // a catch-up step reads storage
    bool reset_checked_ = false;
    char peer_byte_[512];
};

}  // namespace telemetry::bridge::http
