// Accepts TCP connections and starts a session for each, within the connection limit.
#pragma once

#include "net/io_shards.hpp"
#include "http/session.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <memory>
#include <stdexcept>
#include <string>

namespace telemetry::bridge::http {

// Why a listener could not be built: the address and the system's reason, e.g. "cannot listen on
// 127.0.0.1:8080: Address already in use"; `code` lets the caller add what the operator can do.
struct listen_error : std::runtime_error {
    listen_error(const std::string& what, boost::system::error_code ec)
        : std::runtime_error(what), code(ec) {}
    boost::system::error_code code;
};

// Built bound and listening, or it throws listen_error: a listener never "runs" without its port.
// It accepts on the first shard's thread and places each connection on the next shard, round-robin.
class listener : public std::enable_shared_from_this<listener> {
public:
    listener(io_shards& shards, const boost::asio::ip::tcp::endpoint& at, session_context& ctx);
    void run();
    void stop();  // closes the acceptor; thread-safe (posts to the acceptor's thread)
    boost::asio::ip::tcp::endpoint local_endpoint() const { return endpoint_; }

private:
    void do_accept();
    void on_accept(io_shard& shard, boost::beast::error_code ec, boost::asio::ip::tcp::socket socket);

    io_shards& shards_;
    boost::asio::ip::tcp::acceptor acceptor_;
    boost::asio::steady_timer pause_;
    boost::asio::ip::tcp::endpoint endpoint_;
    session_context& ctx_;
};

}  // namespace telemetry::bridge::http
