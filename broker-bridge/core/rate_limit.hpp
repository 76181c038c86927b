// Request rate limits (docs/api.md section 8.3): a token bucket per key (a client address, a
// token), answered with 429 and Retry-After when empty. Pure: the clock is passed in.
#pragma once

#include <chrono>
#include <cstddef>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace telemetry::bridge {

// Thread safety: take() may be called from any thread (one mutex). Memory is bounded: at most
// `max_keys` buckets; when full, buckets that have refilled (their client is idle) are dropped,
// and if none has, the oldest half of the map is (a flood of new keys cannot grow it).
class rate_limiter {
public:
    using clock = std::chrono::steady_clock;

    // `per_second` 0 turns the limit off. `burst` 0 means twice the rate (at least 1).
    rate_limiter(double per_second, double burst, std::size_t max_keys = 65'536);

    bool enabled() const noexcept { return rate_ > 0; }
    // Takes one request from `key`'s bucket: nullopt if allowed, else whole seconds until one is.
    std::optional<std::chrono::seconds> take(std::string_view key, clock::time_point now);

private:
    struct bucket {
        double tokens = 0;
        clock::time_point last{};
    };
    void make_room(clock::time_point now);  // lock held

    const double rate_;
    const double burst_;
    const std::size_t max_keys_;
    std::mutex mutex_;
    std::unordered_map<std::string, bucket> buckets_;
};

}  // namespace telemetry::bridge
