// gzip content coding for large response bodies (zlib).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace telemetry::bridge::http {

// The body in gzip format (RFC 1952), or nullopt if zlib failed.
std::optional<std::string> gzip(std::string_view body);

// True if an Accept-Encoding field value accepts gzip (by name or `*`, with q > 0).
bool accepts_gzip(std::string_view accept_encoding) noexcept;

}  // namespace telemetry::bridge::http
