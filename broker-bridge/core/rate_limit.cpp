// Token buckets per key, bounded in memory.
#include "core/rate_limit.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace telemetry::bridge {

rate_limiter::rate_limiter(double per_second, double burst, std::size_t max_keys)
    : rate_(std::max(per_second, 0.0)), burst_(burst > 0 ? burst : std::max(1.0, 2 * rate_)),
      max_keys_(std::max<std::size_t>(max_keys, 2)) {}

std::optional<std::chrono::seconds> rate_limiter::take(std::string_view key, clock::time_point now) {
    if (!enabled()) return std::nullopt;
    std::lock_guard lock(mutex_);
    auto it = buckets_.find(std::string(key));
    if (it == buckets_.end()) {
        if (buckets_.size() >= max_keys_) make_room(now);
        it = buckets_.emplace(std::string(key), bucket{burst_, now}).first;
    }
    bucket& b = it->second;
    const double elapsed = std::chrono::duration<double>(now - b.last).count();
    b.tokens = std::min(burst_, b.tokens + std::max(0.0, elapsed) * rate_);
    b.last = now;
    if (b.tokens >= 1) {
        b.tokens -= 1;
        return std::nullopt;
    }
    return std::chrono::seconds(static_cast<long>(std::ceil((1 - b.tokens) / rate_)));
}

void rate_limiter::make_room(clock::time_point now) {
    std::erase_if(buckets_, [&](const auto& kv) {
        const double elapsed = std::chrono::duration<double>(now - kv.second.last).count();
        return kv.second.tokens + elapsed * rate_ >= burst_;  // refilled: nothing to remember
    });
    if (buckets_.size() < max_keys_) return;
    // Every client is busy: forget the half seen longest ago (they start again with a full bucket).
    std::vector<clock::time_point> seen;
    seen.reserve(buckets_.size());
    for (const auto& kv : buckets_) seen.push_back(kv.second.last);
    auto mid = seen.begin() + static_cast<std::ptrdiff_t>(seen.size() / 2);
    std::nth_element(seen.begin(), mid, seen.end());
    const auto cutoff = *mid;
    std::erase_if(buckets_, [&](const auto& kv) { return kv.second.last <= cutoff; });
}

}  // namespace telemetry::bridge
