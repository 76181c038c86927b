// Helpers shared by the fuzz targets: split the input into lines, and a check that crashes
// (so that libFuzzer keeps the input) when a property of the code under test does not hold.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

namespace telemetry::fuzz {

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
    return {reinterpret_cast<const char*>(data), size};
}

// Splits at '\n' into at most `most` parts; the last part keeps the rest (newlines included).
inline std::vector<std::string_view> split_lines(std::string_view s, std::size_t most) {
    std::vector<std::string_view> out;
    while (out.size() + 1 < most) {
        const auto nl = s.find('\n');
        if (nl == std::string_view::npos) break;
        out.push_back(s.substr(0, nl));
        s.remove_prefix(nl + 1);
    }
    out.push_back(s);
    return out;
}

[[noreturn]] inline void property_failed(const char* what, const char* file, int line) {
    std::fprintf(stderr, "%s:%d: property failed: %s\n", file, line, what);
    std::abort();
}

}  // namespace telemetry::fuzz

#define FUZZ_CHECK(cond) \
    do { \
        if (!(cond)) ::telemetry::fuzz::property_failed(#cond, __FILE__, __LINE__); \
    } while (0)
