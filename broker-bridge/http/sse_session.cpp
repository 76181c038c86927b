// Server-Sent Events on /api/v1/stream: replay from the client's last id (memory or storage), then
// live readings in id order, with heartbeats, presence events and a bounded send queue.
#include "http/sse_session.hpp"

#include "database.hpp"
#include "metrics.hpp"
#include "query_pool.hpp"
#include "reading_json.hpp"

#include <boost/asio/post.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>

namespace telemetry::bridge::http {

namespace asio = boost::asio;
namespace beast = boost::beast;

namespace {

constexpr std::size_t replay_chunk_most = 1000;


// `skipped`: for a conflating stream, how many older readings of its series this one replaced.
void append_reading_frame(std::string& out, const live_reading& l, std::uint64_t skipped = 0) {
    out += "id: ";
    append_int(out, l.r.id);
    out += "\nevent: reading\ndata: ";
    append_with_skipped(out, l.json, skipped);
    out += "\n\n";
}

}  // namespace

sse_session::sse_session(beast::tcp_stream&& stream, io_shard& shard, session_context& ctx,
                         const stream_config& cfg, request_info ri, stream_request req)
    : stream_(std::move(stream)), shard_(shard), ctx_(ctx), cfg_(cfg), ri_(std::move(ri)), req_(std::move(req)),
      heartbeat_(stream_.get_executor()) {
    ctx_.stats.sse_connections.fetch_add(1, std::memory_order_relaxed);
}

sse_session::~sse_session() { ctx_.stats.sse_connections.fetch_sub(1, std::memory_order_relaxed); }

void sse_session::start() {
    res_ = std::make_shared<bhttp::response<bhttp::empty_body>>(bhttp::status::ok, ri_.version);
    res_->set(bhttp::field::server, "telemetry-broker-bridge");
    res_->set(bhttp::field::content_type, "text/event-stream; charset=utf-8");
    res_->set(bhttp::field::cache_control, "no-store");
    // No Content-Length and not chunked: the body is the event stream, ended by closing.
    res_->keep_alive(false);
    res_->set("X-Accel-Buffering", "no");
    serializer_ = std::make_shared<bhttp::response_serializer<bhttp::empty_body>>(*res_);
    ctx_.stats.count_response(200);
    stream_.expires_after(cfg_.write_timeout);
    bhttp::async_write_header(stream_, *serializer_,
                              beast::bind_front_handler(&sse_session::on_header, shared_from_this()));
}

void sse_session::on_header(beast::error_code ec, std::size_t) {
    if (ec) return close();
    stream_.expires_never();
    // Writes first try to complete at once (see do_write); that needs a non-blocking socket.
    stream_.socket().non_blocking(true, ec);
    if (ec) return close();
    watch_peer();
    heartbeat_.expires_after(cfg_.heartbeat);
    heartbeat_.async_wait(beast::bind_front_handler(&sse_session::on_heartbeat, shared_from_this()));

    std::string first = "retry: ";
    append_int(first, cfg_.retry.count());
    first += "\n\n";
    queue(first, 0);
    flush();
    if (!req_.after) {
        last_id_ = ctx_.live.newest_id();
        // Live from now: attach cannot need storage (newest >= floor), and replays nothing older.
    } else {
        last_id_ = *req_.after;
        if (last_id_ < ctx_.live.retired_max_id()) {
            // Retention deleted readings after this cursor: storage decides whether to reset.
            phase_ = phase::replay_storage;
            return replay_chunk();
        }
    }
    try_attach();
}

// Attach to the hub if the cursor is inside its window; otherwise replay a chunk from storage.
void sse_session::try_attach() {
    std::vector<live_ptr> replay;
    for (;;) {
        if (phase_ == phase::closing || phase_ == phase::closed) return;
        replay.clear();
        switch (ctx_.live.attach(last_id_, req_.filters, shared_from_this(), replay,
                                 cfg_.replay_chunk(replay_chunk_most))) {
        case hub::attach_outcome::attached:
            phase_ = phase::live;
            queue_all(replay);
            return flush();
        case hub::attach_outcome::more:
            // A long replay from memory goes chunk by chunk, like one from storage, so that it
            // never overflows the send queue: the next chunk is taken once this one is written
            // (at once, or in on_write).
            phase_ = phase::replay_memory;
            queue_all(replay);
            flush();
            if (write_in_flight_) return;
            continue;
        case hub::attach_outcome::need_storage:
            phase_ = phase::replay_storage;
            return replay_chunk();
        }
    }
}

void sse_session::replay_chunk() {
    if (replay_in_flight_) return;
    replay_in_flight_ = true;
    auto self = shared_from_this();
    const std::int64_t after = last_id_;
    const bool check_reset = !reset_checked_ && req_.after.has_value();
    reset_checked_ = true;
    const std::size_t limit = cfg_.replay_chunk(replay_chunk_most);
    const bool queued = ctx_.queries.submit([self, after, check_reset, limit](storage::reader& rd) {
        std::string frames;
        std::size_t events = 0;
        // Read before querying: every id up to this floor was committed before the query, so an
        // empty answer proves there is nothing between `after` and it.
        const std::int64_t floor = self->ctx_.live.window_floor();
        std::int64_t cursor = after;
        try {
            if (check_reset) {
                // Readings after `after` were deleted by retention: say so before resuming from
                // the oldest reading still stored.
                const std::int64_t oldest = rd.oldest_id();
                if (after < rd.retired_max_id()) {
                    frames += "event: reset\ndata: {\"reason\":\"retention\",\"after\":";
                    append_int(frames, after);
                    frames += ",\"oldest_id\":";
                    append_int(frames, oldest);
                    frames += "}\n\n";
                }
            }
            auto rows = rd.after_id(after, replay_chunk_most);
            if (rows.empty()) cursor = std::max(after, floor);
            for (auto& r : rows) {
                if (events >= limit) break;  // the rest in the next chunk
                cursor = r.id;
                const auto l = self->ctx_.live.make_live(std::move(r));
                if (!matches_any(self->req_.filters, l->topic)) continue;
                append_reading_frame(frames, *l);
                ++events;
            }
        } catch (const std::exception& e) {
            spdlog::error("sse: replay from storage failed: {}", e.what());
            asio::post(self->stream_.get_executor(), [self] { self->close(); });
            return;
        }
        asio::post(self->stream_.get_executor(),
                   [self, frames = std::move(frames), cursor, events]() mutable {
                       self->on_replay_chunk(std::move(frames), cursor, events);
                   });
    });
    if (!queued) {
        replay_in_flight_ = false;
        close();  // storage is saturated; the client retries with its Last-Event-ID
    }
}

void sse_session::on_replay_chunk(std::string frames, std::int64_t cursor, std::size_t events) {
    replay_in_flight_ = false;
    if (phase_ != phase::replay_storage) return;
    if (!frames.empty()) queue(frames, events);
    flush();
    if (phase_ == phase::closed) return;
    ctx_.stats.stream_readings_sent.fetch_add(events, std::memory_order_relaxed);
    last_id_ = std::max(last_id_, cursor);
    if (last_id_ >= ctx_.live.window_floor()) return try_attach();
    // Flow control: the next chunk is read once this one is on the wire (see on_write).
    if (!write_in_flight_) replay_chunk();
}

void sse_session::on_readings(const std::shared_ptr<const std::vector<live_ptr>>& batch) {
    shard_.hand_over(shared_from_this(), batch);
}

void sse_session::deliver(const reading_batch& batch) {
    if (phase_ != phase::live) return;
    std::size_t sent = 0, conflated = 0;
    for (const auto& l : *batch) {
        if (l->r.id <= last_id_ || !matches_any(req_.filters, l->topic)) continue;
        if (req_.conflate && write_in_flight_) {
            // Behind: hold only the newest reading of each series until the write completes.
            conflated += behind_.hold(l) ? 1 : 0;
            last_id_ = l->r.id;
            continue;
        }
        if (!queue_reading(*l)) break;
        ++sent;
    }
    // One update of the shared counters per batch, not per reading.
    ctx_.stats.stream_readings_sent.fetch_add(sent, std::memory_order_relaxed);
    if (conflated) ctx_.stats.stream_conflated.fetch_add(conflated, std::memory_order_relaxed);
}

void sse_session::flush() {
    if (!write_in_flight_) do_write();
}

void sse_session::on_status(const std::string& sensor, bool online) {
    std::string frame = "event: status\ndata: {\"sensor\":";
    append_json_string(frame, sensor);
    frame += online ? ",\"online\":true}\n\n" : ",\"online\":false}\n\n";
    asio::post(stream_.get_executor(), [self = shared_from_this(), frame = std::move(frame)] {
        if (self->phase_ == phase::header || self->phase_ == phase::closing || self->phase_ == phase::closed)
            return;
        self->queue(frame, 1);
        self->flush();
    });
}

void sse_session::on_shutdown() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
        if (self->phase_ == phase::closed) return;
        std::string frame = "retry: ";
        append_int(frame, self->cfg_.retry.count());
        frame += "\n\n";
        self->queue(frame, 0);
        self->flush();
        self->phase_ = phase::closing;  // close once the queue is written
        if (!self->write_in_flight_) self->close();
    });
}

// Queues one reading, newer than any queued before (callers check), without writing; false if
// it overflowed the queue (the stream is then closed). Callers count what was sent.
bool sse_session::queue_reading(const live_reading& l, std::uint64_t skipped) {
    if (phase_ == phase::closed) return false;
    const std::size_t before = pending_.size();
    append_reading_frame(pending_, l, skipped);
    if (!fits(0, 1)) {
        pending_.resize(before);
        overflow();
        return false;
    }
    ++pending_events_;
    last_id_ = std::max(last_id_, l.r.id);
    return true;
}

void sse_session::queue_all(const std::vector<live_ptr>& readings) {
    std::size_t sent = 0;
    for (const auto& l : readings) {
        if (!queue_reading(*l)) break;
        ++sent;
    }
    ctx_.stats.stream_readings_sent.fetch_add(sent, std::memory_order_relaxed);
}

bool sse_session::fits(std::size_t more_bytes, std::size_t more_events) const {
    return pending_.size() + more_bytes <= cfg_.max_queue_bytes &&
           pending_events_ + more_events <= cfg_.max_queue_events;
}

void sse_session::overflow() {
    // Too slow: drop the connection, never the readings. The browser reconnects with
    // Last-Event-ID and gets everything after the last event it received.
    ctx_.stats.stream_slow_disconnects.fetch_add(1, std::memory_order_relaxed);
    spdlog::info("sse: client fell {} bytes behind; disconnecting it", pending_.size());
    close();
}

// What a conflating stream held while it was behind, oldest first.
void sse_session::queue_conflated() {
    std::size_t sent = 0;
    for (const auto& h : behind_.take()) {
        if (!queue_reading(*h.newest, h.skipped)) break;
        ++sent;
    }
    ctx_.stats.stream_readings_sent.fetch_add(sent, std::memory_order_relaxed);
}

// Queues without writing: the caller flushes once it has queued everything it has.
void sse_session::queue(std::string_view frame, std::size_t events) {
    if (phase_ == phase::closed) return;
    if (!fits(frame.size(), events)) return overflow();
    pending_.append(frame);
    pending_events_ += events;
}

void sse_session::do_write() {
    if (pending_.empty() || phase_ == phase::closed) return;
    // Everything queued goes out in one write: under load several readings share a write. Most
    // writes fit into the socket's send buffer, so try a plain non-blocking send first: no
    // asynchronous operation, timer or completion to schedule. Only a remainder waits.
    beast::error_code ec;
    std::size_t sent = stream_.socket().write_some(asio::buffer(pending_), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
        sent = 0;
        ec = {};
    }
    if (ec) {
        spdlog::debug("sse: write failed: {}", ec.message());
        return close();
    }
    pending_events_ = 0;
    if (sent == pending_.size()) {
        pending_.clear();
        return;
    }
    writing_.assign(pending_, sent);
    pending_.clear();
    write_in_flight_ = true;
    stream_.expires_after(cfg_.write_timeout);
    asio::async_write(stream_, asio::buffer(writing_),
                      beast::bind_front_handler(&sse_session::on_write, shared_from_this()));
}

void sse_session::on_write(beast::error_code ec, std::size_t) {
    write_in_flight_ = false;
    stream_.expires_never();
    if (ec) {
        spdlog::debug("sse: write failed: {}", ec.message());
        return close();
    }
    writing_.clear();
    if (!behind_.empty()) queue_conflated();
    do_write();  // what was queued meanwhile
    if (write_in_flight_ || phase_ == phase::closed) return;
    if (phase_ == phase::closing) return close();
    if (phase_ == phase::replay_storage && !replay_in_flight_) replay_chunk();
    if (phase_ == phase::replay_memory) try_attach();
}

// The client sends nothing on an event stream; a read completes only when it goes away.
void sse_session::watch_peer() {
    stream_.socket().async_read_some(
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

void sse_session::close() {
    if (phase_ == phase::closed) return;
    spdlog::debug("sse: closing stream after id {}", last_id_);
    phase_ = phase::closed;
    ctx_.live.detach(this);
    heartbeat_.cancel();
    beast::error_code ignored;
    stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
}

}  // namespace telemetry::bridge::http
