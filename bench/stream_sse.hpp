// stream-bench, Server-Sent Events transport: the request head for GET /api/v1/stream. The body
// is read by the shared parser (telemetry::sse, bridge-cli/sse_parser.hpp); what each event means
// is decided by the connection in stream_bench.cpp.
#pragma once

#include <string>

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

}  // namespace stream_bench::sse
