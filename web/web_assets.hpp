// The dashboard's files, embedded into the binary at build time (web/embed.cmake writes the data).
#pragma once

#include <ctime>
#include <span>
#include <string_view>

namespace telemetry::web {

// One served file. Static storage: every view stays valid for the life of the process.
struct asset {
    std::string_view name;          // as served under /assets/ ("index.html" is also served at /)
    std::string_view content_type;
    std::string_view bytes;
    std::time_t modified;           // mtime of the file when it was embedded
};

// Every embedded file, in manifest order.
std::span<const asset> assets() noexcept;

}  // namespace telemetry::web
