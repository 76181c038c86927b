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
// The current time as an IMF-fixdate, for the Date header every answer carries (RFC 9110 6.6.1).
// Formatted at most once a second per thread; the view stays valid on the calling thread until
// its next call (copy it before handing it to another thread).
std::string_view http_date_now();
// Accepts IMF-fixdate, and the obsolete RFC 850 and asctime forms (RFC 9110 5.6.7).
std::optional<std::time_t> parse_http_date(std::string_view text) noexcept;

// The complete HTTP/1.1 304 response (status line and header, keep-alive) for a representation
// with these validators: what a revalidation of an unchanged /latest is answered with. It has no
// Date: the writer sends the bytes up to the final CRLF, then a current Date field and the CRLF
// (see with_date()).
std::string http11_not_modified(std::string_view etag, std::time_t last_modified);

// A prepared response header (ending in the blank line) as two buffers that, written in order,
// are the same header with `Date: <now>` added last: `date_line` receives that field and the blank
// line and must outlive the write.
struct dated_header {
    std::string_view head;       // the prepared bytes without their final CRLF
    std::string_view date_line;  // "Date: ...\r\n\r\n", in `date_line`'s storage
};
dated_header with_date(std::string_view prepared, std::string& date_line);

// A strong entity tag (quoted) computed from the bytes of a representation (FNV-1a 64, hex).
std::string strong_etag(std::string_view representation);

}  // namespace telemetry::bridge::http
