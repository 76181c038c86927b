// One gRPC Subscribe call: catch-up, then live, through a bounded queue of Event messages.
#include "grpc/subscribe_stream.hpp"

#include "grpc/calls.hpp"

#include <boost/asio/post.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace telemetry::bridge::grpc_api {

namespace asio = boost::asio;
namespace v1 = telemetry::v1;

namespace {

constexpr std::size_t replay_chunk_most = 1000;

// Protobuf's framing and gRPC's message header on top of the message itself, so that a queue of
// tiny events is not counted as nearly free.
constexpr std::size_t per_event_overhead = 32;

v1::Event bucket_message(const bucket_event& b) {
    v1::Event e;
    auto& m = *e.mutable_bucket();
    m.set_id(b.id);
    m.set_sensor(b.series->r.sensor);
    m.set_metric(b.series->r.metric);
    m.set_t(b.t);
    m.set_count(b.values.count);
    m.set_min(b.values.min);
    m.set_max(b.values.max);
    m.set_avg(b.values.sum / static_cast<double>(b.values.count));
    m.set_final(b.what != bucket_event::kind::provisional);
    m.set_correction(b.what == bucket_event::kind::corrected);
    return e;
}

v1::Event reading_event(const live_reading& l, std::uint64_t skipped) {
    v1::Event e;
    set_reading(*e.mutable_reading(), l.r);
    if (skipped) e.mutable_reading()->set_skipped(skipped);
    return e;
}

struct shared_event {
    std::shared_ptr<const v1::Event> event;
    std::size_t bytes = 0;
};

// A reading's Event (`skipped` 0), built once per I/O thread and shared by every stream on that
// thread that sends it: a commit reaching N streams costs one message, not N (each built,
// sized and freed). Thread-local because a stream's every handler runs on its shard's one
// thread, so the cache needs no lock; keyed by id, a slot keeps its reading alive so that the
// pointer it is compared by cannot be reused. Bounded: cache_slots readings per thread.
shared_event reading_message(const live_ptr& l) {
    constexpr std::size_t cache_slots = 1024;
    struct slot {
        live_ptr reading;
        shared_event message;
    };
    thread_local std::vector<slot> cache(cache_slots);
    auto& s = cache[static_cast<std::uint64_t>(l->r.id) % cache_slots];
    if (s.reading != l) {
        auto e = std::make_shared<v1::Event>(reading_event(*l, 0));
        s.message.bytes = e->ByteSizeLong() + per_event_overhead;
        s.message.event = std::move(e);
        s.reading = l;
    }
    return s.message;
}

// Every status that ends a stream the client may resume says how (docs/api.md 12.3).
constexpr std::string_view resume_hint = "; subscribe again with after = the id of the last reading received";

}  // namespace

subscribe_stream::subscribe_stream(stream_context& ctx, ::grpc::CallbackServerContext& call, subscribe_params p)
    : ctx_(ctx), call_(call), params_(std::move(p)), shard_(ctx.io.next()),
      heartbeat_(shard_.context()), expiry_(shard_.context()), budget_share_(ctx.budget) {
    ctx_.stats.grpc_streams.fetch_add(1, std::memory_order_relaxed);
}

subscribe_stream::~subscribe_stream() { ctx_.stats.grpc_streams.fetch_sub(1, std::memory_order_relaxed); }

void subscribe_stream::start() {
    self_ = shared_from_this();
    // The send budget may cut this stream from another stream's thread to make room.
    budget_share_.cut_on(shard_.context().get_executor(), weak_from_this());
    asio::post(shard_.context(), [self = shared_from_this()] { self->begin(); });
}

// On the shard. The cursor is fixed before the client can see anything of the stream (the
// initial metadata says it), so a reading published once the client has the metadata is never
// skipped by a subscription that is "live from now". Presence has no cursor: the metadata goes
// out after the first catch-up step, which attaches a live-from-now stream to the hub at once,
// so a status published once the client has the metadata is not missed either.
void subscribe_stream::begin() {
    if (phase_ != phase::starting) return;
    last_id_ = params_.after.value_or(ctx_.live.newest_id());
    call_.AddInitialMetadata("telemetry-after", std::to_string(last_id_));
    call_.AddInitialMetadata("telemetry-epoch", ctx_.live.epoch_text());
    heartbeat_.expires_after(ctx_.cfg.heartbeat);
    heartbeat_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) { self->on_heartbeat(ec); });
    if (const auto exp = params_.selector->access()->expires_at(); exp > 0) {
        expiry_.expires_at(std::chrono::system_clock::from_time_t(static_cast<std::time_t>(exp)));
        expiry_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
            if (ec) return;
            self->finish(::grpc::Status(::grpc::StatusCode::UNAUTHENTICATED,
                                        "the token has expired" + std::string(resume_hint) + ", with a fresh token"));
        });
    }
    if (params_.bucket) start_buckets();
    phase_ = phase::catching_up;
    metadata_due_ = true;  // sent before the first write, or below, or by Finish (storage busy)
    catch_up_step();
    if (phase_ != phase::closed && std::exchange(metadata_due_, false)) StartSendInitialMetadata();
}

void subscribe_stream::start_buckets() {
    bucket_feed::sink s;
    // The feed calls these on the shard, and only while the stream is alive.
    s.emit = [this](const bucket_event& e) { queue(bucket_message(e)); };
    s.drained = [this] {
        flush();
        if (phase_ == phase::catching_up && !write_in_flight_) catch_up_step();
    };
    s.failed = [this](bucket_feed::failure f) {
        if (f == bucket_feed::failure::busy) ctx_.stats.query_jobs_rejected.fetch_add(1, std::memory_order_relaxed);
        finish(::grpc::Status(::grpc::StatusCode::UNAVAILABLE,
                              "storage is busy or failing" + std::string(resume_hint) + ", shortly"));
    };
    buckets_ = std::make_shared<bucket_feed>(*params_.bucket, ctx_.queries, shard_.context().get_executor(),
                                             ctx_.cfg.max_queue_events, std::move(s));
}

// Readings (after last_id_, in id order) into the bucket feed; false if the stream ended.
bool subscribe_stream::feed_buckets(const std::vector<live_ptr>& readings) {
    if (readings.empty()) return true;
    last_id_ = std::max(last_id_, readings.back()->r.id);
    if (buckets_->push(readings, shared_from_this())) return true;
    overflow();  // live readings piled up behind a storage read: too slow, resume later
    return false;
}

// As sse_session: one step of the one catch-up path; the step that reaches the newest reading
// attaches the stream to the hub. The next step is taken once this one is written.
void subscribe_stream::catch_up_step() {
    if (step_in_flight_ || phase_ != phase::catching_up) return;
    catch_up_query q;
    q.after = last_id_;
    q.selector = params_.selector;
    q.limit = ctx_.cfg.replay_chunk(replay_chunk_most);
    q.check_reset = params_.after.has_value() && !reset_checked_;
    if (!reset_checked_) q.epoch_reset = params_.epoch_reset;
    q.attach = shared_from_this();
    step_in_flight_ = true;
    auto self = shared_from_this();
    auto c = ctx_.catchup.next(q, shard_.context().get_executor(),
                               [self](catch_up_chunk chunk) { self->on_catch_up(std::move(chunk)); });
    if (c) on_catch_up(std::move(*c));
}

void subscribe_stream::on_catch_up(catch_up_chunk c) {
    step_in_flight_ = false;
    if (phase_ != phase::catching_up) return;
    if (c.result != catch_up_chunk::outcome::ok) {
        if (c.result == catch_up_chunk::outcome::busy)
            ctx_.stats.query_jobs_rejected.fetch_add(1, std::memory_order_relaxed);
        return finish(::grpc::Status(::grpc::StatusCode::UNAVAILABLE,
                                     "storage is busy or failing" + std::string(resume_hint) + ", shortly"));
    }
    reset_checked_ = true;
    if (c.reset) {
        v1::Event e;
        auto* r = e.mutable_reset();
        r->set_reason(c.reset->epoch.empty() ? "retention" : "epoch");
        r->set_after(c.reset->after);
        r->set_oldest_id(c.reset->oldest_id);
        r->set_epoch(c.reset->epoch);
        if (!queue(std::move(e))) return;
    }
    if (buckets_) feed_buckets(c.readings);
    else queue_all(c.readings);
    if (phase_ == phase::closed) return;
    last_id_ = std::max(last_id_, c.reached);
    if (c.attached) phase_ = phase::live;
    flush();
    if (phase_ == phase::catching_up && !write_in_flight_ && !buckets_busy()) catch_up_step();
}

void subscribe_stream::on_delivery(const delivery& d) { shard_.hand_over(shared_from_this(), d); }

void subscribe_stream::deliver(const delivery& d) {
    if (phase_ != phase::live) return;
    const auto queue_one = [this](const live_ptr& l, std::uint64_t skipped) { return queue_reading(l, skipped); };
    http::live_counts n;
    if (d.readings && buckets_) {
        std::vector<live_ptr> fresh;
        for (const auto& l : *d.readings)
            if (l->r.id > last_id_) fresh.push_back(l);  // older ones came with the catch-up
        if (!feed_buckets(fresh)) return;
    } else if (d.readings) n = http::take_live(*d.readings, last_id_, params_.conflate && write_in_flight_ ? &behind_ : nullptr, queue_one);
    if (d.statuses && phase_ == phase::live) {
        for (const auto& st : *d.statuses) {
            v1::Event e;
            e.mutable_status()->set_sensor(st->sensor);
            e.mutable_status()->set_online(st->online);
            if (!queue(std::move(e))) break;
        }
    }
    ctx_.stats.stream_readings_sent.fetch_add(n.sent, std::memory_order_relaxed);
    if (n.conflated) ctx_.stats.stream_conflated.fetch_add(n.conflated, std::memory_order_relaxed);
}

void subscribe_stream::flush() {
    write_next();
    account();
}

void subscribe_stream::overflowed() { overflow(); }

void subscribe_stream::on_shutdown() {
    // The client resumes after the last id it received, from this bridge once it is back.
    asio::post(shard_.context(), [self = shared_from_this()] {
        self->finish(::grpc::Status(::grpc::StatusCode::UNAVAILABLE,
                                    "the bridge is stopping" + std::string(resume_hint)));
    });
}

bool subscribe_stream::queue_reading(const live_ptr& l, std::uint64_t skipped) {
    if (skipped) {
        if (!queue(reading_event(*l, skipped))) return false;
    } else {
        auto m = reading_message(l);
        if (!queue(std::move(m.event), m.bytes)) return false;
    }
    last_id_ = std::max(last_id_, l->r.id);
    return true;
}

void subscribe_stream::queue_all(const std::vector<live_ptr>& readings) {
    const std::size_t sent =
        http::queue_each(readings, [this](const live_ptr& l, std::uint64_t skipped) { return queue_reading(l, skipped); });
    ctx_.stats.stream_readings_sent.fetch_add(sent, std::memory_order_relaxed);
}

void subscribe_stream::queue_conflated() {
    const std::size_t sent =
        http::queue_held(behind_, [this](const live_ptr& l, std::uint64_t skipped) { return queue_reading(l, skipped); });
    ctx_.stats.stream_readings_sent.fetch_add(sent, std::memory_order_relaxed);
}

// Queues without writing (the caller flushes); false if it overflowed and the stream ended.
bool subscribe_stream::queue(v1::Event e) {
    if (phase_ == phase::closed) return false;
    const std::size_t bytes = e.ByteSizeLong() + per_event_overhead;
    return queue(std::make_shared<const v1::Event>(std::move(e)), bytes);
}

bool subscribe_stream::queue(std::shared_ptr<const v1::Event> e, std::size_t bytes) {
    if (phase_ == phase::closed) return false;
    if (!fits(bytes)) {
        overflow();
        return false;
    }
    pending_bytes_ += bytes;
    pending_.push_back({std::move(e), bytes});
    return true;
}

// The write in flight and the corked ones count: gRPC holds them until the client's flow control
// window takes them.
bool subscribe_stream::fits(std::size_t more_bytes) {
    const std::size_t held = pending_bytes_ + writing_bytes_;
    const std::size_t events = pending_.size() + writing_events_;
    if (held + more_bytes > ctx_.cfg.max_queue_bytes || events + 1 > ctx_.cfg.max_queue_events) return false;
    over_budget_ = !budget_share_.admit(held, more_bytes,
                                        writing_events_ ? write_started_ : std::chrono::steady_clock::time_point{});
    return !over_budget_;
}

// Cut by the send budget to make room for streams less far behind (send_budget.hpp).
void subscribe_stream::cut_by_budget() {
    over_budget_ = true;
    overflow();
}

void subscribe_stream::overflow() {
    if (phase_ == phase::closed) return;
    ctx_.stats.stream_slow_disconnects.fetch_add(1, std::memory_order_relaxed);
    if (over_budget_) ctx_.stats.stream_budget_disconnects.fetch_add(1, std::memory_order_relaxed);
    spdlog::info("grpc: client fell {} events ({} bytes) behind; ending its stream", pending_.size(),
                 pending_bytes_ + writing_bytes_);
    finish(::grpc::Status(::grpc::StatusCode::RESOURCE_EXHAUSTED,
                          "the client fell too far behind" + std::string(resume_hint)));
}

void subscribe_stream::account() {
    const std::size_t held = phase_ == phase::closed ? 0 : pending_bytes_ + writing_bytes_;
    if (held == budget_share_.accounted()) return;
    ctx_.stats.stream_queued_bytes.fetch_add(budget_share_.account(held), std::memory_order_relaxed);
}

// gRPC allows one write in flight per call: the next starts when it is done. A write with more
// queued behind it carries the buffer hint: gRPC finishes it at once without sending it, and the
// last of the run (no hint) sends them all together, so a client that is behind costs one
// transport write per run rather than one per event. gRPC holds at most its write buffer
// (64 KiB) of hinted data per stream before it waits for the network again; until the unhinted
// write is done, all of the run still counts against the stream's queue bounds (fits).
void subscribe_stream::write_next() {
    if (write_in_flight_ || phase_ == phase::closed || pending_.empty()) return;
    queued next = std::move(pending_.front());
    pending_.pop_front();
    pending_bytes_ -= next.bytes;
    if (writing_events_ == 0) write_started_ = std::chrono::steady_clock::now();
    writing_bytes_ += next.bytes;
    ++writing_events_;
    writing_ = std::move(next.event);
    write_in_flight_ = true;
    corked_ = !pending_.empty();
    ::grpc::WriteOptions opts;
    if (corked_) opts.set_buffer_hint();
    if (std::exchange(metadata_due_, false)) StartSendInitialMetadata();
    StartWrite(writing_.get(), opts);
}

void subscribe_stream::OnWriteDone(bool ok) {
    asio::post(shard_.context(), [self = shared_from_this(), ok] { self->on_write_done(ok); });
}

void subscribe_stream::on_write_done(bool ok) {
    write_in_flight_ = false;
    if (!corked_) {
        // Sent: the flow control window took this write and, before it, the run it ends.
        writing_bytes_ = 0;
        writing_events_ = 0;
    }
    if (!ok) return finish(::grpc::Status::CANCELLED);  // the call is broken: the client is gone
    if (phase_ == phase::closed) return account();
    if (!behind_.empty()) queue_conflated();
    write_next();
    account();
    if (!write_in_flight_ && phase_ == phase::catching_up && !buckets_busy()) catch_up_step();
}

void subscribe_stream::OnCancel() {
    // The client cancelled, its deadline passed, or the connection broke.
    asio::post(shard_.context(), [self = shared_from_this()] { self->finish(::grpc::Status::CANCELLED); });
}

void subscribe_stream::OnDone() {
    // gRPC is done with the reactor; the pending handlers, if any, keep it until they run.
    self_.reset();
}

void subscribe_stream::on_heartbeat(const boost::system::error_code& ec) {
    if (ec || phase_ == phase::closed) return;
    v1::Event e;
    e.mutable_heartbeat();
    if (!queue(std::move(e))) return;
    flush();
    heartbeat_.expires_after(ctx_.cfg.heartbeat);
    heartbeat_.async_wait([self = shared_from_this()](const boost::system::error_code& ec2) { self->on_heartbeat(ec2); });
}

void subscribe_stream::finish(::grpc::Status status) {
    if (phase_ == phase::closed) return;
    spdlog::debug("grpc: ending stream after id {}: {}", last_id_, status.error_message());
    phase_ = phase::closed;
    ctx_.live.unsubscribe(this);
    if (buckets_) buckets_->cancel();
    heartbeat_.cancel();
    expiry_.cancel();
    pending_.clear();
    pending_bytes_ = 0;
    behind_.clear();
    account();
    // Allowed with a write in flight: gRPC sends the status after it.
    Finish(std::move(status));
}

}  // namespace telemetry::bridge::grpc_api
