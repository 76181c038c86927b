// The bounds on one history or aggregate request, shared by the HTTP API and the gRPC API so
// that both refuse the same requests (docs/api.md 3.5, 3.6, 12).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>

namespace telemetry::bridge {

inline constexpr std::size_t max_history_limit = 10'000;  // readings per page
inline constexpr std::size_t max_buckets = 100'000;       // buckets per aggregate

inline constexpr std::string_view too_many_buckets =
    "bucket is too small for this range (at most 100000 buckets; give a larger bucket or a shorter from/to range)";

// How many buckets of `width` ms (aligned to multiples of it) the range [from, to) touches: the
// most an aggregate over it can answer. Exact for any int64 bounds (no overflow); 0 when empty.
inline std::uint64_t bucket_count(std::int64_t from, std::int64_t to, std::int64_t width) noexcept {
    if (to <= from || width <= 0) return 0;
    const auto floor_div = [](std::int64_t a, std::int64_t b) {
        const std::int64_t q = a / b;
        return (a % b != 0 && a < 0) ? q - 1 : q;
    };
    const std::int64_t first = floor_div(from, width);
    const std::int64_t last = floor_div(to - 1, width);
    // last >= first, both int64: their difference fits in uint64 (two's complement arithmetic).
    return static_cast<std::uint64_t>(last) - static_cast<std::uint64_t>(first) + 1;
}

// bucket_count of an aggregate with a bound left out: it starts at the series' first reading and
// ends just after its last (`span`: the smallest and greatest ts stored).
inline std::uint64_t bucket_count_within(std::pair<std::int64_t, std::int64_t> span, std::optional<std::int64_t> from,
                                         std::optional<std::int64_t> to, std::int64_t width) noexcept {
    const std::int64_t end = span.second == INT64_MAX ? INT64_MAX : span.second + 1;
    return bucket_count(from.value_or(span.first), to.value_or(end), width);
}

}  // namespace telemetry::bridge
