// One HTTP/1.1 connection: reads requests, asks the router, runs storage jobs and long polls, and
// writes answers, one at a time and in order.
#include "http/session.hpp"

#include "core/conditional.hpp"
#include "streams/bucket_feed.hpp"
#include "streams/sse_session.hpp"
#include "streams/ws_session.hpp"
#include "live/hub.hpp"
#include "core/metrics.hpp"
#include "pipeline/query_pool.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/buffers_suffix.hpp>
#include <boost/beast/core/read_size.hpp>
#include <boost/beast/http/message_generator.hpp>

#include <spdlog/spdlog.h>

#include <array>

namespace telemetry::bridge::http {

namespace asio = boost::asio;
namespace beast = boost::beast;

// A parked long poll as the hub sees it: completed at most once, by the first commit that has a
// reading for it (the hub then unregisters it), or by shutdown. It only hops onto the session's
// thread; the session owns the answer.
class session::poll_waiter : public subscriber {
public:
    poll_waiter(std::weak_ptr<session> owner, std::size_t limit) : owner_(std::move(owner)), limit_(limit) {}

    void on_delivery(const delivery& d) override {
        poll_result r;
        if (d.readings) {
            const auto n = std::min(limit_, d.readings->size());
            r.readings.assign(d.readings->begin(), d.readings->begin() + static_cast<std::ptrdiff_t>(n));
        }
        // Cut by the limit: resume after the last one sent. Otherwise everything up to the
        // newest id has been looked at, so the client may skip past it.
        r.cursor = !r.readings.empty() && r.readings.size() >= limit_ ? r.readings.back()->r.id : d.newest;
        complete(std::move(r));
    }
    void on_shutdown() override {
        if (auto self = owner_.lock()) complete({self->ctx_.live.newest_id(), {}, {}});
    }

private:
    void complete(poll_result r) {
        if (auto self = owner_.lock())
            asio::post(self->stream_.get_executor(),
                       [self, r = std::move(r)]() mutable { self->finish_poll(std::move(r)); });
    }
    std::weak_ptr<session> owner_;
    std::size_t limit_;
};

session::session(connection_stream&& stream, io_shard& shard, session_context& ctx, connection_gauge::slot slot)
    : stream_(std::move(stream)), deadline_timer_(stream_.get_executor()), shard_(shard), ctx_(ctx),
      slot_(std::move(slot)),
      poll_timer_(stream_.get_executor()) {
    beast::error_code ec;
    peer_ = stream_.socket().remote_endpoint(ec).address().to_string();
    ctx_.stats.http_connections.fetch_add(1, std::memory_order_relaxed);
}

session::~session() { ctx_.stats.http_connections.fetch_sub(1, std::memory_order_relaxed); }

void session::run() {
    // One deadline covers the TLS handshake and the whole first request: a client that connects
    // and then sends nothing, or a byte at a time, is gone after handshake_timeout (slowloris).
    set_deadline(clock::now() + ctx_.cfg.handshake_timeout);
    stream_.async_handshake(beast::bind_front_handler(&session::on_handshake, shared_from_this()));
}

void session::on_handshake(beast::error_code ec) {
    if (ec) {
        spdlog::debug("http: TLS handshake with {} failed: {}", peer_, ec.message());
        ctx_.stats.http_tls_handshake_failures.fetch_add(1, std::memory_order_relaxed);
        return do_close();
    }
    do_read();
}

void session::set_deadline(clock::time_point t) {
    deadline_ = t;
    // Armed at or before t: when it fires it waits again for the rest (on_deadline).
    if (t == clock::time_point::max() || armed_at_ <= t) return;
    armed_at_ = t;
    deadline_timer_.expires_at(t);  // cancels an earlier wait: its handler sees the error and returns
    deadline_timer_.async_wait([weak = weak_from_this()](beast::error_code ec) {
        if (auto self = weak.lock()) self->on_deadline(ec);
    });
}

void session::on_deadline(beast::error_code ec) {
    if (ec) return;  // re-armed or cancelled
    armed_at_ = clock::time_point::max();
    if (deadline_ == clock::time_point::max()) return;  // nothing is timed now; set_deadline arms again
    if (clock::now() < deadline_) return set_deadline(deadline_);
    // Closing ends the pending read or write, which ends the session.
    do_close();
}

void session::do_read() {
    if (in_read_loop_) {
        read_again_ = true;
        return;
    }
    in_read_loop_ = true;
    int served = 0;
    do {
        read_again_ = false;
        if (++served > 64) {
            // A long run of pipelined requests: let the shard's other connections in first.
            asio::post(stream_.get_executor(), [self = shared_from_this()] { self->do_read(); });
            break;
        }
        start_request();
    } while (read_again_);
    in_read_loop_ = false;
}

void session::start_request() {
    parser_.emplace();
    // The header limit covers the request line too; the target gets its own, smaller check
    // (414) once the header is in.
    parser_->header_limit(static_cast<std::uint32_t>(ctx_.cfg.max_header_bytes + ctx_.cfg.max_target_bytes));
    parser_->body_limit(ctx_.cfg.max_body_bytes);
    buffer_.max_size(ctx_.cfg.max_header_bytes + ctx_.cfg.max_target_bytes + ctx_.cfg.max_body_bytes + 4096);
    if (!first_request_) set_deadline(clock::now() + ctx_.cfg.idle_timeout);
    first_request_ = false;
    parse_or_read();
}

// What bhttp::async_read does, without its layers of composed operations and the TCP stream's
// per-operation timer: feed the parser what is buffered (a pipelined request may be whole
// already, and is then answered without a system call), and read more only when it is not.
void session::parse_or_read() {
    beast::error_code ec;
    while (buffer_.size() > 0 && !parser_->is_done()) {
        const std::size_t used = parser_->put(buffer_.data(), ec);
        buffer_.consume(used);
        if (ec == bhttp::error::need_more) {
            ec = {};
            break;
        }
        if (ec) return on_read(ec);
        if (used == 0) break;
    }
    if (parser_->is_done()) return on_read({});
    const std::size_t room = beast::read_size(buffer_, 65536);
    if (room == 0) return on_read(bhttp::error::buffer_overflow);
    stream_.async_read_some_untimed(buffer_.prepare(room),
                                    beast::bind_front_handler(&session::on_read_some, shared_from_this()));
}

void session::on_read_some(beast::error_code ec, std::size_t bytes) {
    buffer_.commit(bytes);
    if (ec == asio::error::eof) {
        // The client closed: between requests that is the end; within one, a partial message.
        if (!parser_->got_some()) return on_read(bhttp::error::end_of_stream);
        parser_->put_eof(ec);
        return on_read(ec ? ec : bhttp::error::partial_message);
    }
    if (ec) return on_read(ec);
    parse_or_read();
}

void session::on_read(beast::error_code ec) {
    if (ec == bhttp::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted || ec == asio::error::connection_reset ||
        ec == asio::error::eof)
        return do_close();
    request_info ri;
    ri.keep_alive = false;  // after a malformed request the stream position is unknown: close
    const responder& r = ctx_.routes.respond();
    if (ec == bhttp::error::header_limit) {
        // Which was too large, the target (414) or the fields (431)? Once the parser has the
        // request line it has the target; before (it waits for the whole header once a read
        // ended mid-line), nothing is consumed and the buffer starts with the request line.
        std::size_t target = parser_->get().target().size();
        if (target == 0) {
            const auto data = buffer_.cdata();
            const std::string_view head(static_cast<const char*>(data.data()), data.size());
            const auto eol = head.find("\r\n");
            const auto line = head.substr(0, eol);  // all of it without a CRLF: a line at least that long
            const auto sp1 = line.find(' '), sp2 = line.rfind(' ');
            target = eol == std::string_view::npos ? line.size()
                     : sp1 != std::string_view::npos && sp2 > sp1 ? sp2 - sp1 - 1
                                                                  : line.size();
        }
        if (target > ctx_.cfg.max_target_bytes)
            return send(r.error(ri, error_code::uri_too_long, "request target is too long"));
        return send(r.error(ri, error_code::headers_too_large, "request headers are too large"));
    }
    if (ec == bhttp::error::body_limit || ec == bhttp::error::buffer_overflow)
        return send(r.error(ri, error_code::payload_too_large, "request body is too large"));
    if (ec) {
        if (ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category())
            return send(r.error(ri, error_code::bad_request, "malformed HTTP request: " + ec.message()));
        return do_close();  // a network error: nobody to answer
    }
    // No deadline while the answer is worked out (a storage query, say); send() sets the next.
    set_deadline(clock::time_point::max());
    handle(parser_->release());
}

void session::handle(request&& req) {
    const request_info ri = request_info::of(req);
    const responder& r = ctx_.routes.respond();
    if (req.target().size() > ctx_.cfg.max_target_bytes) {
        request_info closing = ri;
        closing.keep_alive = false;
        return send(r.error(closing, error_code::uri_too_long, "request target is too long"));
    }
    std::size_t header_bytes = 0;
    for (const auto& f : req) header_bytes += f.name_string().size() + f.value().size() + 4;
    if (header_bytes > ctx_.cfg.max_header_bytes) {
        request_info closing = ri;
        closing.keep_alive = false;
        return send(r.error(closing, error_code::headers_too_large, "request headers are too large"));
    }

    action a = ctx_.routes.route(req, peer_);
    if (auto* ans = std::get_if<answer>(&a)) return send(std::move(*ans));
    if (auto* lp = std::get_if<long_poll>(&a)) return start_poll(ri, std::move(*lp));
    if (std::holds_alternative<websocket_request>(a) || std::holds_alternative<stream_request>(a)) {
        // The stream's session takes over the connection and its timeouts; the WebSocket
        // handshake is bounded by the TCP stream's deadline as before.
        deadline_timer_.cancel();
        deadline_ = armed_at_ = clock::time_point::max();
        stream_.tcp().expires_after(ctx_.cfg.idle_timeout);
    }
    if (auto* wr = std::get_if<websocket_request>(&a)) {
        // Hand the connection and the upgrade request over to the WebSocket session.
        std::make_shared<ws_session>(std::move(stream_), shard_, ctx_, ctx_.stream_cfg, std::move(slot_),
                                     std::move(wr->access))
            ->start(std::move(req));
        return;
    }
    if (auto* sr = std::get_if<stream_request>(&a)) {
        // Hand the connection over: from here the SSE session alone owns it.
        std::make_shared<sse_session>(std::move(stream_), shard_, ctx_, ctx_.stream_cfg, ri, std::move(*sr),
                                      std::move(slot_))
            ->start();
        return;
    }

    auto& job = std::get<storage_job>(a);
    auto self = shared_from_this();
    const bool queued = ctx_.queries.submit([self, run = std::move(job.run), ri](storage::store_reader& rd) mutable {
        std::optional<answer> result;
        try {
            result.emplace(run(rd));
        } catch (const std::exception& e) {
            spdlog::error("http: storage query failed: {}", e.what());
            result.emplace(self->ctx_.routes.respond().error(ri, error_code::unavailable,
                                                             "storage is not available right now",
                                                             {{"Retry-After", "1"}}));
        }
        asio::post(self->stream_.get_executor(),
                   [self, res = std::make_shared<answer>(std::move(*result))]() mutable {
                       self->send(std::move(*res));
                   });
    });
    if (!queued) send(ctx_.routes.busy(ri));
}

void session::send(answer a) {
    const bool keep_alive = a.keep_alive();
    if (a.raw) {
        const auto bytes = a.raw;  // kept alive by the handler until the write completes
        // The prepared header gets the current Date spliced in before its blank line.
        const auto h = with_date(*bytes, date_line_);
        std::array<asio::const_buffer, 2> parts{asio::buffer(h.head.data(), h.head.size()),
                                                asio::buffer(h.date_line.data(), h.date_line.size())};
        // A prepared answer (a 304, say) nearly always fits into the socket's buffer: send it now
        // and read the next request, with no asynchronous write to schedule and complete. Only a
        // remainder (or anything through TLS) is written asynchronously.
        beast::error_code send_ec;
        const std::size_t sent = stream_.try_write_now(parts, send_ec);
        if (send_ec) return do_close();
        if (sent == asio::buffer_size(parts)) return do_read();
        beast::buffers_suffix<std::array<asio::const_buffer, 2>> tail(parts);
        tail.consume(sent);
        std::array<asio::const_buffer, 2> left{};
        std::size_t i = 0;
        for (const auto b : tail) left[i++] = b;
        parts = left;
        set_deadline(clock::now() + ctx_.cfg.idle_timeout);  // the idle deadline bounds the write too
        asio::async_write(stream_, parts,
                          [self = shared_from_this(), bytes](beast::error_code ec, std::size_t n) {
                              self->on_write(true, ec, n);
                          });
        return;
    }
    set_deadline(clock::now() + ctx_.cfg.idle_timeout);  // the idle deadline bounds the write too
    beast::async_write(stream_, std::move(*a.msg),
                       beast::bind_front_handler(&session::on_write, shared_from_this(), keep_alive));
}

void session::on_write(bool keep_alive, beast::error_code ec, std::size_t) {
    if (ec) return do_close();
    if (!keep_alive) return do_close();
    do_read();
}

void session::do_close() {
    deadline_timer_.cancel();
    deadline_ = armed_at_ = clock::time_point::max();
    stream_.close();
}

// Long polling: catch up from the cursor (window or storage) until a reading is found; when the
// catch-up reaches the newest reading with nothing found, the waiter is parked in the hub in the
// same step, until a commit has a reading for it or the timeout passes.
void session::start_poll(const request_info& ri, long_poll lp) {
    poll_ri_ = ri;
    waiter_ = std::make_shared<poll_waiter>(weak_from_this(), lp.limit);
    // While parked nothing is read or written; the poll's own timer bounds the wait.
    set_deadline(clock::time_point::max());
    poll_timer_.expires_after(lp.timeout);
    poll_timer_.async_wait(beast::bind_front_handler(&session::on_poll_timeout, shared_from_this()));
    poll_reset_.reset();
    poll_bucket_ = lp.bucket;
    poll_feed_.reset();
    poll_events_.clear();
    poll_deadline_ = std::chrono::steady_clock::now() + lp.timeout;
    const std::int64_t newest = ctx_.live.newest_id();
    if (lp.after > newest && !lp.epoch_reset) {
        // A cursor from the future (for instance from a wiped database): tell the client where
        // the present is rather than make it wait for ids that may never come.
        return finish_poll({newest, {}, {}});
    }
    poll_query_ = catch_up_query{};
    poll_query_.after = lp.after;
    poll_query_.selector = std::move(lp.selector);
    poll_query_.limit = lp.limit;
    poll_query_.check_reset = true;
    poll_query_.epoch_reset = lp.epoch_reset;
    poll_query_.attach = waiter_;
    poll_query_.parks = true;
    poll_step();
}

void session::poll_step() {
    if (!waiter_) return;
    auto self = shared_from_this();
    auto c = ctx_.catchup.next(poll_query_, stream_.get_executor(),
                               [self](catch_up_chunk chunk) { self->on_poll_chunk(std::move(chunk)); });
    if (c) on_poll_chunk(std::move(*c));
}

void session::on_poll_chunk(catch_up_chunk c) {
    if (!waiter_) return;  // answered meanwhile (timeout)
    if (c.result != catch_up_chunk::outcome::ok) {
        ctx_.live.unsubscribe(waiter_.get());
        waiter_.reset();
        poll_timer_.cancel();
        if (c.result == catch_up_chunk::outcome::busy) return send(ctx_.routes.busy(poll_ri_));
        return send(ctx_.routes.respond().error(poll_ri_, error_code::unavailable,
                                                "storage is not available right now", {{"Retry-After", "1"}}));
    }
    if (c.reset) poll_reset_ = c.reset;
    poll_query_.check_reset = false;
    poll_query_.epoch_reset.reset();
    if (!c.readings.empty()) {
        poll_result r;
        // Cut by the limit: resume after the last one sent; otherwise after all that was looked at.
        r.cursor = c.readings.size() >= poll_query_.limit ? c.readings.back()->r.id : c.reached;
        r.readings = std::move(c.readings);
        return finish_poll(std::move(r));
    }
    if (c.attached) return;  // parked: a commit or the timeout answers
    poll_query_.after = std::max(poll_query_.after, c.reached);
    poll_step();
}

void session::on_poll_timeout(beast::error_code ec) {
    if (ec || !waiter_) return;  // cancelled: the poll was answered
    if (ctx_.live.unsubscribe(waiter_.get())) {
        finish_poll({ctx_.live.newest_id(), {}, {}});
        return;
    }
    // Not parked: either the hub completed it (its answer is on the way) or a storage read is
    // running; either way an answer follows. Check again shortly in the second case.
    poll_timer_.expires_after(std::chrono::milliseconds(50));
    poll_timer_.async_wait(beast::bind_front_handler(&session::on_poll_timeout, shared_from_this()));
}

void session::finish_poll(poll_result r) {
    if (!waiter_) return;  // already answered
    if (poll_bucket_ && !r.buckets) {
        if (!r.readings.empty()) return feed_poll(std::move(r));
        r.buckets.emplace();  // the timeout, or a cursor from the future: no bucket, a cursor
    }
    poll_feed_.reset();
    ctx_.live.unsubscribe(waiter_.get());
    waiter_.reset();
    poll_query_.attach.reset();
    poll_timer_.cancel();
    send(ctx_.routes.poll_answer(poll_ri_, r, poll_reset_));
    poll_reset_.reset();
}

void session::feed_poll(poll_result r) {
    if (!poll_feed_) {
        bucket_feed::sink s;
        // Called on this session's thread while a poll is in progress (the feed is the poll's).
        s.emit = [this](const bucket_event& e) { poll_events_.push_back(e); };
        s.drained = [this] { after_poll_feed(); };
        s.failed = [this](bucket_feed::failure f) {
            if (!waiter_) return;
            ctx_.live.unsubscribe(waiter_.get());
            waiter_.reset();
            poll_timer_.cancel();
            poll_feed_.reset();
            if (f == bucket_feed::failure::busy) return send(ctx_.routes.busy(poll_ri_));
            send(ctx_.routes.respond().error(poll_ri_, error_code::unavailable, "storage is not available right now",
                                             {{"Retry-After", "1"}}));
        };
        // A poll holds one chunk (at most `limit`, 10,000, readings) at a time: nothing piles up.
        poll_feed_ = std::make_shared<bucket_feed>(*poll_bucket_, ctx_.queries, stream_.get_executor(), 10'000,
                                                   std::move(s));
    }
    poll_cursor_ = r.cursor;
    const auto feed = poll_feed_;  // a failure inside push() ends the poll and drops poll_feed_
    feed->push(r.readings, shared_from_this());
    if (poll_feed_ == feed && feed->idle()) after_poll_feed();
}

void session::after_poll_feed() {
    if (!waiter_) return;
    if (!poll_events_.empty() || std::chrono::steady_clock::now() >= poll_deadline_) {
        poll_result out;
        out.cursor = poll_cursor_;
        out.buckets = std::move(poll_events_);
        poll_events_.clear();
        return finish_poll(std::move(out));
    }
    // The readings only grew open buckets: look further, parking again when nothing is new.
    poll_query_.after = poll_cursor_;
    poll_step();
}

}  // namespace telemetry::bridge::http
