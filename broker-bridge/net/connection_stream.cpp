// A client connection's byte stream: plain TCP, or TLS over TCP.
#include "net/connection_stream.hpp"

namespace telemetry::bridge::http {

namespace asio = boost::asio;

void connection_stream::close() noexcept {
    boost::system::error_code ignored;
    socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    socket().close(ignored);
}

}  // namespace telemetry::bridge::http
