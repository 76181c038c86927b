// Turns the bytes of a text/event-stream body into events, as a browser's EventSource does.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace telemetry::cli {

struct sse_event {
    std::optional<std::string> id;  // only when the block had an id field
    std::string event = "message";  // the type; "message" when absent
    std::string data;               // data lines joined with '\n'
};

// Pure and incremental: bytes may be split anywhere, also between "\r" and "\n". Not thread-safe.
class sse_reader {
public:
    // Parses `bytes` and returns the events completed by them, in order.
    std::vector<sse_event> feed(std::string_view bytes);
    // The newest `retry:` hint seen, if any.
    std::optional<std::chrono::milliseconds> retry() const { return retry_; }
    // A line longer than this ends the stream as malformed rather than growing without bound.
    static constexpr std::size_t max_line = 1 << 20;
    bool overflowed() const { return overflowed_; }

private:
    void on_line(std::string_view line, std::vector<sse_event>& out);

    std::string line_;
    bool skip_lf_ = false;  // the previous chunk ended in '\r'; a leading '\n' belongs to it
    bool overflowed_ = false;
    sse_event pending_;
    bool has_data_ = false;
    std::optional<std::chrono::milliseconds> retry_;
};

}  // namespace telemetry::cli
