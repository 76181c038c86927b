// Accepts TCP connections and starts a session for each, within the connection limit.
#include "net/listener.hpp"

#include "core/metrics.hpp"
#include "net/tls_identity.hpp"

#include <boost/asio/post.hpp>

#include <spdlog/spdlog.h>

#include <sstream>

namespace telemetry::bridge::http {

namespace asio = boost::asio;
namespace beast = boost::beast;

listener::listener(io_shards& shards, const asio::ip::tcp::endpoint& at, session_context& ctx)
    : shards_(shards), acceptor_(shards.first().context()), pause_(shards.first().context()), ctx_(ctx) {
    beast::error_code ec;
    acceptor_.open(at.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(at, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (!ec) endpoint_ = acceptor_.local_endpoint(ec);
    if (ec) {
        std::ostringstream what;
        what << "cannot listen on " << at << ": " << ec.message();
        throw listen_error(what.str(), ec);
    }
}

void listener::run() {
    asio::post(acceptor_.get_executor(), beast::bind_front_handler(&listener::do_accept, shared_from_this()));
}

void listener::stop() {
    asio::post(acceptor_.get_executor(), [self = shared_from_this()] {
        beast::error_code ec;
        self->acceptor_.close(ec);
        self->pause_.cancel();
    });
}

void listener::do_accept() {
    if (!acceptor_.is_open()) return;
    // The connection lives on one shard, whose single thread runs all its handlers.
    io_shard& shard = shards_.next();
    acceptor_.async_accept(shard.context(), [self = shared_from_this(), &shard](beast::error_code ec,
                                                                               asio::ip::tcp::socket s) {
        self->on_accept(shard, ec, std::move(s));
    });
}

void listener::on_accept(io_shard& shard, beast::error_code ec, asio::ip::tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (ec) {
        // Out of descriptors and the like: log, pause briefly, keep accepting.
        spdlog::warn("http: accept failed: {}", ec.message());
        pause_.expires_after(std::chrono::milliseconds(100));
        pause_.async_wait([self = shared_from_this()](beast::error_code e) {
            if (!e) self->do_accept();
        });
        return;
    }
    auto peer = socket.remote_endpoint(ec);
    auto [slot, refused] = ec ? std::pair{std::optional<connection_gauge::slot>{}, connection_gauge::refusal::none}
                              : ctx_.connections.try_open(peer.address());
    if (!slot) {
        // Closed at once: a refused client gets no answer to tie a thread or memory up with.
        if (refused == connection_gauge::refusal::per_address)
            ctx_.stats.http_connections_rejected_per_address.fetch_add(1, std::memory_order_relaxed);
        else
            ctx_.stats.http_connections_rejected.fetch_add(1, std::memory_order_relaxed);
        beast::error_code ignored;
        socket.close(ignored);
    } else {
        socket.set_option(asio::ip::tcp::no_delay(true), ec);
        beast::tcp_stream tcp(std::move(socket));
        auto stream = ctx_.tls ? connection_stream(std::move(tcp), ctx_.tls->current())
                               : connection_stream(std::move(tcp));
        std::make_shared<session>(std::move(stream), shard, ctx_, std::move(*slot))->run();
    }
    do_accept();
}

}  // namespace telemetry::bridge::http
