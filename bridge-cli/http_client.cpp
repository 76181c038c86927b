// A small blocking HTTP/1.1 client for the bridge, built on Beast's asynchronous operations so
// that every step has a deadline (Beast's synchronous calls have none) and a signal can cancel it.
#include "http_client.hpp"

#include "exit_codes.hpp"
#include "formats.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <csignal>
#include <optional>
#include <strings.h>

#ifndef BRIDGE_CLI_VERSION
#define BRIDGE_CLI_VERSION "0"
#endif

namespace telemetry::cli {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

namespace {

// History pages are at most 10,000 readings (~1.5 MB); anything far larger is not our server.
constexpr std::uint64_t max_body = 64ull << 20;
// An error answer read from a stream request is kept up to this size.
constexpr std::size_t max_error_body = 64 << 10;

template <typename Fields>
header_list copy_headers(const Fields& f) {
    header_list out;
    for (const auto& h : f) out.emplace_back(std::string(h.name_string()), std::string(h.value()));
    return out;
}

}  // namespace

std::string http_response::header(std::string_view name) const {
    for (const auto& [k, v] : headers)
        if (k.size() == name.size() && ::strncasecmp(k.data(), name.data(), k.size()) == 0) return v;
    return {};
}

struct http_client::impl {
    server_url url;
    std::chrono::milliseconds timeout;
    std::string token;
    asio::io_context ioc;
    std::optional<asio::signal_set> signals;
    bool interrupted = false;
    // What a signal must cancel: the stream or timer the caller is blocked on.
    beast::tcp_stream* active_stream = nullptr;
    asio::steady_timer* active_timer = nullptr;

    std::string where() const { return url.host_header; }

    std::string describe(const beast::error_code& ec) const {
        if (ec == beast::error::timeout)
            return "timed out after " + format_number(static_cast<double>(timeout.count()) / 1000.0) + " s";
        return ec.message();
    }

    // Starts one asynchronous operation and runs the io_context until it completes. The signal
    // set's pending wait keeps the context from running out of work, hence run_one in a loop.
    template <typename Start>
    beast::error_code await(Start&& start) {
        bool done = false;
        beast::error_code result;
        start([&done, &result](beast::error_code ec, auto&&...) {
            result = ec;
            done = true;
        });
        ioc.restart();
        while (!done && ioc.run_one() > 0) {
        }
        return result;
    }

    // Connects `s`; throws cli_error(network) on failure. False if a signal came first.
    bool connect(beast::tcp_stream& s) {
        tcp::resolver resolver(ioc);
        tcp::resolver::results_type results;
        auto ec = await([&](auto handler) {
            resolver.async_resolve(url.host, url.port,
                                   [&results, handler = std::move(handler)](beast::error_code e,
                                                                            tcp::resolver::results_type r) mutable {
                                       results = std::move(r);
                                       handler(e);
                                   });
        });
        if (interrupted) return false;
        if (ec) throw cli_error(exit_code::network, "cannot resolve " + url.host + ": " + ec.message());
        s.expires_after(timeout);
        ec = await([&](auto handler) { s.async_connect(results, std::move(handler)); });
        if (interrupted) return false;
        if (ec) throw cli_error(exit_code::network, "cannot connect to " + where() + ": " + describe(ec));
        return true;
    }

    bool send(beast::tcp_stream& s, const std::string& target, const header_list& extra) {
        bhttp::request<bhttp::empty_body> req{bhttp::verb::get, target, 11};
        req.set(bhttp::field::host, url.host_header);
        req.set(bhttp::field::user_agent, "bridge-cli/" BRIDGE_CLI_VERSION);
        if (!token.empty()) req.set(bhttp::field::authorization, "Bearer " + token);
        for (const auto& [k, v] : extra) req.set(k, v);
        req.keep_alive(false);  // one request per connection: simple, and nothing to go stale
        s.expires_after(timeout);
        auto ec = await([&](auto handler) { bhttp::async_write(s, req, std::move(handler)); });
        if (interrupted) return false;
        if (ec) throw cli_error(exit_code::network, "sending the request to " + where() + " failed: " + describe(ec));
        return true;
    }
};

http_client::http_client(server_url url, std::chrono::milliseconds timeout, std::string token)
    : impl_(std::make_unique<impl>()) {
    impl_->url = std::move(url);
    impl_->timeout = timeout;
    impl_->token = std::move(token);
}

http_client::~http_client() = default;

const server_url& http_client::url() const { return impl_->url; }

http_response http_client::get(const std::string& target, const header_list& extra) {
    beast::tcp_stream s(impl_->ioc);
    if (!impl_->connect(s) || !impl_->send(s, target, extra))
        throw cli_error(exit_code::network, "interrupted");
    beast::flat_buffer buf;
    bhttp::response_parser<bhttp::string_body> p;
    p.body_limit(max_body);
    s.expires_after(impl_->timeout);
    auto ec = impl_->await([&](auto handler) { bhttp::async_read(s, buf, p, std::move(handler)); });
    if (ec == bhttp::error::body_limit)
        throw cli_error(exit_code::bad_response, "the answer from " + impl_->where() + " is too large");
    if (ec) throw cli_error(exit_code::network, "no answer from " + impl_->where() + ": " + impl_->describe(ec));
    http_response r;
    r.status = p.get().result_int();
    r.headers = copy_headers(p.get().base());
    r.body = std::move(p.get().body());
    return r;
}

stream_end http_client::stream(const std::string& target, const header_list& extra,
                               std::chrono::milliseconds idle, http_response& head,
                               const std::function<bool(std::string_view)>& on_data) {
    if (impl_->interrupted) return stream_end::interrupted;
    beast::tcp_stream s(impl_->ioc);
    impl_->active_stream = &s;
    struct clear_active {
        impl* i;
        ~clear_active() { i->active_stream = nullptr; }
    } clear{impl_.get()};
    if (!impl_->connect(s) || !impl_->send(s, target, extra)) return stream_end::interrupted;

    beast::flat_buffer buf;
    bhttp::response_parser<bhttp::buffer_body> p;
    p.body_limit(boost::none);  // an event stream has no end but the connection's
    s.expires_after(impl_->timeout);
    auto ec = impl_->await([&](auto handler) { bhttp::async_read_header(s, buf, p, std::move(handler)); });
    if (impl_->interrupted) return stream_end::interrupted;
    if (ec) throw cli_error(exit_code::network, "no answer from " + impl_->where() + ": " + impl_->describe(ec));
    head.status = p.get().result_int();
    head.headers = copy_headers(p.get().base());
    head.body.clear();
    const bool ok = head.status == 200;

    char chunk[16384];
    while (!p.is_done()) {
        p.get().body().data = chunk;
        p.get().body().size = sizeof chunk;
        // read_some, not read: read would wait to fill the chunk, holding back events.
        s.expires_after(ok ? idle : impl_->timeout);
        ec = impl_->await([&](auto handler) { bhttp::async_read_some(s, buf, p, std::move(handler)); });
        if (ec == bhttp::error::need_buffer) ec = {};
        const std::size_t n = sizeof chunk - p.get().body().size;
        if (n > 0) {
            if (!ok) {
                if (head.body.size() < max_error_body) head.body.append(chunk, n);
            } else if (!on_data(std::string_view(chunk, n))) {
                return stream_end::stopped;
            }
        }
        if (impl_->interrupted) return stream_end::interrupted;
        if (ec == beast::error::timeout) return stream_end::idle;
        if (ec) break;  // end of stream or a broken connection: the caller resumes either way
    }
    return stream_end::closed;
}

void http_client::interrupt_on_signals() {
    if (impl_->signals) return;
    impl_->signals.emplace(impl_->ioc, SIGINT, SIGTERM);
    impl_->signals->async_wait([i = impl_.get()](const beast::error_code& ec, int) {
        if (ec) return;
        i->interrupted = true;
        if (i->active_stream) i->active_stream->cancel();
        if (i->active_timer) i->active_timer->cancel();
    });
}

bool http_client::interrupted() const { return impl_->interrupted; }

bool http_client::pause(std::chrono::milliseconds d) {
    if (impl_->interrupted) return false;
    asio::steady_timer t(impl_->ioc);
    t.expires_after(d);
    impl_->active_timer = &t;
    impl_->await([&](auto handler) { t.async_wait(std::move(handler)); });
    impl_->active_timer = nullptr;
    return !impl_->interrupted;
}

}  // namespace telemetry::cli
