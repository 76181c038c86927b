// Every wire form of a reading, a status change and a reset (a hot path: a reading is serialised
// once, when it is committed, and its bytes are shared by every client).
#include "core/wire_format.hpp"

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

// A text cell. A spreadsheet would run a cell that starts with = + - @ (or a tab or CR before
// them) as a formula: such a cell gets a leading apostrophe, which shows as text (OWASP
// CSV injection). Numeric columns never go through here.
void append_csv_field(std::string& out, std::string_view s) {
    const bool formula = !s.empty() && std::string_view("=+-@\t\r").find(s.front()) != std::string_view::npos;
    if (!formula && s.find_first_of(",\"\r\n") == std::string_view::npos) {
        out += s;
        return;
    }
    out.push_back('"');
    if (formula) out.push_back('\'');
    for (char c : s) {
        if (c == '"') out.push_back('"');
        out.push_back(c);
    }
    out.push_back('"');
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

void assign_topic(std::string& out, std::string_view prefix, std::string_view sensor, std::string_view metric) {
    out.clear();
    out.reserve(prefix.size() + sensor.size() + metric.size() + 2);
    out.append(prefix).append("/").append(sensor).append("/").append(metric);
}

live_ptr make_live(std::string_view topic_prefix, reading r) {
    auto l = std::make_shared<live_reading>();
    assign_topic(l->topic, topic_prefix, r.sensor, r.metric);
    l->json = reading_json(r);
    l->ws_json.reserve(l->json.size() + 14);
    l->ws_json.append("{\"op\":\"reading\",").append(l->json, 1, std::string::npos);
    l->r = std::move(r);
    return l;
}

void append_with_skipped(std::string& out, std::string_view json, std::uint64_t skipped) {
    if (skipped == 0) {
        out += json;
        return;
    }
    out += json.substr(0, json.size() - 1);  // without the closing brace
    out += ",\"skipped\":";
    append_int(out, static_cast<std::int64_t>(skipped));
    out += '}';
}

void append_csv_row(std::string& out, const reading& r) {
    append_int(out, r.id);
    out += ',';
    append_csv_field(out, r.sensor);  // names are [A-Za-z0-9_.-], but may start with '-'
    out += ',';
    append_csv_field(out, r.metric);
    out += ',';
    append_int(out, r.ts);
    out += ',';
    append_double(out, r.value);
    out += ',';
    append_csv_field(out, r.unit);
    out += ',';
    if (r.seq) append_int(out, *r.seq);
    out += "\r\n";
}

namespace {
// "reason":..,"after":N,"oldest_id":M[,"epoch":..] without braces: shared by every transport.
void append_reset_fields(std::string& out, const reset_notice& r) {
    out += r.epoch.empty() ? "\"reason\":\"retention\",\"after\":" : "\"reason\":\"epoch\",\"after\":";
    append_int(out, r.after);
    out += ",\"oldest_id\":";
    append_int(out, r.oldest_id);
    if (!r.epoch.empty()) {
        out += ",\"epoch\":";
        append_json_string(out, r.epoch);
    }
}
}  // namespace

void append_reset_json(std::string& out, const reset_notice& r) {
    out += '{';
    append_reset_fields(out, r);
    out += '}';
}

void append_sse_reading(std::string& out, const live_reading& l, std::string_view at_epoch, std::uint64_t skipped) {
    out += "id: ";
    append_int(out, l.r.id);
    out += at_epoch;
    out += "\nevent: reading\ndata: ";
    append_with_skipped(out, l.json, skipped);
    out += "\n\n";
}

std::size_t sse_reading_size(const live_reading& l, std::string_view at_epoch) {
    char digits[24];
    const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, l.r.id);
    static constexpr std::string_view fixed = "id: \nevent: reading\ndata: \n\n";
    return fixed.size() + static_cast<std::size_t>(end - digits) + at_epoch.size() + l.json.size();
}

void append_status_json(std::string& out, const status_event& s) {
    out += "{\"sensor\":";
    append_json_string(out, s.sensor);
    out += s.online ? ",\"online\":true}" : ",\"online\":false}";
}

void append_sse_status(std::string& out, const status_event& s) {
    out += "event: status\ndata: ";
    append_status_json(out, s);
    out += "\n\n";
}

void append_sse_reset(std::string& out, const reset_notice& r) {
    out += "event: reset\ndata: ";
    append_reset_json(out, r);
    out += "\n\n";
}

void append_sse_retry(std::string& out, std::int64_t retry_ms) {
    out += "retry: ";
    append_int(out, retry_ms);
    out += "\n\n";
}

void append_sse_error(std::string& out, std::string_view code, std::string_view message) {
    out += "event: error\ndata: {\"code\":";
    append_json_string(out, code);
    out += ",\"message\":";
    append_json_string(out, message);
    out += "}\n\n";
}

std::string ws_status_message(const status_event& s) {
    std::string m = "{\"op\":\"status\",\"sensor\":";
    append_json_string(m, s.sensor);
    m += s.online ? ",\"online\":true}" : ",\"online\":false}";
    return m;
}

std::string ws_reset_message(std::string_view topic, const reset_notice& r) {
    std::string m = "{\"op\":\"reset\",\"topic\":";
    append_json_string(m, topic);
    m += ',';
    append_reset_fields(m, r);
    m += '}';
    return m;
}

}  // namespace telemetry::bridge
