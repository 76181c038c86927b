// A small blocking HTTP/1.1 client for the bridge: one request per connection, deadlines on every
// step, and a streaming GET for Server-Sent Events that SIGINT/SIGTERM can interrupt.
// The only file that includes Beast or Asio (they compile slowly); see asio_impl.cpp.
#pragma once

#include "server_url.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace telemetry::cli {

using header_list = std::vector<std::pair<std::string, std::string>>;

struct http_response {
    unsigned status = 0;
    header_list headers;
    std::string body;
    // The value of the first header of that name (case-insensitive), or "".
    std::string header(std::string_view name) const;
};

// Why a stream ended.
enum class stream_end {
    closed,       // the server closed it, or the connection broke
    idle,         // nothing arrived (not even a heartbeat) within the idle timeout
    stopped,      // the caller's on_data returned false
    interrupted,  // SIGINT or SIGTERM
};

// Owns one io_context; not thread-safe. Network failures before an answer arrives throw
// cli_error(network) naming the server and the reason.
class http_client {
public:
    http_client(server_url url, std::chrono::milliseconds timeout, std::string token);
    ~http_client();
    http_client(const http_client&) = delete;
    http_client& operator=(const http_client&) = delete;

    // GET `target`; the whole answer, whatever its status.
    http_response get(const std::string& target, const header_list& extra = {});

    // GET `target` and hand each piece of a 200 answer's body to on_data as it arrives, until the
    // server closes, nothing arrives for `idle`, on_data returns false, or a signal comes.
    // `head` receives the status and headers (and, for any status but 200, the whole body).
    stream_end stream(const std::string& target, const header_list& extra, std::chrono::milliseconds idle,
                      http_response& head, const std::function<bool(std::string_view)>& on_data);

    // From now on SIGINT and SIGTERM end stream() and pause() with `interrupted`.
    void interrupt_on_signals();
    bool interrupted() const;
    // Waits `d` unless interrupted first; false if interrupted.
    bool pause(std::chrono::milliseconds d);

    const server_url& url() const;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace telemetry::cli
