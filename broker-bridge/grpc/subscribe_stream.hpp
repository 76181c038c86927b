// One gRPC Subscribe call (docs/api.md section 12): replay after the client's cursor through the
// one catch-up path, then live readings from the hub, as telemetry.v1.Event messages, with
// heartbeats, presence, resets and a bounded send queue. The gRPC counterpart of sse_session.
#pragma once

#include "core/config.hpp"
#include "core/metrics.hpp"
#include "live/hub.hpp"
#include "net/io_shards.hpp"
#include "pipeline/catch_up.hpp"
#include "streams/bucket_feed.hpp"
#include "streams/conflation.hpp"
#include "streams/send_budget.hpp"

#include "telemetry/v1/telemetry.grpc.pb.h"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/system_timer.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>

namespace telemetry::bridge::grpc_api {

// What every Subscribe call shares.
struct stream_context {
    hub& live;
    catch_up& catchup;
    query_pool& queries;  // bucket streams read storage's view of a series here
    http::io_shards& io;
    metrics& stats;
    const stream_config& cfg;
    http::send_budget& budget;  // the same total budget as SSE and WebSocket streams
};

struct subscribe_params {
    selector_ptr selector;               // the request's filters within the caller's grant
    std::optional<std::int64_t> after;   // absent: live from now
    std::optional<std::int64_t> epoch_reset;  // the client's `after` was this id of another epoch
    bool conflate = false;
    std::optional<bucket_spec> bucket;  // live aggregates instead of readings
};

// Threads: gRPC calls the reactor's On* functions on its own threads, the hub calls
// on_delivery() on the committing thread; each only posts to the stream's I/O shard, whose one
// thread runs everything else, so the members need no lock (as sse_session).
//
// Invariant: readings are queued in strictly increasing id order and each at most once
// (`last_id_` is the greatest id queued). The queue, the write in flight included, never holds
// more than stream.max_queue_events events or stream.max_queue_bytes bytes, within the send
// budget of all streams: a client that falls that far behind is ended with RESOURCE_EXHAUSTED
// and resumes after the last id it received, losing nothing.
//
// Lifetime: shared; the reactor keeps itself (`self_`) until gRPC calls OnDone, and every
// pending handler holds a reference. Finish is called exactly once, on the shard.
class subscribe_stream final : public ::grpc::ServerWriteReactor<telemetry::v1::Event>,
                               public subscriber,
                               public http::stream_sink,
                               public std::enable_shared_from_this<subscribe_stream> {
public:
    subscribe_stream(stream_context& ctx, ::grpc::CallbackServerContext& call, subscribe_params p);
    ~subscribe_stream() override;
    // Called once by the RPC handler, before it returns the reactor to gRPC.
    void start();

    void on_delivery(const delivery& d) override;
    void on_shutdown() override;
    void deliver(const delivery& d) override;
    void flush() override;
    void overflowed() override;
    // The send budget cuts this stream to make room (send_budget::share::cut_on), on its thread.
    void cut_by_budget();

    void OnWriteDone(bool ok) override;
    void OnCancel() override;
    void OnDone() override;

private:
    enum class phase { starting, catching_up, live, closed };

    void begin();
    void catch_up_step();
    void on_catch_up(catch_up_chunk c);
    void on_write_done(bool ok);
    bool queue_reading(const live_ptr& l, std::uint64_t skipped = 0);
    void queue_all(const std::vector<live_ptr>& readings);
    void queue_conflated();
    // bucket: readings go to the bucket feed, which queues BucketEvents (docs/api.md 4.1).
    void start_buckets();
    bool feed_buckets(const std::vector<live_ptr>& readings);
    bool buckets_busy() const { return buckets_ && !buckets_->idle(); }
    bool queue(telemetry::v1::Event e);
    bool queue(std::shared_ptr<const telemetry::v1::Event> e, std::size_t bytes);
    bool fits(std::size_t more_bytes);
    void overflow();
    void account();
    void write_next();
    void on_heartbeat(const boost::system::error_code& ec);
    void finish(::grpc::Status status);

    stream_context& ctx_;
    ::grpc::CallbackServerContext& call_;
    subscribe_params params_;
    http::io_shard& shard_;
    boost::asio::steady_timer heartbeat_;
    boost::asio::system_timer expiry_;  // the token's expiry ends the stream
    std::shared_ptr<subscribe_stream> self_;  // until OnDone
    http::send_budget::share budget_share_;  // what this stream holds of all streams' budget

    phase phase_ = phase::starting;
    std::int64_t last_id_ = 0;  // greatest id queued to this client
    // A queued message: a reading's is shared by the streams of this shard (reading_message).
    struct queued {
        std::shared_ptr<const telemetry::v1::Event> event;
        std::size_t bytes = 0;
    };
    std::deque<queued> pending_;
    std::size_t pending_bytes_ = 0;
    std::shared_ptr<const telemetry::v1::Event> writing_;  // the write in flight (gRPC reads it)
    // What gRPC holds that the client's flow control has not taken: the write in flight and the
    // corked ones before it (written with the buffer hint, done at once but not yet sent).
    std::size_t writing_bytes_ = 0;
    std::size_t writing_events_ = 0;
    bool write_in_flight_ = false;
    bool metadata_due_ = false;  // the initial metadata waits for the first catch-up step
    bool corked_ = false;  // the write in flight has the buffer hint: more are queued behind it
    std::chrono::steady_clock::time_point write_started_{};
    http::conflation behind_;       // POLICY_CONFLATE: held while a write is in flight
    std::shared_ptr<bucket_feed> buckets_;  // bucket: the stream's live aggregates
    bool over_budget_ = false;
    bool step_in_flight_ = false;
    bool reset_checked_ = false;
};

}  // namespace telemetry::bridge::grpc_api
