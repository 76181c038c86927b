// A client connection's byte stream: plain TCP, or TLS over TCP.
#include "net/connection_stream.hpp"

namespace telemetry::bridge::http {

namespace asio = boost::asio;

std::size_t connection_stream::try_write_now(asio::const_buffer bytes, boost::system::error_code& ec) {
    ec = {};
    if (tls_) return 0;
    auto& s = plain_->socket();
    if (!s.non_blocking()) s.non_blocking(true, ec);
    if (ec) return 0;
    const std::size_t sent = s.write_some(bytes, ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
        ec = {};
        return 0;
    }
    return ec ? 0 : sent;
}

void connection_stream::close() noexcept {
    boost::system::error_code ignored;
    socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    socket().close(ignored);
}

}  // namespace telemetry::bridge::http
