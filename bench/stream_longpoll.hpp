// stream-bench, long-polling transport: the request head for GET /api/v1/updates (docs/api.md
// 3.7), the answer's Content-Length, and the answer's JSON (Boost.JSON) as a cursor and readings.
// The connection in stream_bench.cpp sends the polls, one at a time on one keep-alive connection,
// and decides what each reading means.
#pragma once

#include "stream_sse.hpp"

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <cctype>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace stream_bench::longpoll {

// The wait of every poll but a stream's first (the bridge's default, docs/api.md 3.7).
constexpr int wait_s = 30;

// "GET /api/v1/updates?[topic=...&][after=<cursor>&]timeout=N HTTP/1.1" and its headers, each
// ending in CRLF, without the blank line that ends the head (the caller adds Authorization
// first). No topic or "#": none. `after` empty: none (the bridge then starts at its newest id).
// No Accept-Encoding, so the answer is never gzipped.
inline std::string request_head(const std::string& host, const std::string& topic, std::string_view after,
                                int timeout_s) {
    std::string head = "GET /api/v1/updates?";
    if (!topic.empty() && topic != "#") {
        head += "topic=";
        sse::append_query_topic(head, topic);
        head += '&';
    }
    if (!after.empty()) {
        head += "after=";
        head += after;  // N@E: digits, '@' and hex digits, all allowed in a query
        head += '&';
    }
    head += "timeout=" + std::to_string(timeout_s);
    head += " HTTP/1.1\r\nHost: " + host + "\r\nAccept: application/json\r\n";
    return head;
}

// The Content-Length of a response head (status line and fields, without the blank line); none
// when it has none or not a number. The bridge sends every answer with one (never chunked).
inline std::optional<std::size_t> content_length(std::string_view head) {
    constexpr std::string_view name = "content-length:";
    std::size_t at = head.find("\r\n");
    while (at != std::string_view::npos) {
        const std::size_t start = at + 2;
        at = head.find("\r\n", start);
        const std::string_view line = head.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start);
        if (line.size() <= name.size()) continue;
        bool match = true;
        for (std::size_t i = 0; i < name.size() && match; ++i)
            match = std::tolower(static_cast<unsigned char>(line[i])) == name[i];
        if (!match) continue;
        std::string_view v = line.substr(name.size());
        while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
        while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
        std::size_t n = 0;
        const auto r = std::from_chars(v.data(), v.data() + v.size(), n);
        if (r.ec != std::errc{} || r.ptr != v.data() + v.size()) return std::nullopt;
        return n;
    }
    return std::nullopt;
}

struct reading {
    std::int64_t id = 0;
    std::optional<std::int64_t> seq;  // null: not published by the bench
    std::int64_t ts = 0;              // the bridge's reading time, ms
};

// One answer: {"cursor":"N@E"[,"reset":{...}],"readings":[Reading, ...]}. Reused from poll to
// poll so that its vector keeps its capacity.
struct answer {
    std::string cursor;
    bool reset = false;
    std::vector<reading> readings;
};

// Parses an answer's body into `out`; nullptr when it is one, else why not.
inline const char* parse_answer(std::string_view body, answer& out) {
    out.cursor.clear();
    out.reset = false;
    out.readings.clear();
    // A few KiB on the stack hold a typical answer's tree; a larger one continues on the heap.
    unsigned char scratch[8192];
    boost::json::monotonic_resource mr(scratch, sizeof scratch);
    boost::system::error_code ec;
    const boost::json::value v = boost::json::parse(body, ec, &mr);
    if (ec) return "the answer is not JSON";
    const auto* o = v.if_object();
    const auto* cursor = o ? o->if_contains("cursor") : nullptr;
    const auto* readings = o ? o->if_contains("readings") : nullptr;
    // A number: a bridge from before epochs (docs/api.md 2.1), kept so that one bench compares both.
    if (!cursor || !(cursor->is_string() || cursor->is_int64()) || !readings || !readings->is_array())
        return "the answer has no `cursor` or no `readings` array";
    if (cursor->is_int64()) {
        out.cursor = std::to_string(cursor->get_int64());
    } else {
        const auto& c = cursor->get_string();
        out.cursor.assign(c.data(), c.size());
    }
    out.reset = o->contains("reset");
    for (const auto& item : readings->get_array()) {
        const auto* r = item.if_object();
        const auto* id = r ? r->if_contains("id") : nullptr;
        const auto* ts = r ? r->if_contains("ts") : nullptr;
        const auto* seq = r ? r->if_contains("seq") : nullptr;
        if (!id || !id->is_int64() || !ts || !ts->is_int64() || !seq || !(seq->is_int64() || seq->is_null()))
            return "a reading without an integer `id` and `ts` and an integer or null `seq`";
        reading x;
        x.id = id->get_int64();
        x.ts = ts->get_int64();
        if (seq->is_int64()) x.seq = seq->get_int64();
        out.readings.push_back(x);
    }
    return nullptr;
}

}  // namespace stream_bench::longpoll
