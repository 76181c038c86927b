// stream-bench, Server-Sent Events transport: the request head for GET /api/v1/stream. The body
// is read by the shared parser (telemetry::sse, bridge-cli/sse_parser.hpp); what each event means
// is decided by the connection in stream_bench.cpp.
#pragma once

#include <string>

namespace stream_bench::sse {

// `topic` as a query value: `+`, `#` and `/` percent-encoded (the rest of a topic filter the bench
// uses is unreserved). Shared with the long-poll request (bench/stream_longpoll.hpp).
inline void append_query_topic(std::string& out, const std::string& topic) {
    for (const char ch : topic) {
        if (ch == '+') out += "%2B";
        else if (ch == '#') out += "%23";
        else if (ch == '/') out += "%2F";
        else out += ch;
    }
}

// "GET /api/v1/stream[?topic=...] HTTP/1.1" and its headers, each ending in CRLF, without the
// blank line that ends the head (the caller may add Last-Event-ID first). No topic or "#": none.
// `query`: further parameters as they go into the URL (e.g. "bucket=1m"), or empty. `path`:
// another server's EventSource location (stream-bench --path), e.g. Nchan's.
inline std::string request_head(const std::string& host, const std::string& topic, const std::string& query = {},
                                const std::string& path = "/api/v1/stream") {
    std::string head = "GET " + path;
    if (!topic.empty() && topic != "#") {
        head += "?topic=";
        append_query_topic(head, topic);
    }
    if (!query.empty()) head += (head.find('?') == std::string::npos ? "?" : "&") + query;
    head += " HTTP/1.1\r\nHost: " + host + "\r\nAccept: text/event-stream\r\n";
    return head;
}

}  // namespace stream_bench::sse
