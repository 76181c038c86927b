// The Reading object of API.md section 3, serialised once per committed reading (a hot path).
#include "reading_json.hpp"

#include <charconv>
#include <cmath>

namespace telemetry::bridge {
namespace {

template <typename T>
void append_number(std::string& out, T v) {
    char buf[32];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, ec == std::errc{} ? end : buf);
}

}  // namespace

void append_int(std::string& out, std::int64_t v) { append_number(out, v); }
void append_double(std::string& out, double v) { append_number(out, v); }

void append_json_string(std::string& out, std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    out.push_back('"');
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (c < 0x20) {
                out += "\\u00";
                out.push_back(hex[c >> 4]);
                out.push_back(hex[c & 0xF]);
            } else {
                out.push_back(ch);
            }
        }
    }
    out.push_back('"');
}

void append_reading_json(std::string& out, const reading& r) {
    out += "{\"id\":";
    append_number(out, r.id);
    out += ",\"sensor\":";
    append_json_string(out, r.sensor);
    out += ",\"metric\":";
    append_json_string(out, r.metric);
    out += ",\"ts\":";
    append_number(out, r.ts);
    out += ",\"value\":";
    // Values are finite by construction (payload parsing rejects the rest); guard anyway so the
    // output is always valid JSON.
    if (std::isfinite(r.value)) append_number(out, r.value); else out += "null";
    out += ",\"unit\":";
    if (r.unit.empty()) out += "null"; else append_json_string(out, r.unit);
    out += ",\"seq\":";
    if (r.seq) append_number(out, *r.seq); else out += "null";
    out.push_back('}');
}

std::string reading_json(const reading& r) {
    std::string out;
    out.reserve(128);
    append_reading_json(out, r);
    return out;
}

}  // namespace telemetry::bridge
