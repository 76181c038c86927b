// Server-Sent Events on /api/v1/stream: replay from the client's last id (memory or storage), then
// live readings in id order, with heartbeats, presence events and a bounded send queue.
#include "streams/sse_session.hpp"

#include "core/conditional.hpp"
#include "core/metrics.hpp"
#include "core/wire_format.hpp"

#include <boost/asio/post.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <sstream>

namespace telemetry::bridge::http {

namespace asio = boost::asio;
namespace beast = boost::beast;

namespace {

constexpr std::size_t replay_chunk_most = 1000;
// Frames are built into a write at most this many bytes at a time (at least one frame); the rest
// waits as references. So a client that stops reading strands at most about this much in its
// write in flight, and a long queue never becomes one long string.
constexpr std::size_t build_chunk_bytes = 32 * 1024;


}  // namespace

sse_session::sse_session(connection_stream&& stream, io_shard& shard, session_context& ctx,
                         const stream_config& cfg, request_info ri, stream_request req,
                         connection_gauge::slot slot)
    : stream_(std::move(stream)), shard_(shard), ctx_(ctx), cfg_(cfg), ri_(std::move(ri)), req_(std::move(req)),
      selector_(req_.selector), slot_(std::move(slot)), budget_share_(ctx_.stream_budget),
      heartbeat_(stream_.get_executor()), expiry_(stream_.get_executor()) {
    ctx_.stats.sse_connections.fetch_add(1, std::memory_order_relaxed);
}

sse_session::~sse_session() { ctx_.stats.sse_connections.fetch_sub(1, std::memory_order_relaxed); }

void sse_session::account() {
    const std::size_t held = phase_ == phase::closed ? 0 : writing_.size() + held_bytes_;
    if (held == budget_share_.accounted()) return;
    ctx_.stats.stream_queued_bytes.fetch_add(budget_share_.account(held), std::memory_order_relaxed);
}

void sse_session::start() {
    // The send budget may cut this stream from another stream's thread to make room.
    budget_share_.cut_on(stream_.get_executor(), weak_from_this(), stream_.socket().native_handle());
    // Live from now unless resuming: "now" is before the client can see anything of the stream,
    // so a reading it publishes once it sees the header or the retry line is never skipped.
    last_id_ = req_.after.value_or(ctx_.live.newest_id());
    bhttp::response<bhttp::empty_body> res{bhttp::status::ok, ri_.version};
    res.set(bhttp::field::server, "telemetry-broker-bridge");
    res.set(bhttp::field::date, http_date_now());
    res.set(bhttp::field::content_type, "text/event-stream; charset=utf-8");
    res.set(bhttp::field::cache_control, "no-store");
    // No Content-Length and not chunked: the body is the event stream, ended by closing.
    res.keep_alive(false);
    res.set("X-Accel-Buffering", "no");
    ctx_.stats.count_response(200);
    // The header and the retry line go out with the first write, which comes after the catch-up
    // step below: when it attaches the stream to the hub (live from now: at once) that is before
    // the client can see the stream open, so presence, which has no cursor to replay from, is
    // not missed by a client that waits for the stream to open (a browser's `open` event) before
    // a sensor comes online.
    std::ostringstream head;
    head << res.base();
    writing_ = std::move(head).str();  // first in the queue, whatever its bound
    append_sse_retry(writing_, cfg_.retry.count());

    watch_peer();
    heartbeat_.expires_after(cfg_.heartbeat);
    heartbeat_.async_wait(beast::bind_front_handler(&sse_session::on_heartbeat, shared_from_this()));
    if (const auto exp = selector_->access()->expires_at(); exp > 0) {
        expiry_.expires_at(std::chrono::system_clock::from_time_t(static_cast<std::time_t>(exp)));
        expiry_.async_wait(beast::bind_front_handler(&sse_session::on_token_expired, shared_from_this()));
    }
    if (req_.bucket) start_buckets();
    phase_ = phase::catching_up;
    catch_up_step();
    flush();  // when the step reads storage: the header now, the replay when it comes
}

// One step of the catch-up: readings after last_id_ from the window or storage. The step that
// reaches the newest reading attaches the stream to the hub, so live delivery follows with no
// gap and no duplicate. Flow control: the next step is taken once this one is on the wire.
void sse_session::catch_up_step() {
    if (step_in_flight_ || phase_ != phase::catching_up) return;
    catch_up_query q;
    q.after = last_id_;
    q.selector = selector_;
    q.limit = cfg_.replay_chunk(replay_chunk_most);
    q.check_reset = req_.after.has_value() && !reset_checked_;
    if (!reset_checked_) q.epoch_reset = req_.epoch_reset;
    q.attach = shared_from_this();
    step_in_flight_ = true;
    auto self = shared_from_this();
    auto c = ctx_.catchup.next(q, stream_.get_executor(),
                               [self](catch_up_chunk chunk) { self->on_catch_up(std::move(chunk)); });
    if (c) on_catch_up(std::move(*c));
}

void sse_session::on_catch_up(catch_up_chunk c) {
    step_in_flight_ = false;
    if (phase_ != phase::catching_up) return;
    if (c.result != catch_up_chunk::outcome::ok) {
        if (c.result == catch_up_chunk::outcome::busy) ctx_.stats.query_jobs_rejected.fetch_add(1, std::memory_order_relaxed);
        // Storage is saturated or failing: close once what is queued (at first, the header and
        // the retry line) is written; the client retries with its Last-Event-ID.
        phase_ = phase::closing;
        flush();
        if (!write_in_flight_) close();
        return;
    }
    reset_checked_ = true;
    if (c.reset) {
        std::string frame;
        append_sse_reset(frame, *c.reset);
        queue(frame, 1);
    }
    if (buckets_) feed_buckets(c.readings);
    else queue_all(c.readings);
    if (phase_ == phase::closed) return;
    last_id_ = std::max(last_id_, c.reached);
    if (c.attached) phase_ = phase::live;
    flush();
    if (phase_ == phase::catching_up && !write_in_flight_ && !buckets_busy()) catch_up_step();
}

void sse_session::start_buckets() {
    bucket_feed::sink s;
    // The feed calls these on this stream's thread, and only while the stream is alive.
    s.emit = [this](const bucket_event& e) {
        std::string frame;
        append_sse_bucket(frame, e, ctx_.live.at_epoch());
        queue(frame, 1);
    };
    s.drained = [this] {
        flush();
        if (phase_ == phase::catching_up && !write_in_flight_) catch_up_step();
    };
    s.failed = [this](bucket_feed::failure f) {
        if (f == bucket_feed::failure::busy) ctx_.stats.query_jobs_rejected.fetch_add(1, std::memory_order_relaxed);
        close();  // the client resumes after its last event id
    };
    buckets_ = std::make_shared<bucket_feed>(*req_.bucket, ctx_.queries, stream_.get_executor(),
                                             cfg_.max_queue_events, std::move(s));
}

// Readings (after last_id_, in id order) into the bucket feed; false if the stream had to close.
bool sse_session::feed_buckets(const std::vector<live_ptr>& readings) {
    if (readings.empty()) return true;
    last_id_ = std::max(last_id_, readings.back()->r.id);
    if (buckets_->push(readings, shared_from_this())) return true;
    overflow();  // live readings piled up behind a storage read: too slow, resume later
    return false;
}

void sse_session::on_delivery(const delivery& d) { shard_.hand_over(shared_from_this(), d); }

void sse_session::deliver(const delivery& d) {
    if (phase_ != phase::live) return;
    live_counts n;
    if (d.readings && buckets_) {
        std::vector<live_ptr> fresh;
        for (const auto& l : *d.readings)
            if (l->r.id > last_id_) fresh.push_back(l);  // older ones came with the catch-up
        if (!feed_buckets(fresh)) return;
    } else if (d.readings) {
        // Behind with policy=conflate: hold only the newest reading of each series until the
        // write completes.
        n = take_live(*d.readings, last_id_, req_.conflate && write_in_flight_ ? &behind_ : nullptr,
                      [this](const live_ptr& l, std::uint64_t skipped) { return queue_reading(l, skipped); });
    }
    if (d.statuses && phase_ == phase::live) {
        std::string frames;
        for (const auto& st : *d.statuses) append_sse_status(frames, *st);
        queue(frames, d.statuses->size());
    }
    // One update of the shared counters per commit, not per reading.
    ctx_.stats.stream_readings_sent.fetch_add(n.sent, std::memory_order_relaxed);
    if (n.conflated) ctx_.stats.stream_conflated.fetch_add(n.conflated, std::memory_order_relaxed);
}

void sse_session::flush() {
    if (!write_in_flight_) do_write();
    account();
}

void sse_session::overflowed() {
    if (phase_ == phase::closed) return;
    overflow();
}

void sse_session::on_shutdown() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
        if (self->phase_ == phase::closed) return;
        std::string frame;
        append_sse_retry(frame, self->cfg_.retry.count());
        self->queue(frame, 0);
        self->flush();
        self->phase_ = phase::closing;  // close once the queue is written
        if (!self->write_in_flight_) self->close();
    });
}

// Queues one reading, newer than any queued before (callers check), without writing; false if
// it overflowed the queue (the stream is then closed). Callers count what was sent.
bool sse_session::queue_reading(const live_ptr& l, std::uint64_t skipped) {
    if (phase_ == phase::closed) return false;
    if (builds_directly()) {
        // Built straight into the next write (the common case: a client that keeps up).
        const std::size_t before = writing_.size();
        append_sse_reading(writing_, *l, ctx_.live.at_epoch(), skipped);
        if (!fits(0, 1)) {
            writing_.resize(before);
            overflow();
            return false;
        }
        ++writing_events_;
    } else if (skipped > 0) {
        std::string frame;  // a conflated reading says how many it replaced: its own bytes
        append_sse_reading(frame, *l, ctx_.live.at_epoch(), skipped);
        queue(frame, 1);
    } else {
        const std::size_t size = sse_reading_size(*l, ctx_.live.at_epoch());
        if (!fits(size, 1)) {
            overflow();
            return false;
        }
        held_.push_back({l, 0, 1});
        held_bytes_ += size;
        ++held_events_;
    }
    if (phase_ == phase::closed) return false;
    last_id_ = std::max(last_id_, l->r.id);
    return true;
}

void sse_session::queue_all(const std::vector<live_ptr>& readings) {
    const std::size_t sent =
        queue_each(readings, [this](const live_ptr& l, std::uint64_t skipped) { return queue_reading(l, skipped); });
    ctx_.stats.stream_readings_sent.fetch_add(sent, std::memory_order_relaxed);
}

// The write in flight counts: it is memory this client holds until it reads. Within its own
// bounds, the total budget over all streams decides (send_budget.hpp).
bool sse_session::fits(std::size_t more_bytes, std::size_t more_events) {
    const std::size_t held = writing_.size() + held_bytes_;
    if (held + more_bytes > cfg_.max_queue_bytes ||
        writing_events_ + held_events_ + more_events > cfg_.max_queue_events)
        return false;
    over_budget_ = !budget_share_.admit(held, more_bytes,
                                        write_in_flight_ ? write_started_ : std::chrono::steady_clock::time_point{},
                                        stream_.socket().native_handle());
    if (!over_budget_ && held + more_bytes > budget_share_.accounted() + send_budget::report_every)
        ctx_.stats.stream_queued_bytes.fetch_add(budget_share_.account(held + more_bytes), std::memory_order_relaxed);
    return !over_budget_;
}

// Cut by the send budget to make room for streams less far behind (send_budget.hpp).
void sse_session::cut_by_budget() {
    if (phase_ == phase::closed) return;
    over_budget_ = true;
    overflow();
}

void sse_session::overflow() {
    // Too slow: drop the connection, never the readings. The browser reconnects with
    // Last-Event-ID and gets everything after the last event it received.
    ctx_.stats.stream_slow_disconnects.fetch_add(1, std::memory_order_relaxed);
    if (over_budget_) {
        ctx_.stats.stream_budget_disconnects.fetch_add(1, std::memory_order_relaxed);
        spdlog::info("sse: client holds {} bytes while all streams hold the budget of {}; disconnecting it",
                     writing_.size() + held_bytes_, ctx_.stream_budget.budget());
    } else {
        spdlog::info("sse: client fell {} bytes behind; disconnecting it", writing_.size() + held_bytes_);
    }
    close();
}

// What a conflating stream held while it was behind, oldest first.
void sse_session::queue_conflated() {
    const std::size_t sent =
        queue_held(behind_, [this](const live_ptr& l, std::uint64_t skipped) { return queue_reading(l, skipped); });
    ctx_.stats.stream_readings_sent.fetch_add(sent, std::memory_order_relaxed);
}

// Queues without writing: the caller flushes once it has queued everything it has.
void sse_session::queue(std::string_view frame, std::size_t events) {
    if (phase_ == phase::closed) return;
    if (!fits(frame.size(), events)) return overflow();
    if (!builds_directly()) return hold_owned(frame, events);
    writing_.append(frame);
    writing_events_ += events;
}

// Behind the write in flight, in order with the held readings; not checked against the bounds.
void sse_session::hold_owned(std::string_view frame, std::size_t events) {
    if (frame.empty()) return;
    owned_.append(frame);
    held_.push_back({nullptr, static_cast<std::uint32_t>(frame.size()), static_cast<std::uint32_t>(events)});
    held_bytes_ += frame.size();
    held_events_ += events;
}

bool sse_session::builds_directly() const noexcept {
    return !write_in_flight_ && held_.empty() && writing_.size() < build_chunk_bytes;
}

void sse_session::take_held(std::size_t most_bytes) {
    while (!held_.empty() && writing_.size() < most_bytes) {
        const held_frame& h = held_.front();
        std::size_t size = h.owned;
        if (h.reading) {
            const std::size_t before = writing_.size();
            append_sse_reading(writing_, *h.reading, ctx_.live.at_epoch());
            size = writing_.size() - before;
        } else {
            writing_.append(owned_, owned_head_, h.owned);
            owned_head_ += h.owned;
        }
        held_bytes_ -= size;
        held_events_ -= h.events;
        writing_events_ += h.events;
        held_.pop_front();
    }
    if (held_.empty()) {
        owned_.clear();
        owned_head_ = 0;
    }
}

void sse_session::do_write() {
    if (phase_ == phase::closed) return;
    // What is queued goes out in one write: under load several readings share a write. Most
    // writes fit into the socket's send buffer, so try a plain non-blocking send first: no
    // asynchronous operation, timer or completion to schedule. Only a remainder waits (and,
    // through TLS, everything: see connection_stream::try_write_now). Held frames are built a
    // chunk at a time, as long as the socket takes them.
    std::size_t sent = 0;
    for (;;) {
        take_held(build_chunk_bytes);
        if (writing_.empty()) return;
        beast::error_code ec;
        sent = stream_.try_write_now(asio::buffer(writing_), ec);
        if (ec) {
            spdlog::debug("sse: write failed: {}", ec.message());
            return close();
        }
        writing_events_ = 0;
        if (sent < writing_.size()) break;
        writing_.clear();
    }
    writing_.erase(0, sent);
    write_in_flight_ = true;
    write_started_ = std::chrono::steady_clock::now();
    stream_.tcp().expires_after(cfg_.write_timeout);
    asio::async_write(stream_, asio::buffer(writing_),
                      beast::bind_front_handler(&sse_session::on_write, shared_from_this()));
}

void sse_session::on_write(beast::error_code ec, std::size_t) {
    write_in_flight_ = false;
    stream_.tcp().expires_never();
    if (ec) {
        spdlog::debug("sse: write failed: {}", ec.message());
        return close();
    }
    writing_.clear();
    if (!behind_.empty()) queue_conflated();
    do_write();  // what was queued meanwhile
    account();
    if (write_in_flight_ || phase_ == phase::closed) return;
    if (phase_ == phase::closing) return close();
    if (phase_ == phase::catching_up && !buckets_busy()) catch_up_step();
}

// The client sends nothing on an event stream; a read completes only when it goes away. Through
// TLS the read goes through the TLS engine too (the one read beside the one write it allows).
void sse_session::watch_peer() {
    stream_.async_read_some(
        asio::buffer(peer_byte_), [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (ec) {
                spdlog::debug("sse: peer read ended: {}", ec.message());
                return self->close();
            }
            self->watch_peer();
        });
}

void sse_session::on_heartbeat(beast::error_code ec) {
    if (ec || phase_ == phase::closed) return;
    queue(": heartbeat\n\n", 0);
    flush();
    heartbeat_.expires_after(cfg_.heartbeat);
    heartbeat_.async_wait(beast::bind_front_handler(&sse_session::on_heartbeat, shared_from_this()));
}

// The grant ends with its token: say why, then close; the client resumes after its last id with
// a fresh token (docs/api.md section 8).
void sse_session::on_token_expired(beast::error_code ec) {
    if (ec || phase_ == phase::closed || phase_ == phase::closing) return;
    std::string frame;
    append_sse_error(frame, "token_expired", "the token has expired; reconnect with a fresh one after the last id");
    // Past the queue's bound if need be: it is the last frame.
    if (!builds_directly()) hold_owned(frame, 1);
    else writing_ += frame;
    flush();
    phase_ = phase::closing;
    if (!write_in_flight_) close();
}

void sse_session::close() {
    if (phase_ == phase::closed) return;
    spdlog::debug("sse: closing stream after id {}", last_id_);
    phase_ = phase::closed;
    held_.clear();
    owned_.clear();
    held_bytes_ = held_events_ = 0;
    if (!write_in_flight_) writing_.clear();  // else the write in flight still reads it
    account();
    ctx_.live.unsubscribe(this);
    heartbeat_.cancel();
    expiry_.cancel();
    budget_share_.forget_socket();  // before it closes: its number may be reused
    stream_.close();
}

}  // namespace telemetry::bridge::http
