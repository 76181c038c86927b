// Unit tests for conditional requests: If-None-Match, If-Modified-Since, HTTP dates, strong ETags.
#include "core/conditional.hpp"

#include <doctest/doctest.h>

#include <ctime>
#include <string>

using namespace telemetry::bridge::http;

namespace {

const std::string etag = "\"a1b2c3\"";
constexpr std::time_t modified = 784'111'777;  // Sun, 06 Nov 1994 08:49:37 GMT

bool inm(std::string_view header) {
    conditions c;
    c.if_none_match = header;
    return is_not_modified(c, etag, modified);
}

bool ims(std::string_view header) {
    conditions c;
    c.if_modified_since = header;
    return is_not_modified(c, etag, modified);
}

}  // namespace

TEST_CASE("conditional - no conditions means a full response") {
    CHECK_FALSE(is_not_modified(conditions{}, etag, modified));
}

TEST_CASE("conditional - If-None-Match single tag") {
    CHECK(inm("\"a1b2c3\""));
    CHECK(inm("  \"a1b2c3\"\t"));
    CHECK_FALSE(inm("\"a1b2c4\""));
    CHECK_FALSE(inm("\"A1B2C3\""));
    CHECK_FALSE(inm("a1b2c3"));  // unquoted: malformed
}

TEST_CASE("conditional - If-None-Match lists") {
    CHECK(inm("\"x\", \"a1b2c3\""));
    CHECK(inm("\"x\",\"a1b2c3\",\"y\""));
    CHECK(inm("\"x\" ,\t\"a1b2c3\""));
    CHECK(inm(", \"x\", , \"a1b2c3\","));  // empty list elements are allowed
    CHECK_FALSE(inm("\"x\", \"y\""));
}

TEST_CASE("conditional - If-None-Match star") {
    CHECK(inm("*"));
    CHECK(inm(" * "));
    CHECK_FALSE(inm("\"x\", *"));  // * is not a list member
    CHECK_FALSE(inm("**"));
}

TEST_CASE("conditional - If-None-Match weak tags compare weakly") {
    CHECK(inm("W/\"a1b2c3\""));
    CHECK(inm("\"x\", W/\"a1b2c3\""));
    CHECK_FALSE(inm("w/\"a1b2c3\""));  // the W is case-sensitive
    CHECK(weak_match("W/\"a\"", "\"a\""));
    CHECK(weak_match("W/\"a\"", "W/\"a\""));
    CHECK(weak_match("\"a\"", "\"a\""));
    CHECK_FALSE(weak_match("\"a\"", "\"b\""));
    CHECK_FALSE(weak_match("W/\"a\"", "W/\"b\""));
}

TEST_CASE("conditional - malformed or empty If-None-Match never matches") {
    CHECK_FALSE(inm(""));
    CHECK_FALSE(inm("   "));
    CHECK_FALSE(inm("\"a1b2c3"));
    CHECK_FALSE(inm("\"a1b2c3\" \"x\""));          // missing comma
    CHECK_FALSE(inm("\"a1b2c3\", garbage"));       // a matching tag does not rescue a bad list
    CHECK_FALSE(inm("\"a1b2c3\"x"));
    CHECK_FALSE(inm("W/ \"a1b2c3\""));
    CHECK_FALSE(inm("\"a\"b\""));
    CHECK_FALSE(inm(std::string("\"a1b2c3\x01\"")));
}

TEST_CASE("conditional - If-None-Match wins over If-Modified-Since") {
    conditions c;
    c.if_none_match = "\"other\"";
    c.if_modified_since = "Sun, 06 Nov 1994 08:49:37 GMT";  // would be a 304 on its own
    CHECK_FALSE(is_not_modified(c, etag, modified));
    c.if_none_match = "";  // present but empty still decides
    CHECK_FALSE(is_not_modified(c, etag, modified));
    c.if_none_match = "\"a1b2c3\"";
    c.if_modified_since = "Sat, 01 Jan 1994 00:00:00 GMT";  // would be a 200 on its own
    CHECK(is_not_modified(c, etag, modified));
}

TEST_CASE("conditional - If-Modified-Since before equal and after") {
    CHECK_FALSE(ims("Sun, 06 Nov 1994 08:49:36 GMT"));
    CHECK(ims("Sun, 06 Nov 1994 08:49:37 GMT"));
    CHECK(ims("Sun, 06 Nov 1994 08:49:38 GMT"));
    CHECK(ims("Sunday, 06-Nov-94 08:49:37 GMT"));
    CHECK(ims("Sun Nov  6 08:49:37 1994"));
}

TEST_CASE("conditional - invalid If-Modified-Since is ignored") {
    CHECK_FALSE(ims(""));
    CHECK_FALSE(ims("yesterday"));
    CHECK_FALSE(ims("Sun, 06 Nov 2094 08:49:37 UTC"));
    CHECK_FALSE(ims("784111777"));
}

TEST_CASE("conditional - HTTP date formatting") {
    CHECK(format_http_date(784'111'777) == "Sun, 06 Nov 1994 08:49:37 GMT");
    CHECK(format_http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT");
    CHECK(format_http_date(951'782'400) == "Tue, 29 Feb 2000 00:00:00 GMT");
    CHECK(format_http_date(1'732'269'600) == "Fri, 22 Nov 2024 10:00:00 GMT");
}

TEST_CASE("conditional - HTTP date round trip") {
    for (std::time_t t : {std::time_t{0}, std::time_t{784'111'777}, std::time_t{951'782'400},
                          std::time_t{1'732'269'599}, std::time_t{4'102'444'800}, std::time_t{253'402'300'799}}) {
        CAPTURE(t);
        CHECK(parse_http_date(format_http_date(t)) == t);
    }
}

TEST_CASE("conditional - HTTP date parsing of the three formats") {
    CHECK(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784'111'777);
    CHECK(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == 784'111'777);
    CHECK(parse_http_date("Sun Nov  6 08:49:37 1994") == 784'111'777);
    CHECK(parse_http_date("Thu Feb 29 00:00:00 2024") == 1'709'164'800);
    CHECK(parse_http_date("Thursday, 29-Feb-24 00:00:00 GMT") == 1'709'164'800);  // 00-69 -> 20xx
    CHECK(parse_http_date("Thursday, 01-Jan-70 00:00:00 GMT") == 0);
    CHECK(parse_http_date(" Sun, 06 Nov 1994 08:49:37 GMT ") == 784'111'777);
}

TEST_CASE("conditional - HTTP date parsing rejects malformed dates") {
    for (const char* s : {"", "Sun, 06 Nov 1994 08:49:37", "Sun, 06 Nov 1994 08:49:37 UTC",
                          "Sun, 6 Nov 1994 08:49:37 GMT", "Sun, 06 nov 1994 08:49:37 GMT",
                          "Xyz, 06 Nov 1994 08:49:37 GMT", "Sun, 31 Nov 1994 08:49:37 GMT",
                          "Sun, 29 Feb 1900 00:00:00 GMT", "Sun, 06 Nov 1994 24:00:00 GMT",
                          "Sun, 06 Nov 1994 08:60:00 GMT", "Sun, 06 Nov 94 08:49:37 GMT",
                          "Sunday, 06-Nov-1994 08:49:37 GMT", "Sun, 06-Nov-94 08:49:37 GMT",
                          "Sun Nov 6 08:49:37 1994", "Sun Nov  6 08:49:37 94", "Sun Nov 06 08:49:37 1994 GMT",
                          "2024-11-22T10:00:00Z"})
        CHECK_MESSAGE(!parse_http_date(s), s);
}

TEST_CASE("conditional - strong_etag is stable quoted hex and distinct") {
    const auto a = strong_etag("hello");
    CHECK(a == strong_etag("hello"));
    CHECK(a.size() == 18);
    CHECK(a.front() == '"');
    CHECK(a.back() == '"');
    CHECK(a.find_first_not_of("0123456789abcdef", 1) == 17);
    CHECK(a != strong_etag("hellp"));
    CHECK(strong_etag("") == "\"cbf29ce484222325\"");  // the FNV-1a 64 offset basis
    CHECK(strong_etag("a") == "\"af63dc4c8601ec8c\"");  // published FNV-1a test vector
    CHECK(strong_etag("ab") != strong_etag("ba"));

    conditions c;
    c.if_none_match = a;
    CHECK(is_not_modified(c, a, 0));
    CHECK_FALSE(is_not_modified(c, strong_etag("other"), 0));
}

TEST_CASE("conditional - the Date of now is a current IMF-fixdate") {
    const std::time_t before = std::time(nullptr) - 1;  // the Date may come from the coarser clock
    const std::string now(http_date_now());
    const std::time_t after = std::time(nullptr) + 1;
    REQUIRE(now.size() == 29);
    const auto parsed = parse_http_date(now);
    REQUIRE(parsed);
    CHECK(*parsed >= before);
    CHECK(*parsed <= after);
    CHECK(format_http_date(*parsed) == now);
}

TEST_CASE("conditional - a prepared 304 gets its Date spliced in before the blank line") {
    const std::string prepared = http11_not_modified(etag, modified);
    REQUIRE(prepared.ends_with("\r\n\r\n"));
    CHECK(prepared.find("Date:") == std::string::npos);
    std::string line;
    const auto h = with_date(prepared, line);
    const std::string whole = std::string(h.head) + std::string(h.date_line);
    CHECK(whole.size() == prepared.size() + 37);  // "Date: " + 29 + CRLF
    CHECK(whole.rfind(prepared.substr(0, prepared.size() - 2), 0) == 0);
    CHECK(whole.ends_with("\r\nDate: " + std::string(http_date_now()) + "\r\n\r\n"));
    CHECK(whole.find("\r\n\r\n") == whole.size() - 4);  // one header, one blank line
}
