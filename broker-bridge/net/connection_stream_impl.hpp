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

template <class Handler>
void connection_stream::async_handshake(Handler&& handler) {
    if (tls_) {
        tls_->async_handshake(boost::asio::ssl::stream_base::server, std::forward<Handler>(handler));
        return;
    }
    boost::asio::post(get_executor(), [h = std::forward<Handler>(handler)]() mutable { h(boost::system::error_code{}); });
}

}  // namespace telemetry::bridge::http
