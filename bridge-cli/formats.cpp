// How bridge-cli writes things down: times, durations, numbers, tables, CSV fields and JSON.
#include "formats.hpp"

#include <boost/json/serialize.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <ctime>
#include <cstdio>
#include <stdexcept>

namespace telemetry::cli {

std::string format_time(std::int64_t epoch_ms) {
    // Floor division, so that times before 1970 still get a millisecond part in 0..999.
    std::int64_t secs = epoch_ms / 1000, ms = epoch_ms % 1000;
    if (ms < 0) {
        ms += 1000;
        --secs;
    }
    const auto t = static_cast<std::time_t>(secs);
    std::tm tm{};
    if (!::gmtime_r(&t, &tm)) return std::to_string(epoch_ms);
    char buf[40];
    const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    std::string s(buf, n);
    char frac[8];
    std::snprintf(frac, sizeof frac, ".%03dZ", static_cast<int>(ms));
    return s + frac;
}


std::string format_duration(std::int64_t ms) {
    if (ms < 0) ms = 0;
    if (ms < 1000) return std::to_string(ms) + "ms";
    if (ms < 60'000) {
        // One decimal, dropped when it is zero: "1s", "1.5s".
        const auto tenths = (ms + 50) / 100;
        std::string s = std::to_string(tenths / 10);
        if (tenths % 10) {
            s += '.';
            s += static_cast<char>('0' + tenths % 10);
        }
        s += 's';
        return s;
    }
    if (ms < 3'600'000) return std::to_string(ms / 60'000) + "m";
    if (ms < 86'400'000) return std::to_string(ms / 3'600'000) + "h";
    return std::to_string(ms / 86'400'000) + "d";
}

std::string format_number(double v) {
    char buf[32];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    return ec == std::errc{} ? std::string(buf, end) : std::string("nan");
}

std::string format_rounded(double v) {
    const double r = std::round(v * 1000.0) / 1000.0;
    return format_number(r == 0.0 ? 0.0 : r);  // never "-0"
}

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

double as_double(const boost::json::value& v) {
    if (v.is_double()) return v.get_double();
    if (v.is_int64()) return static_cast<double>(v.get_int64());
    if (v.is_uint64()) return static_cast<double>(v.get_uint64());
    throw std::invalid_argument("not a number");
}

void append_json(std::string& out, const boost::json::value& v) {
    switch (v.kind()) {
    case boost::json::kind::object: {
        out.push_back('{');
        bool first = true;
        for (const auto& m : v.get_object()) {
            if (!first) out.push_back(',');
            first = false;
            out += boost::json::serialize(boost::json::string_view(m.key()));
            out.push_back(':');
            append_json(out, m.value());
        }
        out.push_back('}');
        return;
    }
    case boost::json::kind::array: {
        out.push_back('[');
        bool first = true;
        for (const auto& e : v.get_array()) {
            if (!first) out.push_back(',');
            first = false;
            append_json(out, e);
        }
        out.push_back(']');
        return;
    }
    case boost::json::kind::double_:
        out += std::isfinite(v.get_double()) ? format_number(v.get_double()) : "null";
        return;
    default:
        out += boost::json::serialize(v);
    }
}

void append_csv_field(std::string& out, std::string_view s) {
    if (s.find_first_of(",\"\r\n") == std::string_view::npos) {
        out += s;
        return;
    }
    out.push_back('"');
    for (const char c : s) {
        if (c == '"') out.push_back('"');
        out.push_back(c);
    }
    out.push_back('"');
}

table::table(std::vector<std::string> header, std::vector<bool> right_aligned)
    : right_(std::move(right_aligned)) {
    right_.resize(header.size(), false);
    rows_.push_back(std::move(header));
}

void table::add(std::vector<std::string> row) {
    row.resize(rows_.front().size());
    rows_.push_back(std::move(row));
}

void table::print(std::ostream& out) const {
    std::vector<std::size_t> width(rows_.front().size(), 0);
    for (const auto& r : rows_)
        for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
    for (const auto& r : rows_) {
        std::string line;
        for (std::size_t i = 0; i < r.size(); ++i) {
            const std::string pad(width[i] - r[i].size(), ' ');
            if (i) line += "  ";
            if (right_[i]) line += pad + r[i];
            else if (i + 1 < r.size()) line += r[i] + pad;
            else line += r[i];  // no trailing blanks on the last column
        }
        out << line << '\n';
    }
}

}  // namespace telemetry::cli
