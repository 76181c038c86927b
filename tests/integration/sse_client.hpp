// Test support: a Server-Sent Events reader that behaves like a browser's EventSource (it keeps
// the last event id and can reconnect with Last-Event-ID).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace telemetry::testing {

struct sse_event {
    std::string id;     // empty when the event had no id field
    std::string event;  // "message" when absent
    std::string data;
    std::string retry;  // a retry field seen in this block
};

class sse_client {
public:
    // Connects and reads the response header; `last_event_id` is sent as Last-Event-ID if set.
    // `receive_buffer` > 0 shrinks the socket's receive buffer (to play a slow client).
    sse_client(std::uint16_t port, const std::string& target,
               const std::optional<std::string>& last_event_id = std::nullopt, int receive_buffer = 0);
    ~sse_client();
    sse_client(const sse_client&) = delete;
    sse_client& operator=(const sse_client&) = delete;

    int status() const { return status_; }
    const std::string& header_block() const { return header_; }
    // The next event (comments skipped; a block with only retry is returned as an event with
    // event == "retry"); nullopt on timeout or when the server closed the stream.
    std::optional<sse_event> next(std::chrono::milliseconds timeout = std::chrono::seconds(10));
    bool closed() const { return closed_; }
    const std::string& last_event_id() const { return last_id_; }

private:
    bool fill(std::chrono::steady_clock::time_point deadline);

    int fd_ = -1;
    int status_ = 0;
    bool closed_ = false;
    std::string header_;
    std::string buf_;
    std::string last_id_;
};

}  // namespace telemetry::testing
