// MQTT ingest: topic name -> parse_topic, payload -> parse_payload (JSON object, bare number,
// SenML), parse_status, parse_time; every accepted reading must come out of every wire form
// (JSON, CSV, WebSocket) as valid JSON that gives back the same value.
//
// Input: byte 0 picks the limits, line 1 is the topic, the rest the payload.
#include "core/payload.hpp"
#include "core/wire_format.hpp"
#include "fuzz_common.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <string>

using namespace telemetry;
using namespace telemetry::bridge;

namespace {

constexpr std::int64_t arrival = 1'732'269'600'000;  // 2024-11-22T10:00:00Z
constexpr std::int64_t max_ts = 253'402'300'799'999;

void check_reading(const reading& r, const topic_parts& topic, const payload_limits& limits) {
    FUZZ_CHECK(r.sensor == topic.sensor);
    FUZZ_CHECK(valid_name(r.metric) && r.metric != "status");
    FUZZ_CHECK(std::isfinite(r.value));
    FUZZ_CHECK(r.ts >= 0 && r.ts <= max_ts);
    FUZZ_CHECK(r.ts - arrival <= limits.max_ts_future_ms && arrival - r.ts <= limits.max_ts_past_ms);
    FUZZ_CHECK(r.unit.size() <= 32);
    for (const char c : r.unit) FUZZ_CHECK(c >= 0x20 && c <= 0x7e);
    FUZZ_CHECK(!r.seq || *r.seq >= 0);

    // The JSON every transport sends: valid, and the same numbers.
    reading stored = r;
    stored.id = 42;
    const std::string json = reading_json(stored);
    boost::system::error_code ec;
    const auto doc = boost::json::parse(json, ec);
    FUZZ_CHECK(!ec && doc.is_object());
    const auto& o = doc.get_object();
    FUZZ_CHECK(o.at("id").to_number<std::int64_t>() == 42);
    FUZZ_CHECK(o.at("ts").to_number<std::int64_t>() == r.ts);
    // The value's text gives back the exact double (Boost.JSON 1.81 reads numbers with up to a
    // few ulp of error, so read the text with from_chars, which rounds correctly).
    const auto vpos = json.find(",\"value\":") + 9;
    const auto vend = json.find(",\"unit\":", vpos);
    double back = 0;
    const auto [vptr, vec] = std::from_chars(json.data() + vpos, json.data() + vend, back);
    FUZZ_CHECK(vec == std::errc{} && vptr == json.data() + vend && back == r.value);
    FUZZ_CHECK(o.at("value").is_number());
    FUZZ_CHECK(o.at("sensor").as_string() == r.sensor);
    if (r.unit.empty()) FUZZ_CHECK(o.at("unit").is_null());
    else FUZZ_CHECK(o.at("unit").as_string() == r.unit);

    auto live = make_live("sensors", stored);
    FUZZ_CHECK(live->json == json);
    const auto ws = boost::json::parse(live->ws_json, ec);
    FUZZ_CHECK(!ec && ws.is_object());

    std::string csv;
    append_csv_row(csv, stored);
    FUZZ_CHECK(csv.size() >= 2 && csv.substr(csv.size() - 2) == "\r\n");
    std::string sse;
    append_sse_reading(sse, *live, "@0123abcd");
    FUZZ_CHECK(sse.size() >= 2 && sse.substr(sse.size() - 2) == "\n\n");
    // One event: three lines and the blank line; nothing in the data may end it early.
    FUZZ_CHECK(std::count(sse.begin(), sse.end(), '\n') == 4 && sse.find('\r') == std::string::npos);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::uint8_t mode = data[0];
    const auto parts = fuzz::split_lines(fuzz::as_text(data + 1, size - 1), 2);
    const std::string_view topic_text = parts[0];
    const std::string_view payload = parts.size() > 1 ? parts[1] : parts[0];

    payload_limits limits;
    if (mode & 1) limits.max_payload_bytes = 64;
    if (mode & 2) limits.max_senml_records = 2;
    if (mode & 4) {  // the bridge's defaults: 5 minutes ahead, 30 days back
        limits.max_ts_future_ms = 300'000;
        limits.max_ts_past_ms = 30LL * 86'400'000;
    }

    // The prefix may have several levels; an empty one is allowed.
    const std::string_view prefix = (mode & 8) ? "site/a/sensors" : ((mode & 16) ? "" : "sensors");
    auto topic = parse_topic(prefix, topic_text);
    if (topic) {
        FUZZ_CHECK(valid_name(topic->sensor) && valid_name(topic->metric));
        std::string again;
        assign_topic(again, prefix, topic->sensor, topic->metric);
        if (!prefix.empty()) FUZZ_CHECK(again == topic_text);
    } else {
        topic = topic_parts{"fuzz-sensor", "temperature"};
    }

    const parse_result r = parse_payload(*topic, payload, arrival, limits);
    FUZZ_CHECK(r.ok() != r.readings.empty());
    if (r.ok()) {
        FUZZ_CHECK(payload.size() <= limits.max_payload_bytes);
        FUZZ_CHECK(r.readings.size() <= std::max<std::size_t>(limits.max_senml_records, 1));
        for (const auto& rd : r.readings) check_reading(rd, *topic, limits);
        // A bare number is stored as the double nearest to its text.
        std::string_view text = payload;
        while (!text.empty() && std::string_view(" \t\n\r\f\v").find(text.front()) != std::string_view::npos)
            text.remove_prefix(1);
        while (!text.empty() && std::string_view(" \t\n\r\f\v").find(text.back()) != std::string_view::npos)
            text.remove_suffix(1);
        double exact = 0;
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), exact);
        if (ec == std::errc{} && end == text.data() + text.size()) FUZZ_CHECK(r.readings[0].value == exact);
    } else {
        FUZZ_CHECK(!to_string(r.error->reason).empty());
    }

    (void)parse_status(payload);
    if (const auto t = parse_time(payload); t && payload.size() >= 5 && payload[4] == '-') {
        FUZZ_CHECK(*t >= -62'167'219'200'000 - 86'400'000 && *t <= max_ts + 86'400'000);  // years 0000..9999 +- a day of offset
    }
    return 0;
}
