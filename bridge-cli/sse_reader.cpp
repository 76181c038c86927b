// Turns the bytes of a text/event-stream body into events, following the WHATWG HTML
// "event stream interpretation" rules (the ones EventSource implements).
#include "sse_reader.hpp"

#include <charconv>

namespace telemetry::cli {

std::vector<sse_event> sse_reader::feed(std::string_view bytes) {
    std::vector<sse_event> out;
    for (const char c : bytes) {
        if (skip_lf_) {
            skip_lf_ = false;
            if (c == '\n') continue;
        }
        if (c == '\r' || c == '\n') {
            skip_lf_ = c == '\r';
            on_line(line_, out);
            line_.clear();
            continue;
        }
        if (line_.size() >= max_line) {
            overflowed_ = true;
            continue;
        }
        line_.push_back(c);
    }
    return out;
}

void sse_reader::on_line(std::string_view line, std::vector<sse_event>& out) {
    if (line.empty()) {
        // A blank line dispatches the block; one without data (e.g. only retry:) is no event.
        if (has_data_) out.push_back(std::move(pending_));
        pending_ = sse_event{};
        has_data_ = false;
        return;
    }
    if (line.front() == ':') return;  // a comment: the server's heartbeat
    std::string_view field = line, value;
    if (const auto colon = line.find(':'); colon != std::string_view::npos) {
        field = line.substr(0, colon);
        value = line.substr(colon + 1);
        if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    }
    if (field == "data") {
        if (has_data_) pending_.data.push_back('\n');
        pending_.data.append(value);
        has_data_ = true;
    } else if (field == "event") {
        pending_.event = value.empty() ? "message" : std::string(value);
    } else if (field == "id") {
        if (value.find('\0') == std::string_view::npos) pending_.id = std::string(value);
    } else if (field == "retry") {
        long long ms = 0;
        auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), ms);
        if (ec == std::errc{} && end == value.data() + value.size() && ms >= 0)
            retry_ = std::chrono::milliseconds(ms);
    }
    // Other fields are ignored, as the standard says.
}

}  // namespace telemetry::cli
