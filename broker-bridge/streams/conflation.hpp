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

}  // namespace telemetry::bridge::http
