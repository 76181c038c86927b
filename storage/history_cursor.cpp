// The opaque `next` cursor of history pages: encoding, validation, start position.
#include "history_cursor.hpp"

#include <charconv>
#include <cstdio>
#include <stdexcept>

namespace telemetry::storage::detail {

namespace {

// Cursors: "<a|d>.<ts>.<id>.<check>", check = FNV-1a of sensor, metric, order, so a
// cursor handed to another series or order is rejected instead of silently mis-positioning.
std::uint32_t cursor_check(const history_query& q) {
    std::uint32_t h = 2166136261u;
    auto mix = [&h](std::string_view s) {
        for (unsigned char c : s) h = (h ^ c) * 16777619u;
        h = (h ^ 0xffu) * 16777619u;  // separator that no name byte sequence can fake
    };
    mix(q.sensor);
    mix(q.metric);
    mix(q.descending ? "d" : "a");
    return h;
}

}  // namespace

std::string encode_cursor(const history_query& q, std::int64_t ts, std::int64_t id) {
    char check[9];
    std::snprintf(check, sizeof check, "%08x", cursor_check(q));
    return std::string(q.descending ? "d" : "a") + "." + std::to_string(ts) + "." +
           std::to_string(id) + "." + check;
}

position decode_cursor(const history_query& q, std::string_view c) {
    const auto bad = [] { return std::invalid_argument("cursor is not valid for this query"); };
    const char* p = c.data();
    const char* end = c.data() + c.size();
    if (c.size() < 2 || *p != (q.descending ? 'd' : 'a') || p[1] != '.') throw bad();
    p += 2;
    position pos{};
    auto num = [&](std::int64_t& out) {
        auto [next, ec] = std::from_chars(p, end, out);
        if (ec != std::errc() || next == end || *next != '.') throw bad();
        p = next + 1;
    };
    num(pos.ts);
    num(pos.id);
    std::uint32_t check = 0;
    auto [next, ec] = std::from_chars(p, end, check, 16);
    if (ec != std::errc() || next != end || end - p != 8 || check != cursor_check(q)) throw bad();
    return pos;
}

position start_position(const history_query& q) {
    if (q.cursor) return decode_cursor(q, *q.cursor);
    return q.descending ? position{INT64_MAX, INT64_MAX} : position{INT64_MIN, INT64_MIN};
}

}  // namespace telemetry::storage::detail
