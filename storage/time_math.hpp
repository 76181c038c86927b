// Time arithmetic shared by the storage engines: ts may be any int64, so every step saturates
// instead of overflowing. Private to the storage library.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>

namespace telemetry::storage::detail {

// floor(a / b) for b > 0, also for negative a.
constexpr std::int64_t floor_div(std::int64_t a, std::int64_t b) noexcept {
    std::int64_t q = a / b;
    if (a % b != 0 && a < 0) --q;
    return q;
}
// ceil(a / b) for b > 0.
constexpr std::int64_t ceil_div(std::int64_t a, std::int64_t b) noexcept {
    std::int64_t q = a / b;
    if (a % b != 0 && a > 0) ++q;
    return q;
}
constexpr std::int64_t sat_mul(std::int64_t a, std::int64_t b) noexcept {
    std::int64_t r = 0;
    if (__builtin_mul_overflow(a, b, &r)) return (a < 0) != (b < 0) ? INT64_MIN : INT64_MAX;
    return r;
}
constexpr std::int64_t sat_add(std::int64_t a, std::int64_t b) noexcept {
    std::int64_t r = 0;
    if (__builtin_add_overflow(a, b, &r)) return b < 0 ? INT64_MIN : INT64_MAX;
    return r;
}

inline constexpr std::int64_t minute_ms = 60'000;
// Rollup rows are keyed by the minute number floor(ts / 60000), not its start in ms, because the
// start of the minute holding a ts near INT64_MIN is not representable.
constexpr std::int64_t minute_of(std::int64_t ts) noexcept { return floor_div(ts, minute_ms); }
constexpr std::int64_t minute_first_ts(std::int64_t m) noexcept { return sat_mul(m, minute_ms); }
constexpr std::int64_t minute_last_ts(std::int64_t m) noexcept {
    // Computed from the side that cannot saturate wrongly: the last minute's end may pass
    // INT64_MAX (clamp), the first minute's start may pass INT64_MIN (its end never does).
    return m >= 0 ? sat_add(sat_mul(m, minute_ms), minute_ms - 1) : (m + 1) * minute_ms - 1;
}

// A query's [from, to) as inclusive [lo, hi]; `to` = INT64_MAX means unbounded (then INT64_MAX
// itself is included). nullopt when the range is empty.
constexpr std::optional<std::pair<std::int64_t, std::int64_t>> inclusive_range(std::int64_t from,
                                                                               std::int64_t to) noexcept {
    if (to == INT64_MIN) return std::nullopt;
    const std::int64_t hi = to == INT64_MAX ? INT64_MAX : to - 1;
    if (from > hi) return std::nullopt;
    return std::pair{from, hi};
}

}  // namespace telemetry::storage::detail
