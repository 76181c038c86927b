// MQTT topic + payload -> readings: the three payload formats of docs/api.md section 1.2, RFC 3339 times.
//
// Reject reasons chosen where the contract leaves room (tests pin each one):
//   - empty / whitespace-only payload, invalid JSON, JSON that is a string, bool or null, a SenML
//     element that is not an object, a non-string `n`/`bn`            -> bad_json
//   - object without `value`, `value: null`, SenML array with no record carrying `v`
//                                                                      -> missing_value
//   - `value`/`v`/`bv` that is a string, bool, object or array, a number that overflows to
//     infinity (1e999), and the textual forms nan/inf/infinity (with sign, any case)
//                                                                      -> not_finite
//   - a metric name that is not valid_name (a SenML `n`), or the reserved metric "status"
//     (presence goes through parse_status, never through here)        -> bad_topic
//   - more SenML records than max_senml_records                        -> oversize
//   - any invalid record rejects the whole message: one MQTT message is stored atomically or not.
//   - a time within 1970..9999 but outside the window around arrival (payload_limits)
//                                                                      -> ts_out_of_range
#include "core/payload.hpp"

#include "core/text.hpp"

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse_options.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_stack.hpp>

#include <charconv>
#include <chrono>
#include <cmath>
#include <exception>
#include <limits>

namespace telemetry::bridge {

namespace {

namespace json = boost::json;

// Accepted `ts` range, epoch ms: 1970-01-01T00:00:00Z up to 9999-12-31T23:59:59.999Z.
constexpr std::int64_t min_ts_ms = 0;
constexpr std::int64_t max_ts_ms = 253'402'300'799'999;
// RFC 8428 section 4.5.3: SenML times below 2^28 seconds are relative to now.
constexpr double senml_relative_limit_s = 268'435'456.0;
// Doubles are exact integers only up to 2^53; beyond that "integral" means nothing.
constexpr double max_exact_double = 9'007'199'254'740'992.0;
constexpr std::size_t max_unit_length = 32;
constexpr std::string_view reserved_status_metric = "status";

bool is_space(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
    return s;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i];
        char y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
        if (x != y) return false;
    }
    return true;
}

// "nan", "-inf", "Infinity"...: not JSON, but what printf("%f") and friends emit for a broken
// sensor, so they get the reason that tells the user what is wrong rather than "bad JSON".
bool is_textual_non_finite(std::string_view s) noexcept {
    if (!s.empty() && (s.front() == '+' || s.front() == '-')) s.remove_prefix(1);
    return iequals(s, "nan") || iequals(s, "inf") || iequals(s, "infinity");
}

// Builds the DOM as json::parse does, except for doubles. Boost.JSON 1.81 converts decimal text to
// double approximately (a few ulp off for large exponents or long mantissas: "3e91" became
// 3.0000000000000004e+91), so a stored value differed from what the sensor sent. Each double is
// read again from its text with std::from_chars, which rounds correctly; where that reports out
// of range (1e999, 1e-400) Boost's value stays, so overflow still becomes infinity (not_finite).
struct precise_number_handler {
    static constexpr std::size_t max_object_size = json::object::max_size();
    static constexpr std::size_t max_array_size = json::array::max_size();
    static constexpr std::size_t max_key_size = json::string::max_size();
    static constexpr std::size_t max_string_size = json::string::max_size();

    json::value_stack st;
    std::string number;  // the first parts of a number split across input buffers

    precise_number_handler(unsigned char* temp, std::size_t size) : st(json::storage_ptr(), temp, size) {}

    bool on_document_begin(boost::system::error_code&) { return true; }
    bool on_document_end(boost::system::error_code&) { return true; }
    bool on_object_begin(boost::system::error_code&) { return true; }
    bool on_object_end(std::size_t n, boost::system::error_code&) { st.push_object(n); return true; }
    bool on_array_begin(boost::system::error_code&) { return true; }
    bool on_array_end(std::size_t n, boost::system::error_code&) { st.push_array(n); return true; }
    bool on_key_part(json::string_view s, std::size_t, boost::system::error_code&) { st.push_chars(s); return true; }
    bool on_key(json::string_view s, std::size_t, boost::system::error_code&) { st.push_key(s); return true; }
    bool on_string_part(json::string_view s, std::size_t, boost::system::error_code&) { st.push_chars(s); return true; }
    bool on_string(json::string_view s, std::size_t, boost::system::error_code&) { st.push_string(s); return true; }
    bool on_number_part(json::string_view s, boost::system::error_code&) {
        number.append(s.data(), s.size());
        return true;
    }
    bool on_int64(std::int64_t i, json::string_view, boost::system::error_code&) {
        number.clear();
        st.push_int64(i);
        return true;
    }
    bool on_uint64(std::uint64_t u, json::string_view, boost::system::error_code&) {
        number.clear();
        st.push_uint64(u);
        return true;
    }
    bool on_double(double d, json::string_view s, boost::system::error_code&) {
        number.append(s.data(), s.size());
        double exact = 0;
        const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), exact);
        if (ec == std::errc{} && end == number.data() + number.size()) d = exact;
        number.clear();
        st.push_double(d);
        return true;
    }
    bool on_bool(bool b, boost::system::error_code&) { st.push_bool(b); return true; }
    bool on_null(boost::system::error_code&) { st.push_null(); return true; }
    bool on_comment_part(json::string_view, boost::system::error_code&) { return true; }
    bool on_comment(json::string_view, boost::system::error_code&) { return true; }
};

// json::parse(text, ec, sp, options) with correctly rounded doubles.
json::value parse_json(std::string_view text, boost::system::error_code& ec, json::storage_ptr sp,
                       const json::parse_options& options) {
    unsigned char temp[512];
    json::basic_parser<precise_number_handler> p(options, temp, sizeof temp);
    p.handler().st.reset(std::move(sp));
    const std::size_t n = p.write_some(false, text.data(), text.size(), ec);
    if (!ec && n < text.size()) ec = json::error::extra_data;
    if (ec) return nullptr;
    return p.handler().st.release();
}

parse_result reject(reject_reason r, std::string detail) {
    parse_result out;
    out.error = rejection{r, std::move(detail)};
    return out;
}

bool in_ts_range(std::int64_t ms) noexcept { return ms >= min_ts_ms && ms <= max_ts_ms; }

std::optional<double> as_double(const json::value& v) noexcept {
    switch (v.kind()) {
    case json::kind::double_: return v.get_double();
    case json::kind::int64: return static_cast<double>(v.get_int64());
    case json::kind::uint64: return static_cast<double>(v.get_uint64());
    default: return std::nullopt;
    }
}

// An integer JSON number, or a double holding an integral value (1.7e12 from JavaScript clients).
std::optional<std::int64_t> as_integer(const json::value& v) noexcept {
    switch (v.kind()) {
    case json::kind::int64: return v.get_int64();
    case json::kind::uint64:
        if (v.get_uint64() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
            return std::nullopt;
        return static_cast<std::int64_t>(v.get_uint64());
    case json::kind::double_: {
        const double d = v.get_double();
        if (!std::isfinite(d) || std::trunc(d) != d || std::fabs(d) > max_exact_double) return std::nullopt;
        return static_cast<std::int64_t>(d);
    }
    default: return std::nullopt;
    }
}

bool valid_unit(std::string_view u) noexcept {
    if (u.empty() || u.size() > max_unit_length) return false;
    for (char c : u)
        if (c < 0x20 || c > 0x7e) return false;
    return true;
}

// Shared by `value`, `v` and `bv`: absent/null is the caller's business, anything else must be a
// finite number.
std::optional<rejection> check_number(const json::value& v, std::string_view key, double& out) {
    const auto d = as_double(v);
    if (!d) return rejection{reject_reason::not_finite, std::string(key) + " is not a number"};
    if (!std::isfinite(*d)) return rejection{reject_reason::not_finite, std::string(key) + " is not finite"};
    out = *d;
    return std::nullopt;
}

std::optional<rejection> check_unit(const json::value& v, std::string_view key, std::string& out) {
    if (!v.is_string() || !valid_unit(v.get_string()))
        return rejection{reject_reason::bad_unit, std::string(key) + " must be 1-32 printable ASCII characters"};
    out.assign(v.get_string().data(), v.get_string().size());
    return std::nullopt;
}

parse_result parse_object(const topic_parts& topic, const json::object& obj, std::int64_t arrival_ms) {
    reading r;
    r.sensor = topic.sensor;
    r.metric = topic.metric;
    r.ts = arrival_ms;
    bool sensor_time = false;

    const json::value* value = obj.if_contains("value");
    if (value == nullptr || value->is_null()) return reject(reject_reason::missing_value, "no \"value\"");
    if (auto e = check_number(*value, "value", r.value)) return reject(e->reason, std::move(e->detail));

    if (const json::value* ts = obj.if_contains("ts")) {
        std::optional<std::int64_t> ms;
        if (ts->is_string()) ms = parse_time(std::string_view(ts->get_string()));
        else ms = as_integer(*ts);
        if (!ms) return reject(reject_reason::bad_timestamp, "ts must be epoch ms or an RFC 3339 string");
        if (!in_ts_range(*ms)) return reject(reject_reason::bad_timestamp, "ts out of range (1970..9999)");
        r.ts = *ms;
        sensor_time = true;
    }
    if (const json::value* seq = obj.if_contains("seq")) {
        const auto n = as_integer(*seq);
        if (!n || *n < 0) return reject(reject_reason::bad_seq, "seq must be a non-negative integer");
        r.seq = *n;
    }
    if (const json::value* unit = obj.if_contains("unit")) {
        if (auto e = check_unit(*unit, "unit", r.unit)) return reject(e->reason, std::move(e->detail));
    }
    parse_result out;
    out.readings.push_back(std::move(r));
    out.sensor_time = sensor_time;
    return out;
}

std::string record_prefix(std::size_t i) { return "record " + std::to_string(i) + ": "; }

// RFC 8428: base fields carry forward to later records; a record with `v` is a reading.
parse_result parse_senml(const topic_parts& topic, const json::array& records, std::int64_t arrival_ms,
                         const payload_limits& limits) {
    if (records.size() > limits.max_senml_records)
        return reject(reject_reason::oversize, "more than " + std::to_string(limits.max_senml_records) +
                                                   " SenML records");
    double base_time = 0.0;
    double base_value = 0.0;
    std::string base_unit;
    parse_result out;
    out.readings.reserve(records.size());
    out.sensor_time = true;  // until a record's time turns out relative to arrival

    for (std::size_t i = 0; i < records.size(); ++i) {
        const json::object* rec = records[i].if_object();
        if (rec == nullptr) return reject(reject_reason::bad_json, record_prefix(i) + "not an object");

        // Base fields first: they apply to the record that carries them.
        if (const json::value* bn = rec->if_contains("bn"); bn != nullptr && !bn->is_string())
            return reject(reject_reason::bad_json, record_prefix(i) + "bn must be a string");
        if (const json::value* bt = rec->if_contains("bt")) {
            const auto d = as_double(*bt);
            if (!d || !std::isfinite(*d))
                return reject(reject_reason::bad_timestamp, record_prefix(i) + "bt must be a number");
            base_time = *d;
        }
        if (const json::value* bu = rec->if_contains("bu")) {
            if (auto e = check_unit(*bu, "bu", base_unit)) return reject(e->reason, record_prefix(i) + e->detail);
        }
        if (const json::value* bv = rec->if_contains("bv")) {
            if (auto e = check_number(*bv, "bv", base_value)) return reject(e->reason, record_prefix(i) + e->detail);
        }

        std::string_view metric = topic.metric;
        if (const json::value* n = rec->if_contains("n")) {
            if (!n->is_string()) return reject(reject_reason::bad_json, record_prefix(i) + "n must be a string");
            const std::string_view name = n->get_string();
            if (!name.empty()) {
                if (!valid_name(name) || name == reserved_status_metric)
                    return reject(reject_reason::bad_topic, record_prefix(i) + "n is not a valid metric name");
                metric = name;
            }
        }

        double rel = base_time;
        if (const json::value* t = rec->if_contains("t")) {
            const auto d = as_double(*t);
            if (!d || !std::isfinite(*d))
                return reject(reject_reason::bad_timestamp, record_prefix(i) + "t must be a number");
            rel += *d;
        }
        // No t and no bt gives rel 0, "now", i.e. arrival. Bounds are checked in double first so
        // the conversion to int64 cannot overflow.
        double ms = std::round(rel * 1000.0);
        const bool relative = rel < senml_relative_limit_s;
        if (relative) ms += static_cast<double>(arrival_ms);
        if (!(ms >= static_cast<double>(min_ts_ms) && ms <= static_cast<double>(max_ts_ms)))
            return reject(reject_reason::bad_timestamp, record_prefix(i) + "time out of range");
        const auto ts = static_cast<std::int64_t>(ms);

        std::string unit = base_unit;
        if (const json::value* u = rec->if_contains("u")) {
            if (auto e = check_unit(*u, "u", unit)) return reject(e->reason, record_prefix(i) + e->detail);
        }

        const json::value* v = rec->if_contains("v");
        if (v == nullptr) continue;  // vs/vb/vd/s records: not numeric readings, skipped
        double value = 0.0;
        if (auto e = check_number(*v, "v", value)) return reject(e->reason, record_prefix(i) + e->detail);
        value += base_value;
        if (!std::isfinite(value)) return reject(reject_reason::not_finite, record_prefix(i) + "bv + v is not finite");

        if (relative) out.sensor_time = false;
        reading r;
        r.sensor = topic.sensor;
        r.metric = std::string(metric);
        r.ts = ts;
        r.value = value;
        r.unit = std::move(unit);
        out.readings.push_back(std::move(r));
    }
    if (out.readings.empty()) return reject(reject_reason::missing_value, "no SenML record with \"v\"");
    return out;
}

// A time far from arrival is a sensor's clock gone wrong: one from 2100 would stay the series'
// latest reading for ever, one from 1970 would be deleted by the next retention pass.
std::optional<rejection> check_window(const std::vector<reading>& readings, std::int64_t arrival_ms,
                                      const payload_limits& limits) {
    for (const auto& r : readings) {
        // Both times lie in 0..max_ts_ms, so the difference cannot overflow.
        const std::int64_t ahead = r.ts - arrival_ms;
        if (ahead > limits.max_ts_future_ms)
            return rejection{reject_reason::ts_out_of_range,
                             "time " + std::to_string(ahead / 1000) + " s after arrival (at most " +
                                 std::to_string(limits.max_ts_future_ms / 1000) + " s accepted)"};
        if (-ahead > limits.max_ts_past_ms)
            return rejection{reject_reason::ts_out_of_range,
                             "time " + std::to_string(-ahead / 1000) + " s before arrival (at most " +
                                 std::to_string(limits.max_ts_past_ms / 1000) + " s accepted)"};
    }
    return std::nullopt;
}

parse_result parse_message(const topic_parts& topic, std::string_view payload, std::int64_t arrival_ms,
                           const payload_limits& limits) {
    if (payload.size() > limits.max_payload_bytes)
        return reject(reject_reason::oversize, "payload of " + std::to_string(payload.size()) + " bytes exceeds " +
                                                   std::to_string(limits.max_payload_bytes));
    if (!valid_name(topic.sensor) || !valid_name(topic.metric))
        return reject(reject_reason::bad_topic, "invalid sensor or metric name");
    if (topic.metric == reserved_status_metric)
        return reject(reject_reason::bad_topic, "\"status\" is reserved for presence, not readings");

    const std::string_view text = trim(payload);
    if (text.empty()) return reject(reject_reason::bad_json, "empty payload");
    if (is_textual_non_finite(text)) return reject(reject_reason::not_finite, "value is NaN or infinite");

    // Most payloads are small: parse into a stack buffer and fall back to the heap only past it.
    unsigned char buffer[4096];
    json::monotonic_resource resource(buffer, sizeof buffer);
    json::parse_options options;
    options.max_depth = 16;  // our formats nest two deep; deeper is garbage, bound the parser's work
    boost::system::error_code ec;
    const json::value doc = parse_json(text, ec, &resource, options);
    if (ec) return reject(reject_reason::bad_json, "invalid JSON: " + ec.message());

    switch (doc.kind()) {
    case json::kind::object: return parse_object(topic, doc.get_object(), arrival_ms);
    case json::kind::array: return parse_senml(topic, doc.get_array(), arrival_ms, limits);
    case json::kind::int64:
    case json::kind::uint64:
    case json::kind::double_: {
        reading r;
        r.sensor = topic.sensor;
        r.metric = topic.metric;
        r.ts = arrival_ms;
        if (auto e = check_number(doc, "value", r.value)) return reject(e->reason, std::move(e->detail));
        parse_result out;
        out.readings.push_back(std::move(r));
        return out;
    }
    default: return reject(reject_reason::bad_json, "expected a number, an object or a SenML array");
    }
}

parse_result parse_payload_impl(const topic_parts& topic, std::string_view payload, std::int64_t arrival_ms,
                                const payload_limits& limits) {
    parse_result out = parse_message(topic, payload, arrival_ms, limits);
    if (!out.ok()) return out;
    if (auto e = check_window(out.readings, arrival_ms, limits)) return reject(e->reason, std::move(e->detail));
    return out;
}

std::optional<std::int64_t> parse_rfc3339(std::string_view s) noexcept {
    // YYYY-MM-DDTHH:MM:SS
    int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
    if (s.size() < 20) return std::nullopt;
    if (!read_digits(s, 0, 4, year) || s[4] != '-' || !read_digits(s, 5, 2, month) || s[7] != '-' ||
        !read_digits(s, 8, 2, day))
        return std::nullopt;
    if (s[10] != 'T' && s[10] != 't' && s[10] != ' ') return std::nullopt;
    if (!read_digits(s, 11, 2, hour) || s[13] != ':' || !read_digits(s, 14, 2, minute) || s[16] != ':' ||
        !read_digits(s, 17, 2, second))
        return std::nullopt;
    if (hour > 23 || minute > 59 || second > 60) return std::nullopt;
    const std::chrono::year_month_day ymd{std::chrono::year{year}, std::chrono::month{static_cast<unsigned>(month)},
                                          std::chrono::day{static_cast<unsigned>(day)}};
    if (!ymd.ok()) return std::nullopt;

    std::size_t pos = 19;
    std::int64_t millis = 0;
    if (pos < s.size() && s[pos] == '.') {
        ++pos;
        const std::size_t start = pos;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
            if (pos - start < 3) millis = millis * 10 + (s[pos] - '0');
            ++pos;
        }
        if (pos == start) return std::nullopt;
        for (std::size_t n = pos - start; n < 3; ++n) millis *= 10;  // ".5" is 500 ms
    }
    if (pos >= s.size()) return std::nullopt;  // the offset is mandatory in RFC 3339
    std::int64_t offset_s = 0;
    if (s[pos] == 'Z' || s[pos] == 'z') {
        ++pos;
    } else if (s[pos] == '+' || s[pos] == '-') {
        int oh = 0, om = 0;
        if (!read_digits(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
            !read_digits(s, pos + 4, 2, om) || oh > 23 || om > 59)
            return std::nullopt;
        offset_s = (oh * 3600 + om * 60) * (s[pos] == '-' ? -1 : 1);
        pos += 6;
    } else {
        return std::nullopt;
    }
    if (pos != s.size()) return std::nullopt;

    const auto days = std::chrono::sys_days{ymd}.time_since_epoch().count();
    // Second 60 (a leap second) simply counts as the first second of the next minute.
    const std::int64_t secs = static_cast<std::int64_t>(days) * 86400 + hour * 3600 + minute * 60 + second - offset_s;
    return secs * 1000 + millis;
}

}  // namespace

std::string_view to_string(reject_reason r) noexcept {
    switch (r) {
    case reject_reason::bad_topic: return "bad_topic";
    case reject_reason::oversize: return "oversize";
    case reject_reason::bad_json: return "bad_json";
    case reject_reason::missing_value: return "missing_value";
    case reject_reason::not_finite: return "not_finite";
    case reject_reason::bad_timestamp: return "bad_timestamp";
    case reject_reason::bad_seq: return "bad_seq";
    case reject_reason::bad_unit: return "bad_unit";
    case reject_reason::bad_status: return "bad_status";
    case reject_reason::ts_out_of_range: return "ts_out_of_range";
    case reject_reason::retained_replay: return "retained_replay";
    case reject_reason::series_limit: return "series_limit";
    }
    return "unknown";
}

bool valid_name(std::string_view name) noexcept {
    if (name.empty() || name.size() > 64) return false;
    for (char c : name) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                        c == '.' || c == '-';
        if (!ok) return false;
    }
    return true;
}

// An empty prefix means topics are just "{sensor}/{metric}".
std::optional<topic_parts> parse_topic(std::string_view prefix, std::string_view topic) {
    if (!prefix.empty()) {
        if (topic.size() <= prefix.size() || topic.substr(0, prefix.size()) != prefix || topic[prefix.size()] != '/')
            return std::nullopt;
        topic.remove_prefix(prefix.size() + 1);
    }
    const auto slash = topic.find('/');
    if (slash == std::string_view::npos) return std::nullopt;
    const std::string_view sensor = topic.substr(0, slash);
    const std::string_view metric = topic.substr(slash + 1);  // valid_name rejects any further '/'
    if (!valid_name(sensor) || !valid_name(metric)) return std::nullopt;
    return topic_parts{std::string(sensor), std::string(metric)};
}

parse_result parse_payload(const topic_parts& topic, std::string_view payload, std::int64_t arrival_ms,
                           const payload_limits& limits) {
    try {
        return parse_payload_impl(topic, payload, arrival_ms, limits);
    } catch (const std::exception& e) {
        // Only allocation failure can get here; ingest must go on, so it becomes a rejection.
        return reject(reject_reason::oversize, std::string("cannot parse: ") + e.what());
    }
}

std::optional<bool> parse_status(std::string_view payload) noexcept {
    const std::string_view s = trim(payload);
    if (s == "online") return true;
    if (s == "offline") return false;
    return std::nullopt;
}

std::optional<std::int64_t> parse_time(std::string_view text) noexcept {
    if (text.empty()) return std::nullopt;
    // An RFC 3339 date always has '-' at index 4; an integer never does after its sign.
    if (text.size() >= 5 && text[4] == '-') return parse_rfc3339(text);
    std::int64_t ms = 0;
    const char* first = text.data();
    const char* last = text.data() + text.size();
    if (*first == '-' && text.size() == 1) return std::nullopt;
    const auto [ptr, ec] = std::from_chars(first, last, ms);
    if (ec != std::errc{} || ptr != last) return std::nullopt;
    return ms;
}

}  // namespace telemetry::bridge
