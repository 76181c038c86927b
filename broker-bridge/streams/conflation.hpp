// The conflate policy of a stream (SSE policy=conflate, a WebSocket subscription's "policy"):
// while the client is behind, only the newest reading of each series is kept, with the number of
// older ones it replaced.
#pragma once

#include "core/wire_format.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace telemetry::bridge::http {

class conflation {
public:
    struct held {
        live_ptr newest;
        std::uint64_t skipped = 0;  // older readings of the series it replaced
    };

    // Keeps `l` in place of any reading of its series held before; true if it replaced one.
    bool hold(const live_ptr& l);
    bool empty() const noexcept { return by_series_.empty(); }
    // Everything held, oldest first (the order the client must see), leaving nothing held.
    std::vector<held> take();
    void clear() noexcept { by_series_.clear(); }

private:
    std::unordered_map<std::string, held> by_series_;  // by topic: one series each
};

// How a stream (SSE, gRPC) takes one commit's live readings, the same for every stream: a
// reading at or below `last_id` was already replayed by the catch-up and is skipped; while
// `hold` is set (a conflating stream whose write is in flight) each is held there instead,
// advancing `last_id`; otherwise each is queued with `queue(live_ptr, skipped)`, which advances `last_id`
// and returns false when the stream overflowed (then the rest are dropped with the stream).
struct live_counts {
    std::size_t sent = 0;
    std::size_t conflated = 0;
};
template <typename Queue>
live_counts take_live(const std::vector<live_ptr>& batch, std::int64_t& last_id, conflation* hold, Queue&& queue) {
    live_counts n;
    for (const auto& l : batch) {
        if (l->r.id <= last_id) continue;
        if (hold) {
            n.conflated += hold->hold(l) ? 1 : 0;
            last_id = l->r.id;
            continue;
        }
        if (!queue(l, std::uint64_t{0})) break;
        ++n.sent;
    }
    return n;
}

// Queues replayed readings, or what a conflating stream held (oldest first, each with how many
// it replaced), until `queue` overflows; returns how many were queued.
template <typename Queue>
std::size_t queue_each(const std::vector<live_ptr>& readings, Queue&& queue) {
    std::size_t sent = 0;
    for (const auto& l : readings) {
        if (!queue(l, std::uint64_t{0})) break;
        ++sent;
    }
    return sent;
}
template <typename Queue>
std::size_t queue_held(conflation& behind, Queue&& queue) {
    std::size_t sent = 0;
    for (const auto& h : behind.take()) {
        if (!queue(h.newest, h.skipped)) break;
        ++sent;
    }
    return sent;
}

}  // namespace telemetry::bridge::http
