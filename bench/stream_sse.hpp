// stream-bench, Server-Sent Events transport: the request head for GET /api/v1/stream and a
// splitter for the text/event-stream body. What each line means (retry:, id:, data:, comments)
// is decided by the connection in stream_bench.cpp.
#pragma once

#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>

namespace stream_bench::sse {

// "GET /api/v1/stream[?topic=...] HTTP/1.1" and its headers, each ending in CRLF, without the
// blank line that ends the head (the caller may add Last-Event-ID first). No topic or "#": none.
inline std::string request_head(const std::string& host, const std::string& topic) {
    std::string head = "GET /api/v1/stream";
    if (!topic.empty() && topic != "#") {
        head += "?topic=";
        for (const char ch : topic) {
            if (ch == '+') head += "%2B";
            else if (ch == '#') head += "%23";
            else if (ch == '/') head += "%2F";
            else head += ch;
        }
    }
    head += " HTTP/1.1\r\nHost: " + host + "\r\nAccept: text/event-stream\r\n";
    return head;
}

// Splits a byte stream into lines (without the "\n" and a trailing "\r"), keeping an unfinished
// last line for the next call. Lines that arrive whole within one call are not copied.
class line_splitter {
public:
    // on_line(std::string_view) returns false to stop; feed then returns false too (the rest of
    // the bytes are dropped: the caller is abandoning the connection).
    template <typename OnLine>
    bool feed(const char* p, std::size_t n, OnLine&& on_line) {
        const char* end = p + n;
        while (p < end) {
            const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
            if (!nl) {
                partial_.append(p, end);
                return true;
            }
            bool go = true;
            if (partial_.empty()) {
                go = on_line(trim_cr(std::string_view(p, static_cast<std::size_t>(nl - p))));
            } else {
                partial_.append(p, nl);
                go = on_line(trim_cr(partial_));
                partial_.clear();
            }
            if (!go) return false;
            p = nl + 1;
        }
        return true;
    }

    void reset() { partial_.clear(); }

private:
    static std::string_view trim_cr(std::string_view l) {
        if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
        return l;
    }

    std::string partial_;
};

}  // namespace stream_bench::sse
