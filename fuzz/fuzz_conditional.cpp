// Conditional requests: If-None-Match (entity-tag lists), If-Modified-Since (the three HTTP-date
// forms), and the 304 decision. Properties: a date that parses formats back to a date that
// parses to the same time; a field listing the current tag (or *) always matches, a garbled one
// never does; If-None-Match decides alone when present.
//
// Input: line 1 If-None-Match, line 2 If-Modified-Since, line 3 the representation's tag.
#include "core/conditional.hpp"
#include "fuzz_common.hpp"

#include <string>

using namespace telemetry;
using namespace telemetry::bridge::http;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto parts = fuzz::split_lines(fuzz::as_text(data, size), 3);
    const std::string_view inm = parts[0];
    const std::string_view ims = parts.size() > 1 ? parts[1] : parts[0];
    const std::string etag = parts.size() > 2 ? std::string(parts[2]) : strong_etag(inm);

    // HTTP dates.
    constexpr std::time_t last_representable = 253'402'300'799;  // 9999-12-31T23:59:59Z
    for (std::string_view text : {inm, ims}) {
        const auto t = parse_http_date(text);
        if (!t) continue;
        // Years 0000..9999 (asctime and IMF have four digits; RFC 850 two).
        FUZZ_CHECK(*t >= -62'167'219'200 && *t <= last_representable + 1);
        if (*t >= 0 && *t <= last_representable) {
            const std::string formatted = format_http_date(*t);
            FUZZ_CHECK(formatted.size() == 29);
            FUZZ_CHECK(parse_http_date(formatted) == t);
        }
    }

    // The 304 decision.
    const std::time_t modified = 1'732'269'600;  // 2024-11-22T10:00:00Z
    const bool inm_only = is_not_modified({inm, std::nullopt}, etag, modified);
    FUZZ_CHECK(is_not_modified({inm, ims}, etag, modified) == inm_only);  // If-None-Match decides alone
    const auto since = parse_http_date(ims);
    FUZZ_CHECK(is_not_modified({std::nullopt, ims}, etag, modified) == (since && modified <= *since));
    FUZZ_CHECK(!is_not_modified({std::nullopt, std::nullopt}, etag, modified));

    // Our own tags: the current one listed anywhere in a well-formed list matches.
    const std::string ours = strong_etag(ims);
    FUZZ_CHECK(ours.size() == 18 && ours.front() == '"' && ours.back() == '"');
    FUZZ_CHECK(is_not_modified({ours, std::nullopt}, ours, modified));
    FUZZ_CHECK(is_not_modified({"W/" + ours, std::nullopt}, ours, modified));
    FUZZ_CHECK(is_not_modified({"\"x\", " + ours, std::nullopt}, ours, modified));
    FUZZ_CHECK(is_not_modified({"*", std::nullopt}, ours, modified));
    // A list whose other element is garbled is malformed as a whole: never a 304.
    if (inm.find_first_of("\",") == std::string_view::npos && inm.find_first_not_of(" \t") != std::string_view::npos &&
        inm.find_first_not_of(" \t*") != std::string_view::npos)
        FUZZ_CHECK(!is_not_modified({ours + ", " + std::string(inm), std::nullopt}, ours, modified));
    FUZZ_CHECK(weak_match(ours, "W/" + ours) && weak_match("W/" + ours, ours));

    const std::string raw = http11_not_modified(ours, modified);
    FUZZ_CHECK(raw.size() > 4 && raw.substr(raw.size() - 4) == "\r\n\r\n");
    return 0;
}
