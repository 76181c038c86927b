// The layer under a WebSocket stream that lets many messages share one network write.
//
// Beast writes each message, and each control frame, with a write of its own: at thousands of
// streams and hundreds of readings a second the system calls are the cost. Under this layer the
// session appends whole frames it built itself (append_text_frame) and sends whatever it has in
// one write; what Beast writes (handshake, pings, pongs, close, compressed messages) goes through
// the same buffer, in order, and its completion waits until those bytes are on the wire.
//
// One thread at a time (the connection's shard): no locking.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/write.hpp>
#include "net/connection_stream.hpp"

#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/teardown.hpp>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace telemetry::bridge::http {

class coalescing_stream {
public:
    using executor_type = connection_stream::executor_type;
    using next_layer_type = connection_stream;
    using write_handler = boost::asio::any_completion_handler<void(boost::system::error_code, std::size_t)>;

    explicit coalescing_stream(connection_stream&& s) : inner_(std::move(s)) {}

    executor_type get_executor() noexcept { return inner_.get_executor(); }
    next_layer_type& next_layer() noexcept { return inner_; }
    const next_layer_type& next_layer() const noexcept { return inner_; }

    template <class MutableBuffers, class Handler>
    auto async_read_some(const MutableBuffers& buffers, Handler&& handler) {
        return inner_.async_read_some(buffers, std::forward<Handler>(handler));
    }

    // Beast's writes: buffered behind anything appended before, completed once written.
    template <class ConstBuffers, class Handler>
    auto async_write_some(const ConstBuffers& buffers, Handler&& handler) {
        return boost::asio::async_initiate<Handler, void(boost::system::error_code, std::size_t)>(
            [this](auto h, const ConstBuffers& b) {
                const std::size_t n = boost::asio::buffer_size(b);
                pending_.resize(pending_.size() + n);
                boost::asio::buffer_copy(boost::asio::buffer(pending_.data() + pending_.size() - n, n), b);
                wait(write_handler(std::move(h)), n);
            },
            handler, buffers);
    }

    // The session's own frames: sent by the next flush.
    void append(std::string_view bytes) { pending_.append(bytes); }
    // Sends everything appended so far; `done` runs (never inline) once it is written.
    void flush(std::function<void(boost::system::error_code)> done);
    // Forgets frames appended but not yet being written (a slow client being closed).
    void drop_unsent() noexcept {
        if (waiting_.empty()) pending_.clear();
    }
    std::size_t unsent_bytes() const noexcept { return pending_.size(); }

private:
    struct waiter {
        write_handler beast;                               // or
        std::function<void(boost::system::error_code)> session;
        std::size_t bytes = 0;
    };
    void wait(waiter w);
    void wait(write_handler h, std::size_t n) { wait(waiter{std::move(h), {}, n}); }
    void start_write();
    void on_written(boost::system::error_code ec);
    static void complete(waiter& w, boost::system::error_code ec);

    connection_stream inner_;
    std::string pending_;             // appended, not yet being written
    std::string sending_;             // the write in flight
    std::vector<waiter> waiting_;     // for bytes in pending_
    std::vector<waiter> in_flight_;   // for bytes in sending_
    bool writing_ = false;
    boost::system::error_code failed_;  // once a write failed, every later one fails the same way
};

// One unfragmented, uncompressed server-to-client text frame (RFC 6455 5.2: no mask). Valid with
// or without permessage-deflate, which only marks compressed messages (RFC 7692 6).
inline void append_text_frame(std::string& out, std::string_view payload) {
    const std::size_t n = payload.size();
    out.push_back(static_cast<char>(0x81));  // FIN, opcode 1 (text)
    if (n < 126) {
        out.push_back(static_cast<char>(n));
    } else if (n < 65536) {
        out.push_back(static_cast<char>(126));
        out.push_back(static_cast<char>((n >> 8) & 0xff));
        out.push_back(static_cast<char>(n & 0xff));
    } else {
        out.push_back(static_cast<char>(127));
        for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((n >> shift) & 0xff));
    }
    out.append(payload);
}

// Closing a WebSocket tears down the TCP connection underneath (TLS, if any, ends with it).
void teardown(boost::beast::role_type role, coalescing_stream& s, boost::system::error_code& ec);

template <class TeardownHandler>
void async_teardown(boost::beast::role_type role, coalescing_stream& s, TeardownHandler&& handler) {
    using boost::beast::async_teardown;
    async_teardown(role, s.next_layer().socket(), std::forward<TeardownHandler>(handler));
}

}  // namespace telemetry::bridge::http
