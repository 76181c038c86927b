// Small text-parsing helpers shared by the payload and HTTP-date parsers, the HTTP parameters
// and bridge-cli (header-only: the client links nothing of the bridge).
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace telemetry::bridge {

// Fixed-width decimal field (dates and times): false unless all `width` chars at `pos` are digits.
inline bool read_digits(std::string_view s, std::size_t pos, std::size_t width, int& out) noexcept {
    if (pos + width > s.size()) return false;
    int v = 0;
    for (std::size_t i = pos; i < pos + width; ++i) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    out = v;
    return true;
}

// A duration as the API writes it ("500ms", "10s", "1m", "1h", "1d") -> milliseconds; nullopt
// unless a positive whole number (at most 12 digits) and one of those units.
inline std::optional<std::int64_t> parse_duration_ms(std::string_view s) noexcept {
    std::size_t digits = 0;
    while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') ++digits;
    if (digits == 0 || digits > 12) return std::nullopt;
    std::int64_t n = 0;
    std::from_chars(s.data(), s.data() + digits, n);
    const std::string_view unit = s.substr(digits);
    std::int64_t scale = 0;
    if (unit == "ms") scale = 1;
    else if (unit == "s") scale = 1000;
    else if (unit == "m") scale = 60'000;
    else if (unit == "h") scale = 3'600'000;
    else if (unit == "d") scale = 86'400'000;
    if (scale == 0 || n <= 0) return std::nullopt;
    return n * scale;
}

}  // namespace telemetry::bridge
