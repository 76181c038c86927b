// Conditional GET/HEAD (RFC 9110 section 13): entity-tag lists, HTTP dates and the 304 decision.
#include "core/conditional.hpp"

#include "core/text.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <ctime>

namespace telemetry::bridge::http {

namespace {

constexpr std::array<std::string_view, 7> day_names{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr std::array<std::string_view, 7> long_day_names{"Sunday",   "Monday", "Tuesday", "Wednesday",
                                                         "Thursday", "Friday", "Saturday"};
constexpr std::array<std::string_view, 12> month_names{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }

std::string_view trim_ows(std::string_view s) noexcept {
    while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
    return s;
}

// etagc = "!" / %x23-7E / obs-text: anything visible but the double quote.
bool is_etagc(char c) noexcept {
    const auto u = static_cast<unsigned char>(c);
    return u == 0x21 || (u >= 0x23 && u <= 0x7e) || u >= 0x80;
}

// Reads one entity-tag at the front of `s` and removes it; nullopt if there is none.
std::optional<std::string_view> take_entity_tag(std::string_view& s) noexcept {
    std::size_t pos = 0;
    if (s.size() >= 2 && s[0] == 'W' && s[1] == '/') pos = 2;
    if (pos >= s.size() || s[pos] != '"') return std::nullopt;
    ++pos;
    while (pos < s.size() && is_etagc(s[pos])) ++pos;
    if (pos >= s.size() || s[pos] != '"') return std::nullopt;
    ++pos;
    const std::string_view tag = s.substr(0, pos);
    s.remove_prefix(pos);
    return tag;
}

// If-None-Match = "*" / #entity-tag. Returns nullopt when the field is malformed, so that a
// garbled header can never produce a 304 for content the client does not have.
std::optional<bool> none_match_hits(std::string_view field, std::string_view etag) noexcept {
    field = trim_ows(field);
    if (field == "*") return true;  // we only answer for representations that exist
    bool hit = false;
    // #rule (RFC 9110 5.6.1): elements separated by commas with OWS; empty elements are allowed.
    while (!field.empty()) {
        field = trim_ows(field);
        if (field.empty()) break;
        if (field.front() == ',') {
            field.remove_prefix(1);
            continue;
        }
        const auto tag = take_entity_tag(field);
        if (!tag) return std::nullopt;
        if (weak_match(*tag, etag)) hit = true;
        field = trim_ows(field);
        if (!field.empty() && field.front() != ',') return std::nullopt;
    }
    return hit;
}

int month_index(std::string_view s) noexcept {
    for (std::size_t i = 0; i < month_names.size(); ++i)
        if (month_names[i] == s) return static_cast<int>(i) + 1;
    return 0;
}

template <std::size_t N>
bool is_one_of(const std::array<std::string_view, N>& names, std::string_view s) noexcept {
    for (const auto& n : names)
        if (n == s) return true;
    return false;
}

// "HH:MM:SS" at `pos`.
bool read_time_of_day(std::string_view s, std::size_t pos, int& h, int& m, int& sec) noexcept {
    return read_digits(s, pos, 2, h) && pos + 2 < s.size() && s[pos + 2] == ':' && read_digits(s, pos + 3, 2, m) &&
           pos + 5 < s.size() && s[pos + 5] == ':' && read_digits(s, pos + 6, 2, sec);
}

std::optional<std::time_t> to_time(int year, int month, int day, int h, int m, int sec) noexcept {
    if (month < 1 || h > 23 || m > 59 || sec > 60) return std::nullopt;
    const std::chrono::year_month_day ymd{std::chrono::year{year}, std::chrono::month{static_cast<unsigned>(month)},
                                          std::chrono::day{static_cast<unsigned>(day)}};
    if (!ymd.ok()) return std::nullopt;
    const auto days = std::chrono::sys_days{ymd}.time_since_epoch().count();
    return static_cast<std::time_t>(days) * 86400 + h * 3600 + m * 60 + sec;
}

// "Sun, 06 Nov 1994 08:49:37 GMT"
std::optional<std::time_t> parse_imf_fixdate(std::string_view s) noexcept {
    if (s.size() != 29 || !is_one_of(day_names, s.substr(0, 3)) || s.substr(3, 2) != ", " || s[7] != ' ' ||
        s[11] != ' ' || s[16] != ' ' || s.substr(25) != " GMT")
        return std::nullopt;
    int day = 0, year = 0, h = 0, m = 0, sec = 0;
    if (!read_digits(s, 5, 2, day) || !read_digits(s, 12, 4, year) || !read_time_of_day(s, 17, h, m, sec))
        return std::nullopt;
    return to_time(year, month_index(s.substr(8, 3)), day, h, m, sec);
}

// "Sunday, 06-Nov-94 08:49:37 GMT". Two-digit years pivot at 70 (00-69 -> 20xx), a fixed stand-in
// for RFC 9110's "more than 50 years in the future" rule that keeps this function pure.
std::optional<std::time_t> parse_rfc850(std::string_view s) noexcept {
    const auto comma = s.find(", ");
    if (comma == std::string_view::npos || !is_one_of(long_day_names, s.substr(0, comma))) return std::nullopt;
    s.remove_prefix(comma + 2);
    if (s.size() != 22 || s[2] != '-' || s[6] != '-' || s[9] != ' ' || s.substr(18) != " GMT") return std::nullopt;
    int day = 0, yy = 0, h = 0, m = 0, sec = 0;
    if (!read_digits(s, 0, 2, day) || !read_digits(s, 7, 2, yy) || !read_time_of_day(s, 10, h, m, sec))
        return std::nullopt;
    return to_time(yy < 70 ? 2000 + yy : 1900 + yy, month_index(s.substr(3, 3)), day, h, m, sec);
}

// "Sun Nov  6 08:49:37 1994"
std::optional<std::time_t> parse_asctime(std::string_view s) noexcept {
    if (s.size() != 24 || !is_one_of(day_names, s.substr(0, 3)) || s[3] != ' ' || s[7] != ' ' || s[10] != ' ' ||
        s[19] != ' ')
        return std::nullopt;
    int day = 0, year = 0, h = 0, m = 0, sec = 0;
    if (s[8] == ' ') {
        if (!read_digits(s, 9, 1, day)) return std::nullopt;
    } else if (!read_digits(s, 8, 2, day)) {
        return std::nullopt;
    }
    if (!read_time_of_day(s, 11, h, m, sec) || !read_digits(s, 20, 4, year)) return std::nullopt;
    return to_time(year, month_index(s.substr(4, 3)), day, h, m, sec);
}

void append_2(std::string& out, unsigned v) {
    out += static_cast<char>('0' + v / 10 % 10);
    out += static_cast<char>('0' + v % 10);
}

}  // namespace

bool weak_match(std::string_view a, std::string_view b) noexcept {
    if (a.substr(0, 2) == "W/") a.remove_prefix(2);
    if (b.substr(0, 2) == "W/") b.remove_prefix(2);
    return a == b;
}

bool is_not_modified(const conditions& c, std::string_view etag, std::time_t last_modified) {
    if (c.if_none_match) return none_match_hits(*c.if_none_match, etag).value_or(false);
    if (c.if_modified_since) {
        const auto since = parse_http_date(*c.if_modified_since);
        return since && last_modified <= *since;
    }
    return false;
}

std::string format_http_date(std::time_t t) {
    // Civil-calendar arithmetic instead of gmtime: thread-safe, locale-free, any time_t.
    using namespace std::chrono;
    // An HTTP-date has a four-digit year: clamp to 1970..9999 rather than print garbage.
    constexpr std::time_t last_representable = 253'402'300'799;
    const sys_seconds tp{seconds{t < 0 ? 0 : (t > last_representable ? last_representable : t)}};
    const sys_days day_point = floor<days>(tp);
    const year_month_day ymd{day_point};
    const hh_mm_ss hms{tp - day_point};
    const weekday wd{day_point};

    std::string out;
    out.reserve(29);
    out += day_names[wd.c_encoding()];
    out += ", ";
    append_2(out, static_cast<unsigned>(ymd.day()));
    out += ' ';
    out += month_names[static_cast<unsigned>(ymd.month()) - 1];
    out += ' ';
    const int year = static_cast<int>(ymd.year());
    append_2(out, static_cast<unsigned>(year / 100));
    append_2(out, static_cast<unsigned>(year % 100));
    out += ' ';
    append_2(out, static_cast<unsigned>(hms.hours().count()));
    out += ':';
    append_2(out, static_cast<unsigned>(hms.minutes().count()));
    out += ':';
    append_2(out, static_cast<unsigned>(hms.seconds().count()));
    out += " GMT";
    return out;
}

std::string_view http_date_now() {
    thread_local std::time_t formatted_for = -1;
    thread_local std::array<char, 29> text{};
#ifdef CLOCK_REALTIME_COARSE
    // The clock tick's time (a few ms old at most) costs a quarter of a precise read, and a Date
    // has whole seconds anyway: this runs once per answer, prepared 304s included.
    timespec ts{};
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    const std::time_t now = ts.tv_sec;
#else
    const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
#endif
    if (now != formatted_for) {
        const std::string s = format_http_date(now);
        std::copy_n(s.data(), text.size(), text.begin());
        formatted_for = now;
    }
    return {text.data(), text.size()};
}

dated_header with_date(std::string_view prepared, std::string& date_line) {
    date_line.assign("Date: ");
    date_line.append(http_date_now());
    date_line.append("\r\n\r\n");
    // The prepared header ends with the blank line: the Date goes in before it.
    return {prepared.substr(0, prepared.size() - 2), date_line};
}

std::optional<std::time_t> parse_http_date(std::string_view text) noexcept {
    text = trim_ows(text);
    if (text.size() > 3 && text[3] == ',') return parse_imf_fixdate(text);
    if (text.size() > 3 && text[3] == ' ') return parse_asctime(text);
    return parse_rfc850(text);
}

std::string strong_etag(std::string_view representation) {
    std::uint64_t h = 14695981039346656037ULL;  // FNV-1a 64 offset basis
    for (const char c : representation) {
        h ^= static_cast<unsigned char>(c);
        h *= 1099511628211ULL;  // FNV-1a 64 prime
    }
    static constexpr char hex[] = "0123456789abcdef";
    std::string out(18, '"');
    for (int i = 16; i >= 1; --i) {
        out[static_cast<std::size_t>(i)] = hex[h & 0xf];
        h >>= 4;
    }
    return out;
}

std::string http11_not_modified(std::string_view etag, std::time_t last_modified) {
    // The same fields as the general 304 path (responder::not_modified), in one string.
    std::string r = "HTTP/1.1 304 Not Modified\r\nServer: telemetry-broker-bridge\r\nETag: ";
    r.append(etag);
    r += "\r\nLast-Modified: ";
    r += format_http_date(last_modified);
    r += "\r\nCache-Control: no-cache\r\nVary: Accept, Accept-Encoding\r\n"
         "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\r\n";
    return r;
}

}  // namespace telemetry::bridge::http
