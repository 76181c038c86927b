// Templates of connection_stream (connection_stream.hpp).
#pragma once

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

namespace telemetry::bridge::http {

template <class Handler>
void connection_stream::async_write_all(boost::asio::const_buffer bytes, Handler&& handler) {
    if (tls_) boost::asio::async_write(*tls_, bytes, std::forward<Handler>(handler));
    else boost::asio::async_write(plain_->socket(), bytes, std::forward<Handler>(handler));
}

template <class ConstBuffers>
std::size_t connection_stream::try_write_now(const ConstBuffers& buffers, boost::system::error_code& ec) {
    ec = {};
    if (tls_) return 0;
    auto& s = plain_->socket();
    if (!s.non_blocking()) s.non_blocking(true, ec);
    if (ec) return 0;
    const std::size_t sent = s.write_some(buffers, ec);
    if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again) {
        ec = {};
        return 0;
    }
    return ec ? 0 : sent;
}

template <class Handler>
void connection_stream::async_handshake(Handler&& handler) {
    if (tls_) {
        tls_->async_handshake(boost::asio::ssl::stream_base::server, std::forward<Handler>(handler));
        return;
    }
    boost::asio::post(get_executor(), [h = std::forward<Handler>(handler)]() mutable { h(boost::system::error_code{}); });
}

}  // namespace telemetry::bridge::http
