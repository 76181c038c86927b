// One HTTP/1.1 connection: reads requests, asks the router, runs storage jobs and long polls, and
// writes answers, one at a time and in order.
#pragma once

#include "core/config.hpp"
#include "http/router.hpp"
#include "net/connection_gauge.hpp"
#include "net/connection_stream.hpp"
#include "net/io_shards.hpp"
#include "pipeline/catch_up.hpp"
#include "streams/send_budget.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <memory>
#include <optional>

namespace telemetry::bridge {
class bucket_feed;
class hub;
class metrics;
class query_pool;
}  // namespace telemetry::bridge

namespace telemetry::bridge::http {

class tls_identity;

// Everything a session needs, shared by all sessions; outlives them (owned by the bridge, which
// stops the io_context before destroying any of it).
struct session_context {
    router& routes;
    hub& live;
    query_pool& queries;
    catch_up& catchup;
    connection_gauge& connections;
    metrics& stats;
    const http_config& cfg;
    const stream_config& stream_cfg;
    send_budget& stream_budget;   // all streams' queued bytes together
    tls_identity* tls = nullptr;  // HTTPS and WSS when set
};

// Owns its socket; keeps itself alive through shared_from_this() in every pending handler. All its
// handlers run on its shard's one thread, so its members need no lock.
class session : public std::enable_shared_from_this<session> {
public:
    session(connection_stream&& stream, io_shard& shard, session_context& ctx, connection_gauge::slot slot);
    ~session();
    void run();

private:
    void on_handshake(boost::beast::error_code ec);
    void do_read();
    void start_request();
    void parse_or_read();
    void on_read_some(boost::beast::error_code ec, std::size_t bytes);
    void on_read(boost::beast::error_code ec);
    void handle(request&& req);
    void send(answer a);
    void on_write(bool keep_alive, boost::beast::error_code ec, std::size_t bytes);
    void do_close();
    // The connection's one deadline (handshake and first request, idle, writing an answer).
    using clock = std::chrono::steady_clock;
    void set_deadline(clock::time_point t);
    void on_deadline(boost::beast::error_code ec);

    class poll_waiter;
    void start_poll(const request_info& ri, long_poll lp);
    void poll_step();
    void on_poll_chunk(catch_up_chunk c);
    void on_poll_timeout(boost::beast::error_code ec);
    void finish_poll(poll_result r);
    // bucket=: the readings a poll found go through a bucket feed; it answers once a bucket
    // event comes (or at its timeout), otherwise it looks further after them.
    void feed_poll(poll_result r);
    void after_poll_feed();

    connection_stream stream_;
    bool first_request_ = true;  // still within the handshake deadline
    // do_read() as a loop rather than a recursion: answers sent at once start the next request
    // from the loop, so a buffer full of pipelined requests does not deepen the stack.
    bool in_read_loop_ = false;
    bool read_again_ = false;
    // A lazily re-armed timer: moving the deadline later (every request) only stores it; the
    // timer, when it fires early, waits again for the rest. clock::time_point::max(): none (a
    // request being answered, a parked long poll).
    boost::asio::steady_timer deadline_timer_;
    clock::time_point deadline_ = clock::time_point::max();
    clock::time_point armed_at_ = clock::time_point::max();
    io_shard& shard_;
    boost::beast::flat_buffer buffer_;
    std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
    session_context& ctx_;
    connection_gauge::slot slot_;
    std::string peer_;  // the client's address
    std::string date_line_;  // the Date field of a prepared answer being written (send)

    // The long poll in progress, if any: its catch-up query (with the waiter it parks), and the
    // reset to report when retention deleted readings after its cursor.
    boost::asio::steady_timer poll_timer_;
    std::shared_ptr<poll_waiter> waiter_;
    request_info poll_ri_;
    catch_up_query poll_query_;
    std::optional<reset_notice> poll_reset_;
    std::optional<bucket_spec> poll_bucket_;
    std::shared_ptr<bucket_feed> poll_feed_;
    std::vector<bucket_event> poll_events_;
    std::int64_t poll_cursor_ = 0;
    std::chrono::steady_clock::time_point poll_deadline_{};
};

}  // namespace telemetry::bridge::http
