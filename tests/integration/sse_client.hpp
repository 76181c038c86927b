// Test support: a Server-Sent Events client that behaves like a browser's EventSource (it keeps
// the last event id and can reconnect with Last-Event-ID). The parsing is telemetry::sse's.
#pragma once

#include "sse_parser.hpp"

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>

namespace telemetry::testing {

struct sse_event {
    std::string id;     // the last event ID as of this event (EventSource's lastEventId)
    std::string event;  // "message" when absent; "retry" for a retry hint, which is no event
    std::string data;
    std::optional<std::chrono::milliseconds> retry;  // set on a "retry" hint only
};

class sse_client : private sse::handler {
public:
    // Connects and reads the response header; `last_event_id` is sent as Last-Event-ID if set.
    // `receive_buffer` > 0 shrinks the socket's receive buffer (to play a slow client).
    sse_client(std::uint16_t port, const std::string& target,
               const std::optional<std::string>& last_event_id = std::nullopt, int receive_buffer = 0);
    ~sse_client() override;
    sse_client(const sse_client&) = delete;
    sse_client& operator=(const sse_client&) = delete;

    int status() const { return status_; }
    const std::string& header_block() const { return header_; }
    // The next event or retry hint (comments skipped); nullopt on timeout or when the server
    // closed the stream. Throws if the stream breaks the parser's limits.
    std::optional<sse_event> next(std::chrono::milliseconds timeout = std::chrono::seconds(10));
    bool closed() const { return closed_; }
    // As of the last event next() returned, not of what has been parsed ahead of it: a test that
    // resumes from here must not skip events it never took.
    const std::string& last_event_id() const { return last_id_; }

private:
    bool on_event(const sse::event& ev) override;
    bool on_retry(std::chrono::milliseconds ms) override;
    // Reads what arrives before `deadline`: into the header, or through the parser once past it.
    bool fill(std::chrono::steady_clock::time_point deadline);
    void parse(std::string_view bytes);

    int fd_ = -1;
    int status_ = 0;
    bool closed_ = false;
    bool in_body_ = false;
    std::string header_;
    std::string head_buf_;
    sse::parser parser_;
    std::deque<sse_event> parsed_;  // not yet returned by next()
    std::string last_id_;
};

}  // namespace telemetry::testing
