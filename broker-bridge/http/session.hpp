// One HTTP/1.1 connection: reads requests, asks the router, runs storage jobs and long polls, and
// writes answers, one at a time and in order.
#pragma once

#include "config.hpp"
#include "http/io_shards.hpp"
#include "http/router.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <memory>
#include <optional>

namespace telemetry::bridge {
class hub;
class metrics;
class query_pool;
}  // namespace telemetry::bridge

namespace telemetry::bridge::http {

// Everything a session needs, shared by all sessions; outlives them (owned by the bridge, which
// stops the io_context before destroying any of it).
struct session_context {
    router& routes;
    hub& live;
    query_pool& queries;
    metrics& stats;
    const http_config& cfg;
    const stream_config& stream_cfg;
};

// Owns its socket; keeps itself alive through shared_from_this() in every pending handler. All its
// handlers run on its shard's one thread, so its members need no lock.
class session : public std::enable_shared_from_this<session> {
public:
    session(boost::asio::ip::tcp::socket&& socket, io_shard& shard, session_context& ctx);
    ~session();
    void run();

private:
    void do_read();
    void on_read(boost::beast::error_code ec, std::size_t bytes);
    void handle(request&& req);
    void send(answer a);
    void on_write(bool keep_alive, boost::beast::error_code ec, std::size_t bytes);
    void do_close();

    void start_poll(const request_info& ri, long_poll lp);
    void continue_poll(std::int64_t after);
    void scan_storage(std::int64_t after, bool check_reset = false);
    void on_poll_timeout(boost::beast::error_code ec);
    void finish_poll(poll_result r);

    boost::beast::tcp_stream stream_;
    io_shard& shard_;
    boost::beast::flat_buffer buffer_;
    std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
    session_context& ctx_;

    // The long poll in progress, if any.
    boost::asio::steady_timer poll_timer_;
    std::shared_ptr<poll_waiter> waiter_;
    request_info poll_ri_;
    // Set when retention deleted readings after the poll's cursor: (after, oldest id kept).
    std::optional<std::pair<std::int64_t, std::int64_t>> poll_reset_;
};

}  // namespace telemetry::bridge::http
