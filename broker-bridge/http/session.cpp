// One HTTP/1.1 connection: reads requests, asks the router, runs storage jobs and long polls, and
// writes answers, one at a time and in order.
#include "http/session.hpp"

#include "http/sse_session.hpp"
#include "http/ws_session.hpp"
#include "hub.hpp"
#include "metrics.hpp"
#include "query_pool.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/http/message_generator.hpp>

#include <spdlog/spdlog.h>

namespace telemetry::bridge::http {

namespace asio = boost::asio;
namespace beast = boost::beast;

namespace {
constexpr std::size_t storage_scan_chunk = 1000;
}

session::session(asio::ip::tcp::socket&& socket, io_shard& shard, session_context& ctx)
    : stream_(std::move(socket)), shard_(shard), ctx_(ctx), poll_timer_(stream_.get_executor()) {
    ctx_.stats.http_connections.fetch_add(1, std::memory_order_relaxed);
}

session::~session() { ctx_.stats.http_connections.fetch_sub(1, std::memory_order_relaxed); }

void session::run() {
    asio::dispatch(stream_.get_executor(), beast::bind_front_handler(&session::do_read, shared_from_this()));
}

void session::do_read() {
    parser_.emplace();
    // The header limit covers the request line too; the target gets its own, smaller check
    // (414) once the header is in.
    parser_->header_limit(static_cast<std::uint32_t>(ctx_.cfg.max_header_bytes + ctx_.cfg.max_target_bytes));
    parser_->body_limit(ctx_.cfg.max_body_bytes);
    buffer_.max_size(ctx_.cfg.max_header_bytes + ctx_.cfg.max_target_bytes + ctx_.cfg.max_body_bytes + 4096);
    stream_.expires_after(ctx_.cfg.idle_timeout);
    bhttp::async_read(stream_, buffer_, *parser_, beast::bind_front_handler(&session::on_read, shared_from_this()));
}

void session::on_read(beast::error_code ec, std::size_t) {
    if (ec == bhttp::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted || ec == asio::error::connection_reset ||
        ec == asio::error::eof)
        return do_close();
    request_info ri;
    ri.keep_alive = false;  // after a malformed request the stream position is unknown: close
    const responder& r = ctx_.routes.respond();
    if (ec == bhttp::error::header_limit)
        return send(r.error(ri, error_code::headers_too_large, "request line and headers are too large"));
    if (ec == bhttp::error::body_limit || ec == bhttp::error::buffer_overflow)
        return send(r.error(ri, error_code::payload_too_large, "request body is too large"));
    if (ec) {
        if (ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category())
            return send(r.error(ri, error_code::bad_request, "malformed HTTP request: " + ec.message()));
        return do_close();  // a network error: nobody to answer
    }
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

    action a = ctx_.routes.route(req);
    if (auto* ans = std::get_if<answer>(&a)) return send(std::move(*ans));
    if (auto* lp = std::get_if<long_poll>(&a)) return start_poll(ri, std::move(*lp));
    if (std::holds_alternative<websocket_request>(a)) {
        // Hand the connection and the upgrade request over to the WebSocket session.
        std::make_shared<ws_session>(std::move(stream_), shard_, ctx_, ctx_.stream_cfg)->start(std::move(req));
        return;
    }
    if (auto* sr = std::get_if<stream_request>(&a)) {
        // Hand the connection over: from here the SSE session alone owns it.
        std::make_shared<sse_session>(std::move(stream_), shard_, ctx_, ctx_.stream_cfg, ri, std::move(*sr))->start();
        return;
    }

    auto& job = std::get<storage_job>(a);
    auto self = shared_from_this();
    const bool queued = ctx_.queries.submit([self, run = std::move(job.run), ri](storage::reader& rd) mutable {
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
    stream_.expires_after(ctx_.cfg.idle_timeout);
    if (a.raw) {
        const auto bytes = a.raw;  // kept alive by the handler until the write completes
        asio::async_write(stream_, asio::buffer(*bytes),
                          [self = shared_from_this(), bytes](beast::error_code ec, std::size_t n) {
                              self->on_write(true, ec, n);
                          });
        return;
    }
    beast::async_write(stream_, std::move(*a.msg),
                       beast::bind_front_handler(&session::on_write, shared_from_this(), keep_alive));
}

void session::on_write(bool keep_alive, beast::error_code ec, std::size_t) {
    if (ec) return do_close();
    if (!keep_alive) return do_close();
    do_read();
}

void session::do_close() {
    beast::error_code ec;
    stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ec);
    stream_.socket().close(ec);
}

// Long polling: park in the hub until a matching reading is committed or the timeout passes.
void session::start_poll(const request_info& ri, long_poll lp) {
    poll_ri_ = ri;
    waiter_ = std::make_shared<poll_waiter>();
    waiter_->filters = std::move(lp.filters);
    waiter_->limit = lp.limit;
    std::weak_ptr<session> weak = weak_from_this();
    waiter_->done = [weak](poll_result r) {
        // Runs on the committing thread: only hop onto our thread.
        if (auto self = weak.lock())
            asio::post(self->stream_.get_executor(),
                       [self, r = std::move(r)]() mutable { self->finish_poll(std::move(r)); });
    };
    // While parked nothing is read or written; the poll's own timer bounds the wait.
    stream_.expires_never();
    poll_timer_.expires_after(lp.timeout);
    poll_timer_.async_wait(beast::bind_front_handler(&session::on_poll_timeout, shared_from_this()));
    const std::int64_t newest = ctx_.live.newest_id();
    if (lp.after > newest) {
        // A cursor from the future (for instance from a wiped database): tell the client where
        // the present is rather than make it wait for ids that may never come.
        return finish_poll({newest, {}});
    }
    poll_reset_.reset();
    // Retention may have deleted readings after this cursor: storage says whether, and from where.
    if (lp.after < ctx_.live.retired_max_id()) return scan_storage(lp.after, true);
    continue_poll(lp.after);
}

void session::continue_poll(std::int64_t after) {
    if (!waiter_) return;
    poll_result out;
    switch (ctx_.live.poll(after, waiter_, out)) {
    case hub::poll_outcome::ready: return finish_poll(std::move(out));
    case hub::poll_outcome::parked: return;
    case hub::poll_outcome::need_storage: return scan_storage(after);
    }
}

// The cursor is older than the hub's window: look for matches in storage, chunk by chunk, up to
// the window; then the hub takes over from there (no gap: every id > floor is in the window).
void session::scan_storage(std::int64_t after, bool check_reset) {
    auto self = shared_from_this();
    auto waiter = waiter_;
    const bool queued = ctx_.queries.submit([self, waiter, after, check_reset](storage::reader& rd) {
        poll_result res;
        std::int64_t cursor = after;
        const std::int64_t floor = self->ctx_.live.window_floor();
        try {
            if (check_reset && after < rd.retired_max_id()) {
                const std::int64_t oldest = rd.oldest_id();
                asio::post(self->stream_.get_executor(),
                           [self, after, oldest] { self->poll_reset_.emplace(after, oldest); });
            }
            while (res.readings.size() < waiter->limit && cursor < floor) {
                auto rows = rd.after_id(cursor, storage_scan_chunk);
                if (rows.empty()) break;
                for (auto& r : rows) {
                    cursor = r.id;
                    auto l = self->ctx_.live.make_live(std::move(r));
                    if (matches_any(waiter->filters, l->topic)) res.readings.push_back(std::move(l));
                    if (res.readings.size() >= waiter->limit) break;
                }
            }
        } catch (const std::exception& e) {
            spdlog::error("http: long poll storage scan failed: {}", e.what());
        }
        if (res.readings.empty()) {
            // Nothing matched up to the window (or storage has nothing more): continue from it.
            const std::int64_t next = std::max(cursor, floor);
            asio::post(self->stream_.get_executor(), [self, next] { self->continue_poll(next); });
            return;
        }
        res.cursor = res.readings.size() >= waiter->limit ? res.readings.back()->r.id : cursor;
        asio::post(self->stream_.get_executor(),
                   [self, res = std::move(res)]() mutable { self->finish_poll(std::move(res)); });
    });
    if (!queued) {
        waiter_.reset();
        poll_timer_.cancel();
        send(ctx_.routes.busy(poll_ri_));
    }
}

void session::on_poll_timeout(beast::error_code ec) {
    if (ec || !waiter_) return;  // cancelled: the poll was answered
    if (auto newest = ctx_.live.cancel(waiter_)) {
        finish_poll({*newest, {}});
        return;
    }
    // Not parked: either the hub completed it (its answer is on the way) or a storage scan is
    // running; either way an answer follows. Check again shortly in the second case.
    poll_timer_.expires_after(std::chrono::milliseconds(50));
    poll_timer_.async_wait(beast::bind_front_handler(&session::on_poll_timeout, shared_from_this()));
}

void session::finish_poll(poll_result r) {
    if (!waiter_) return;  // already answered
    ctx_.live.cancel(waiter_);
    waiter_.reset();
    poll_timer_.cancel();
    send(ctx_.routes.poll_answer(poll_ri_, r, poll_reset_));
    poll_reset_.reset();
}

}  // namespace telemetry::bridge::http
