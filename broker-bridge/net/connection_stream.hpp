// A client connection's byte stream: plain TCP, or TLS over TCP (HTTPS and WSS). Sessions, SSE
// and WebSocket streams are written once against this type; only here does the difference show.
#pragma once

#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <array>
#include <memory>
#include <optional>
#include <utility>

namespace telemetry::bridge::http {

class connection_stream {
public:
    using tcp_layer = boost::beast::tcp_stream;
    // Beast's TLS stream: Asio's writes only the first buffer of a sequence per TLS record, so
    // an HTTP header and its body would go out as two records and two system calls; Beast's
    // flattens a sequence into one record first.
    using tls_layer = boost::beast::ssl_stream<tcp_layer>;
    using executor_type = tcp_layer::executor_type;
    using next_layer_type = tcp_layer;

    explicit connection_stream(tcp_layer&& tcp) : plain_(std::move(tcp)) {}
    // TLS with the given certificate; the server handshake must run first (async_handshake).
    connection_stream(tcp_layer&& tcp, std::shared_ptr<boost::asio::ssl::context> tls)
        : tls_ctx_(std::move(tls)), tls_(std::make_unique<tls_layer>(std::move(tcp), *tls_ctx_)) {}

    bool secure() const noexcept { return tls_ != nullptr; }
    executor_type get_executor() noexcept { return tcp().get_executor(); }
    // The TCP stream underneath: its deadlines (expires_after) bound every operation above it.
    tcp_layer& next_layer() noexcept { return tls_ ? tls_->next_layer() : *plain_; }
    const tcp_layer& next_layer() const noexcept { return tls_ ? tls_->next_layer() : *plain_; }
    tcp_layer& tcp() noexcept { return next_layer(); }
    boost::asio::ip::tcp::socket& socket() noexcept { return tcp().socket(); }

    template <class MutableBuffers, class Handler>
    auto async_read_some(const MutableBuffers& buffers, Handler&& handler) {
        return boost::asio::async_initiate<Handler, void(boost::system::error_code, std::size_t)>(
            [this](auto h, const MutableBuffers& b) {
                if (tls_) tls_->async_read_some(b, std::move(h));
                else plain_->async_read_some(b, std::move(h));
            },
            handler, buffers);
    }

    template <class ConstBuffers, class Handler>
    auto async_write_some(const ConstBuffers& buffers, Handler&& handler) {
        return boost::asio::async_initiate<Handler, void(boost::system::error_code, std::size_t)>(
            [this](auto h, const ConstBuffers& b) {
                if (tls_) tls_->async_write_some(b, std::move(h));
                else plain_->async_write_some(b, std::move(h));
            },
            handler, buffers);
    }

    // Reads some bytes without the TCP stream's deadline machinery when the connection is plain
    // (the caller bounds the wait with its own timer, closing the connection at its deadline).
    template <class MutableBuffers, class Handler>
    auto async_read_some_untimed(const MutableBuffers& buffers, Handler&& handler) {
        return boost::asio::async_initiate<Handler, void(boost::system::error_code, std::size_t)>(
            [this](auto h, const MutableBuffers& b) {
                if (tls_) tls_->async_read_some(b, std::move(h));
                else plain_->socket().async_read_some(b, std::move(h));
            },
            handler, buffers);
    }

    // Writes all of `bytes` without the TCP stream's deadline machinery when the connection is
    // plain (streams bound their writes themselves); through TLS otherwise.
    template <class Handler>
    void async_write_all(boost::asio::const_buffer bytes, Handler&& handler);

    // The server side of the TLS handshake; completes at once for a plain connection.
    template <class Handler>
    void async_handshake(Handler&& handler);

    // A send that completes now or not at all: what fits into the socket's buffer goes, the rest
    // is left for an asynchronous write. Through TLS nothing is sent this way (the TLS engine
    // must not be driven by a would-block socket), so 0 is returned and the caller writes async.
    std::size_t try_write_now(boost::asio::const_buffer bytes, boost::system::error_code& ec) {
        return try_write_now(std::array<boost::asio::const_buffer, 1>{bytes}, ec);
    }
    // The same for a buffer sequence, sent with one gathering system call.
    template <class ConstBuffers>
    std::size_t try_write_now(const ConstBuffers& buffers, boost::system::error_code& ec);

    // Drops the connection without ceremony (no TLS close_notify): used when closing a client.
    void close() noexcept;

private:
    std::optional<tcp_layer> plain_;
    std::shared_ptr<boost::asio::ssl::context> tls_ctx_;  // held: a certificate reload keeps ours
    std::unique_ptr<tls_layer> tls_;
};

}  // namespace telemetry::bridge::http

#include "net/connection_stream_impl.hpp"
