// Conditional GET/HEAD per RFC 9110 section 13: entity tags, HTTP dates, and the 304 decision.
#pragma once

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

namespace telemetry::bridge::http {

// The inputs a request brings. A header that is absent is nullopt (present-but-empty is "").
struct conditions {
    std::optional<std::string_view> if_none_match;
    std::optional<std::string_view> if_modified_since;
};

// True when a GET/HEAD with these conditions must be answered 304 Not Modified, for a
// representation whose current strong tag is `etag` (with its quotes, e.g. "\"a1b2\"") and which
// last changed at `last_modified` (seconds since the epoch).
// RFC 9110 13.2.2: If-None-Match, when present, decides alone, by weak comparison, over a list of
// tags or `*`; a malformed If-None-Match is treated as not matching. If-Modified-Since is used only
// without If-None-Match, and ignored when it is not a valid HTTP-date.
bool is_not_modified(const conditions& c, std::string_view etag, std::time_t last_modified);

// Weak comparison (RFC 9110 8.8.3.2): opaque tags equal, ignoring W/ prefixes.
bool weak_match(std::string_view a, std::string_view b) noexcept;

// IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
std::string format_http_date(std::time_t t);
// Accepts IMF-fixdate, and the obsolete RFC 850 and asctime forms (RFC 9110 5.6.7).
std::optional<std::time_t> parse_http_date(std::string_view text) noexcept;

// The complete HTTP/1.1 304 response (status line and header, keep-alive) for a representation
// with these validators: what a revalidation of an unchanged /latest is answered with.
std::string http11_not_modified(std::string_view etag, std::time_t last_modified);

// A strong entity tag (quoted) computed from the bytes of a representation (FNV-1a 64, hex).
std::string strong_etag(std::string_view representation);

}  // namespace telemetry::bridge::http
