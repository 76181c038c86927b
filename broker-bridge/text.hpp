// Small text-parsing helpers shared by the payload and HTTP-date parsers.
#pragma once

#include <cstddef>
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

}  // namespace telemetry::bridge
