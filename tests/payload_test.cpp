// Unit tests for payload parsing: topics, the three payload formats, every reject reason, RFC 3339.
#include "core/payload.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <string>

using namespace telemetry::bridge;

namespace {

constexpr std::int64_t arrival = 1'732'269'600'000;  // 2024-11-22T10:00:00Z
const topic_parts temp{"s1", "temperature"};

parse_result parse(std::string_view payload, const topic_parts& t = temp, const payload_limits& limits = {}) {
    return parse_payload(t, payload, arrival, limits);
}

// The reason a payload was rejected; fails the test if it was accepted.
reject_reason reason_of(std::string_view payload, const payload_limits& limits = {}) {
    const auto r = parse(payload, temp, limits);
    REQUIRE_MESSAGE(!r.ok(), "accepted: " << payload);
    CHECK(r.readings.empty());
    return r.error->reason;
}

telemetry::reading only(const parse_result& r) {
    REQUIRE_MESSAGE(r.ok(), (r.error ? r.error->detail : std::string()));
    REQUIRE(r.readings.size() == 1);
    return r.readings.front();
}

}  // namespace

TEST_CASE("payload - reject reasons have snake_case names") {
    CHECK(to_string(reject_reason::bad_topic) == "bad_topic");
    CHECK(to_string(reject_reason::oversize) == "oversize");
    CHECK(to_string(reject_reason::bad_json) == "bad_json");
    CHECK(to_string(reject_reason::missing_value) == "missing_value");
    CHECK(to_string(reject_reason::not_finite) == "not_finite");
    CHECK(to_string(reject_reason::bad_timestamp) == "bad_timestamp");
    CHECK(to_string(reject_reason::bad_seq) == "bad_seq");
    CHECK(to_string(reject_reason::bad_unit) == "bad_unit");
    CHECK(to_string(reject_reason::bad_status) == "bad_status");
    CHECK(to_string(reject_reason::ts_out_of_range) == "ts_out_of_range");
    CHECK(to_string(reject_reason::retained_replay) == "retained_replay");
    for (auto r : all_reject_reasons) CHECK(to_string(r) != "unknown");
}

TEST_CASE("payload - valid_name accepts the documented alphabet and length") {
    CHECK(valid_name("a"));
    CHECK(valid_name("Sensor_01.room-2"));
    CHECK(valid_name(std::string(64, 'x')));
    CHECK_FALSE(valid_name(""));
    CHECK_FALSE(valid_name(std::string(65, 'x')));
    CHECK_FALSE(valid_name("a b"));
    CHECK_FALSE(valid_name("a/b"));
    CHECK_FALSE(valid_name("+"));
    CHECK_FALSE(valid_name("#"));
    CHECK_FALSE(valid_name("caf\xc3\xa9"));
}

TEST_CASE("payload - parse_topic splits prefix sensor and metric") {
    const auto t = parse_topic("sensors", "sensors/s1/temperature");
    REQUIRE(t);
    CHECK(t->sensor == "s1");
    CHECK(t->metric == "temperature");

    const auto status = parse_topic("sensors", "sensors/s1/status");
    REQUIRE(status);
    CHECK(status->metric == "status");

    const auto multi = parse_topic("site/a/sensors", "site/a/sensors/s-2/humidity");
    REQUIRE(multi);
    CHECK(multi->sensor == "s-2");
    CHECK(multi->metric == "humidity");

    const auto no_prefix = parse_topic("", "s1/temperature");
    REQUIRE(no_prefix);
    CHECK(no_prefix->sensor == "s1");
}

TEST_CASE("payload - parse_topic rejects bad topics") {
    CHECK_FALSE(parse_topic("sensors", "sensors//temperature"));        // empty level
    CHECK_FALSE(parse_topic("sensors", "sensors/s1/"));                 // empty metric
    CHECK_FALSE(parse_topic("sensors", "sensors/s1"));                  // too few levels
    CHECK_FALSE(parse_topic("sensors", "sensors"));
    CHECK_FALSE(parse_topic("sensors", "sensors/"));
    CHECK_FALSE(parse_topic("sensors", "sensors/s1/temperature/x"));    // extra level
    CHECK_FALSE(parse_topic("sensors", "other/s1/temperature"));        // wrong prefix
    CHECK_FALSE(parse_topic("sensors", "sensorsX/s1/temperature"));     // prefix not a whole level
    CHECK_FALSE(parse_topic("sensors", "site/sensors/s1/temperature"));
    CHECK_FALSE(parse_topic("sensors", "sensors/+/temperature"));       // wildcards
    CHECK_FALSE(parse_topic("sensors", "sensors/s1/#"));
    CHECK_FALSE(parse_topic("sensors", "sensors/s 1/temperature"));     // bad chars
    CHECK_FALSE(parse_topic("sensors", "sensors/s1/temp$"));
    CHECK_FALSE(parse_topic("sensors", "sensors/" + std::string(65, 'a') + "/temperature"));  // too long
    CHECK(parse_topic("sensors", "sensors/" + std::string(64, 'a') + "/temperature"));
    CHECK_FALSE(parse_topic("sensors", ""));
}

TEST_CASE("payload - bare number payloads") {
    const auto r = only(parse("21.37"));
    CHECK(r.sensor == "s1");
    CHECK(r.metric == "temperature");
    CHECK(r.value == doctest::Approx(21.37));
    CHECK(r.ts == arrival);
    CHECK(r.unit.empty());
    CHECK_FALSE(r.seq);
    CHECK(r.id == 0);

    CHECK(only(parse("  -4\n")).value == -4.0);
    CHECK(only(parse("1e3")).value == 1000.0);
    CHECK(only(parse("18446744073709551615")).value == doctest::Approx(1.8446744073709552e19));
    CHECK(only(parse("0")).value == 0.0);
}

// Regression (fuzz/corpus/fuzz_payload/regression-imprecise-3e91, found by fuzz_payload's
// round-trip property): Boost.JSON 1.81 reads decimal text approximately, so "3e91" was stored as
// 3.0000000000000004e+91. Every form now stores the double nearest to the text (the C++
// compiler's reading of the same literal), wherever the number sits in the payload.
TEST_CASE("payload - numbers are read exactly, in every payload form") {
    struct row {
        const char* text;
        double expected;
    };
    const row rows[] = {
        {"3e91", 3e91},
        {"2.2250738585072011e-308", 2.2250738585072011e-308},
        {"8.5e-310", 8.5e-310},
        {"1.7976931348623157e308", 1.7976931348623157e308},
        {"21.37", 21.37},
        {"-0.1", -0.1},
        {"123456789012345678901234567890", 123456789012345678901234567890.0},
        {"4.9406564584124654e-324", 4.9406564584124654e-324},
        {"9007199254740993", 9007199254740993.0},
        {"0.30000000000000004", 0.30000000000000004},
        {"1E+22", 1e22},
        {"7.2057594037927933e16", 7.2057594037927933e16},
    };
    for (const auto& r : rows) {
        CAPTURE(r.text);
        CHECK(only(parse(r.text)).value == r.expected);
        CHECK(only(parse(std::string(R"({"value": )") + r.text + "}")).value == r.expected);
        CHECK(only(parse(std::string(R"([{"bt": 1732270000, "v": )") + r.text + "}]")).value == r.expected);
    }
    // SenML times too: 1732270000.123 s is 1732270000123 ms.
    CHECK(only(parse(R"([{"bt": 1732270000.123, "v": 1}])")).ts == 1'732'270'000'123);
    // Out of double's range is still what it was: overflow is not finite, underflow is zero.
    CHECK(parse("1e999").error->reason == reject_reason::not_finite);
    CHECK(parse("-1e999").error->reason == reject_reason::not_finite);
    CHECK(only(parse("1e-400")).value == 0.0);
}

TEST_CASE("payload - textual and overflowing non-finite numbers are not_finite") {
    for (const char* p : {"nan", "NaN", "-nan", "inf", "-inf", "+Inf", "Infinity", "-infinity", " nan "})
        CHECK_MESSAGE(reason_of(p) == reject_reason::not_finite, p);
    CHECK(reason_of("1e999") == reject_reason::not_finite);
    CHECK(reason_of("-1e999") == reject_reason::not_finite);
    CHECK(reason_of(R"({"value": 1e999})") == reject_reason::not_finite);
    CHECK(reason_of(R"({"value": NaN})") == reject_reason::bad_json);  // not JSON at all
    CHECK(reason_of("nanx") == reject_reason::bad_json);
}

TEST_CASE("payload - empty and malformed payloads are bad_json") {
    CHECK(reason_of("") == reject_reason::bad_json);
    CHECK(reason_of("   \t\r\n") == reject_reason::bad_json);
    CHECK(reason_of("21.3.7") == reject_reason::bad_json);
    CHECK(reason_of("21,5") == reject_reason::bad_json);
    CHECK(reason_of("{\"value\": 1") == reject_reason::bad_json);
    CHECK(reason_of("\"21.5\"") == reject_reason::bad_json);
    CHECK(reason_of("true") == reject_reason::bad_json);
    CHECK(reason_of("null") == reject_reason::bad_json);
    CHECK(reason_of("hello") == reject_reason::bad_json);
    CHECK(reason_of("{\"value\": 1} trailing") == reject_reason::bad_json);
    CHECK(reason_of(std::string(100, '[') + std::string(100, ']')) == reject_reason::bad_json);
    CHECK(reason_of(std::string("\x00\x01\x02", 3)) == reject_reason::bad_json);
}

TEST_CASE("payload - oversize is checked before anything else") {
    payload_limits small;
    small.max_payload_bytes = 8;
    CHECK(reason_of("123456789", small) == reject_reason::oversize);
    CHECK(reason_of("not json!", small) == reject_reason::oversize);
    CHECK(only(parse("12345678", temp, small)).value == 12345678.0);
    const auto bad_topic_and_big = parse_payload(topic_parts{"", "x"}, "123456789", arrival, small);
    REQUIRE(bad_topic_and_big.error);
    CHECK(bad_topic_and_big.error->reason == reject_reason::oversize);
    CHECK_FALSE(bad_topic_and_big.error->detail.empty());
}

TEST_CASE("payload - JSON object with all fields") {
    const auto r = only(parse(R"({"value": 21.37, "ts": 1732270000123, "seq": 42, "unit": "Cel"})"));
    CHECK(r.value == doctest::Approx(21.37));
    CHECK(r.ts == 1'732'270'000'123);
    REQUIRE(r.seq);
    CHECK(*r.seq == 42);
    CHECK(r.unit == "Cel");
}

TEST_CASE("payload - JSON object defaults and ignored keys") {
    const auto r = only(parse(R"(  {"value": -3, "extra": {"nested": [1, 2]}, "note": "x"}  )"));
    CHECK(r.value == -3.0);
    CHECK(r.ts == arrival);
    CHECK_FALSE(r.seq);
    CHECK(r.unit.empty());
}

TEST_CASE("payload - JSON object value rules") {
    CHECK(reason_of("{}") == reject_reason::missing_value);
    CHECK(reason_of(R"({"ts": 1})") == reject_reason::missing_value);
    CHECK(reason_of(R"({"value": null})") == reject_reason::missing_value);
    CHECK(reason_of(R"({"value": "21.5"})") == reject_reason::not_finite);
    CHECK(reason_of(R"({"value": "NaN"})") == reject_reason::not_finite);
    CHECK(reason_of(R"({"value": true})") == reject_reason::not_finite);
    CHECK(reason_of(R"({"value": [1]})") == reject_reason::not_finite);
    CHECK(reason_of(R"({"value": {"v": 1}})") == reject_reason::not_finite);
}

TEST_CASE("payload - JSON object timestamps") {
    CHECK(only(parse(R"({"value": 1, "ts": "2024-11-22T10:00:00.5Z"})")).ts == 1'732'269'600'500);
    CHECK(only(parse(R"({"value": 1, "ts": "2024-11-22T12:00:00+02:00"})")).ts == 1'732'269'600'000);
    CHECK(only(parse(R"({"value": 1, "ts": "1732269600000"})")).ts == 1'732'269'600'000);
    CHECK(only(parse(R"({"value": 1, "ts": 1.7322696e12})")).ts == 1'732'269'600'000);
    CHECK(only(parse(R"({"value": 1, "ts": 0})")).ts == 0);
    CHECK(only(parse(R"({"value": 1, "ts": 253402300799999})")).ts == 253'402'300'799'999);

    CHECK(reason_of(R"({"value": 1, "ts": 253402300800000})") == reject_reason::bad_timestamp);
    CHECK(reason_of(R"({"value": 1, "ts": -1})") == reject_reason::bad_timestamp);
    CHECK(reason_of(R"({"value": 1, "ts": 1.5})") == reject_reason::bad_timestamp);
    CHECK(reason_of(R"({"value": 1, "ts": 18446744073709551615})") == reject_reason::bad_timestamp);
    CHECK(reason_of(R"({"value": 1, "ts": "yesterday"})") == reject_reason::bad_timestamp);
    CHECK(reason_of(R"({"value": 1, "ts": "2024-02-30T00:00:00Z"})") == reject_reason::bad_timestamp);
    CHECK(reason_of(R"({"value": 1, "ts": "1969-12-31T23:59:59Z"})") == reject_reason::bad_timestamp);
    CHECK(reason_of(R"({"value": 1, "ts": null})") == reject_reason::bad_timestamp);
    CHECK(reason_of(R"({"value": 1, "ts": true})") == reject_reason::bad_timestamp);
    CHECK(reason_of(R"({"value": 1, "ts": 1e999})") == reject_reason::bad_timestamp);
}

TEST_CASE("payload - JSON object seq and unit") {
    CHECK(*only(parse(R"({"value": 1, "seq": 0})")).seq == 0);
    CHECK(*only(parse(R"({"value": 1, "seq": 9223372036854775807})")).seq == 9'223'372'036'854'775'807);
    CHECK(*only(parse(R"({"value": 1, "seq": 7.0})")).seq == 7);
    CHECK(reason_of(R"({"value": 1, "seq": -1})") == reject_reason::bad_seq);
    CHECK(reason_of(R"({"value": 1, "seq": 9223372036854775808})") == reject_reason::bad_seq);
    CHECK(reason_of(R"({"value": 1, "seq": 1.5})") == reject_reason::bad_seq);
    CHECK(reason_of(R"({"value": 1, "seq": "1"})") == reject_reason::bad_seq);
    CHECK(reason_of(R"({"value": 1, "seq": null})") == reject_reason::bad_seq);

    CHECK(only(parse(R"({"value": 1, "unit": "%RH"})")).unit == "%RH");
    CHECK(only(parse(R"({"value": 1, "unit": "m/s2"})")).unit == "m/s2");
    CHECK(only(parse(R"({"value": 1, "unit": ")" + std::string(32, 'u') + "\"}")).unit.size() == 32);
    CHECK(reason_of(R"({"value": 1, "unit": ")" + std::string(33, 'u') + "\"}") == reject_reason::bad_unit);
    CHECK(reason_of(R"({"value": 1, "unit": ""})") == reject_reason::bad_unit);
    CHECK(reason_of(R"({"value": 1, "unit": 5})") == reject_reason::bad_unit);
    CHECK(reason_of(R"({"value": 1, "unit": "a\nb"})") == reject_reason::bad_unit);
    CHECK(reason_of(R"({"value": 1, "unit": "\u00b0C"})") == reject_reason::bad_unit);
}

TEST_CASE("payload - SenML single record") {
    const auto r = only(parse(R"([{"n": "temperature", "u": "Cel", "v": 22.5}])"));
    CHECK(r.metric == "temperature");
    CHECK(r.unit == "Cel");
    CHECK(r.value == 22.5);
    CHECK(r.ts == arrival);
    CHECK_FALSE(r.seq);
}

TEST_CASE("payload - SenML base fields carry forward") {
    const auto r = parse(R"([
        {"bn": "urn:dev:mac:0024befffe804ff1:", "bt": 1.7322696e9, "bu": "Cel", "bv": 20, "bver": 10,
         "n": "temp", "v": 1.5},
        {"n": "temp", "t": 10, "v": 2},
        {"n": "humidity", "u": "%RH", "t": 20, "v": 25},
        {"n": "temp", "t": 30.0005, "v": -1}
    ])");
    REQUIRE_MESSAGE(r.ok(), r.error->detail);
    REQUIRE(r.readings.size() == 4);
    CHECK(r.readings[0].metric == "temp");
    CHECK(r.readings[0].value == 21.5);
    CHECK(r.readings[0].ts == 1'732'269'600'000);
    CHECK(r.readings[0].unit == "Cel");
    CHECK(r.readings[1].value == 22.0);
    CHECK(r.readings[1].ts == 1'732'269'610'000);
    CHECK(r.readings[2].metric == "humidity");
    CHECK(r.readings[2].unit == "%RH");
    CHECK(r.readings[2].value == 45.0);
    CHECK(r.readings[2].ts == 1'732'269'620'000);
    CHECK(r.readings[3].unit == "Cel");
    CHECK(r.readings[3].ts == 1'732'269'630'001);  // rounded to the nearest ms
    for (const auto& x : r.readings) CHECK(x.sensor == "s1");
}

TEST_CASE("payload - SenML relative times are relative to arrival") {
    const auto r = parse(R"([{"t": -5, "v": 1}, {"t": 0, "v": 2}, {"v": 3}, {"bt": 100, "v": 4}, {"t": -0.25, "v": 5}])");
    REQUIRE_MESSAGE(r.ok(), r.error->detail);
    REQUIRE(r.readings.size() == 5);
    CHECK(r.readings[0].ts == arrival - 5000);
    CHECK(r.readings[1].ts == arrival);
    CHECK(r.readings[2].ts == arrival);
    CHECK(r.readings[3].ts == arrival + 100'000);
    CHECK(r.readings[4].ts == arrival + 100'000 - 250);  // bt 100 still applies
    for (const auto& x : r.readings) CHECK(x.metric == "temperature");
}

TEST_CASE("payload - SenML absolute time threshold is 2 to the 28") {
    const auto abs = only(parse(R"([{"t": 268435456, "v": 1}])"));
    CHECK(abs.ts == 268'435'456'000);
    const auto rel = only(parse(R"([{"t": 268435455, "v": 1}])"));
    CHECK(rel.ts == arrival + 268'435'455'000);
}

TEST_CASE("payload - SenML records without v are skipped") {
    const auto r = parse(R"([{"n": "state", "vs": "on"}, {"n": "door", "vb": true}, {"n": "t2", "v": 3}])");
    REQUIRE_MESSAGE(r.ok(), r.error->detail);
    REQUIRE(r.readings.size() == 1);
    CHECK(r.readings[0].metric == "t2");
    CHECK(reason_of(R"([{"n": "state", "vs": "on"}])") == reject_reason::missing_value);
    CHECK(reason_of("[]") == reject_reason::missing_value);
    CHECK(reason_of(R"([{"bn": "x", "bu": "Cel"}])") == reject_reason::missing_value);
}

TEST_CASE("payload - SenML empty n falls back to the topic metric") {
    CHECK(only(parse(R"([{"n": "", "v": 1}])")).metric == "temperature");
    CHECK(only(parse(R"([{"bn": "dev1", "v": 1}])")).metric == "temperature");
}

TEST_CASE("payload - SenML invalid records reject the whole message") {
    CHECK(reason_of(R"([{"v": 1}, 5])") == reject_reason::bad_json);
    CHECK(reason_of(R"([{"v": 1}, {"n": 5, "v": 1}])") == reject_reason::bad_json);
    CHECK(reason_of(R"([{"bn": 1, "v": 1}])") == reject_reason::bad_json);
    CHECK(reason_of(R"([{"v": 1}, {"n": "bad name", "v": 2}])") == reject_reason::bad_topic);
    CHECK(reason_of(R"([{"n": "a/b", "v": 2}])") == reject_reason::bad_topic);
    CHECK(reason_of(R"([{"n": "status", "v": 2}])") == reject_reason::bad_topic);
    CHECK(reason_of(R"([{"v": 1}, {"v": "2"}])") == reject_reason::not_finite);
    CHECK(reason_of(R"([{"v": 1e999}])") == reject_reason::not_finite);
    CHECK(reason_of(R"([{"bv": 1e308, "v": 1e308}])") == reject_reason::not_finite);
    CHECK(reason_of(R"([{"bv": "x", "v": 1}])") == reject_reason::not_finite);
    CHECK(reason_of(R"([{"v": 1, "t": "now"}])") == reject_reason::bad_timestamp);
    CHECK(reason_of(R"([{"bt": null, "v": 1}])") == reject_reason::bad_timestamp);
    CHECK(reason_of(R"([{"bt": 1e300, "v": 1}])") == reject_reason::bad_timestamp);
    // bt + t is what counts: a total of 0 is relative, i.e. arrival, and accepted.
    CHECK(only(parse(R"([{"bt": 300000000, "t": -300000000, "v": 1}])")).ts == arrival);
    CHECK(reason_of(R"([{"t": -2000000000, "v": 1}])") == reject_reason::bad_timestamp);
    CHECK(reason_of(R"([{"u": 1, "v": 1}])") == reject_reason::bad_unit);
    CHECK(reason_of(R"([{"bu": "", "v": 1}])") == reject_reason::bad_unit);
}

TEST_CASE("payload - times outside the window around arrival are ts_out_of_range") {
    payload_limits limits;
    limits.max_ts_future_ms = 300'000;
    limits.max_ts_past_ms = 86'400'000;
    const auto accepted = [&](std::string_view p) { return parse(p, temp, limits).ok(); };
    CHECK(accepted(R"({"value": 1, "ts": 1732269900000})"));  // 300 s ahead
    CHECK(reason_of(R"({"value": 1, "ts": 1732269900001})", limits) == reject_reason::ts_out_of_range);
    CHECK(accepted(R"({"value": 1, "ts": 1732183200000})"));  // a day before
    CHECK(reason_of(R"({"value": 1, "ts": 1732183199999})", limits) == reject_reason::ts_out_of_range);
    CHECK(reason_of(R"({"value": 1, "ts": "2100-01-01T00:00:00Z"})", limits) == reject_reason::ts_out_of_range);
    CHECK(reason_of(R"({"value": 1, "ts": 0})", limits) == reject_reason::ts_out_of_range);
    // Outside 1970..9999 stays bad_timestamp; arrival-dated readings are always inside.
    CHECK(reason_of(R"({"value": 1, "ts": -1})", limits) == reject_reason::bad_timestamp);
    CHECK(accepted(R"({"value": 1})"));
    CHECK(accepted("21.5"));
    // SenML: absolute and relative times alike; one record outside rejects the message.
    CHECK(accepted(R"([{"t": -600, "v": 1}, {"t": 299, "v": 2}])"));
    CHECK(reason_of(R"([{"v": 1}, {"t": 301, "v": 2}])", limits) == reject_reason::ts_out_of_range);
    CHECK(reason_of(R"([{"bt": 4102444800, "v": 1}])", limits) == reject_reason::ts_out_of_range);
    limits.max_ts_future_ms = 0;  // no clock ahead at all
    CHECK(reason_of(R"({"value": 1, "ts": 1732269600001})", limits) == reject_reason::ts_out_of_range);
    CHECK(accepted(R"({"value": 1, "ts": 1732269600000})"));
}

TEST_CASE("payload - sensor_time says whether every time came from the payload") {
    CHECK(parse(R"({"value": 1, "ts": 1732269600000})").sensor_time);
    CHECK_FALSE(parse(R"({"value": 1, "seq": 3})").sensor_time);
    CHECK_FALSE(parse("21.5").sensor_time);
    CHECK(parse(R"([{"bt": 1732269600, "v": 1}, {"t": 1, "v": 2}])").sensor_time);
    CHECK_FALSE(parse(R"([{"bt": 1732269600, "v": 1}, {"bt": 0, "t": 1, "v": 2}])").sensor_time);
    CHECK_FALSE(parse(R"([{"v": 1}])").sensor_time);
}

TEST_CASE("payload - SenML record count limit is oversize") {
    payload_limits limits;
    limits.max_senml_records = 2;
    CHECK(parse(R"([{"v": 1}, {"v": 2}])", temp, limits).readings.size() == 2);
    CHECK(reason_of(R"([{"v": 1}, {"v": 2}, {"v": 3}])", limits) == reject_reason::oversize);
}

TEST_CASE("payload - reading topics must be valid and not status") {
    const auto status = parse_payload(topic_parts{"s1", "status"}, "21.5", arrival);
    REQUIRE(status.error);
    CHECK(status.error->reason == reject_reason::bad_topic);
    const auto bad = parse_payload(topic_parts{"s 1", "temperature"}, "21.5", arrival);
    REQUIRE(bad.error);
    CHECK(bad.error->reason == reject_reason::bad_topic);
}

TEST_CASE("payload - parse_status") {
    CHECK(parse_status("online") == true);
    CHECK(parse_status("offline") == false);
    CHECK(parse_status("  online\n") == true);
    CHECK_FALSE(parse_status("Online"));
    CHECK_FALSE(parse_status(""));
    CHECK_FALSE(parse_status("on line"));
    CHECK_FALSE(parse_status("\"online\""));
}

TEST_CASE("payload - parse_time RFC 3339 variants") {
    CHECK(parse_time("2024-11-22T10:00:00Z") == 1'732'269'600'000);
    CHECK(parse_time("2024-11-22t10:00:00z") == 1'732'269'600'000);
    CHECK(parse_time("2024-11-22 10:00:00Z") == 1'732'269'600'000);
    CHECK(parse_time("2024-11-22T10:00:00.123Z") == 1'732'269'600'123);
    CHECK(parse_time("2024-11-22T10:00:00.1Z") == 1'732'269'600'100);
    CHECK(parse_time("2024-11-22T10:00:00.123999999Z") == 1'732'269'600'123);  // truncated
    CHECK(parse_time("2024-11-22T11:30:00+01:30") == 1'732'269'600'000);
    CHECK(parse_time("2024-11-22T05:00:00-05:00") == 1'732'269'600'000);
    CHECK(parse_time("2024-11-22T10:00:00.5+00:00") == 1'732'269'600'500);
    CHECK(parse_time("2024-11-22T10:00:00-00:00") == 1'732'269'600'000);
    CHECK(parse_time("1970-01-01T00:00:00Z") == 0);
    CHECK(parse_time("1969-12-31T23:59:59Z") == -1000);
    CHECK(parse_time("9999-12-31T23:59:59Z") == 253'402'300'799'000);
    CHECK(parse_time("2024-02-29T00:00:00Z") == 1'709'164'800'000);  // leap day
    CHECK(parse_time("2000-02-29T00:00:00Z") == 951'782'400'000);    // divisible by 400
    CHECK(parse_time("2016-12-31T23:59:60Z") == parse_time("2017-01-01T00:00:00Z"));  // leap second
}

TEST_CASE("payload - parse_time rejects invalid dates") {
    for (const char* s : {"2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2024-04-31T00:00:00Z",
                          "2024-13-01T00:00:00Z", "2024-00-10T00:00:00Z", "2024-01-00T00:00:00Z",
                          "2024-01-01T24:00:00Z", "2024-01-01T00:60:00Z", "2024-01-01T00:00:61Z",
                          "2024-01-01T00:00:00", "2024-01-01T00:00:00.Z", "2024-01-01T00:00:00+0100",
                          "2024-01-01T00:00:00+24:00", "2024-01-01T00:00:00+01:60", "2024-01-01",
                          "2024-1-01T00:00:00Z", "2024-01-01X00:00:00Z", "2024-01-01T00:00:00ZZ",
                          "2024-01-01T00:00:00Z ", " 2024-01-01T00:00:00Z", "24-01-01T00:00:00Z", ""})
        CHECK_MESSAGE(!parse_time(s), s);
}

TEST_CASE("payload - parse_time epoch milliseconds") {
    CHECK(parse_time("0") == 0);
    CHECK(parse_time("1732269600123") == 1'732'269'600'123);
    CHECK(parse_time("-1000") == -1000);
    CHECK(parse_time("9223372036854775807") == 9'223'372'036'854'775'807);
    CHECK_FALSE(parse_time("9223372036854775808"));
    CHECK_FALSE(parse_time("-"));
    CHECK_FALSE(parse_time("+5"));
    CHECK_FALSE(parse_time("12a"));
    CHECK_FALSE(parse_time("1.5"));
    CHECK_FALSE(parse_time("1e3"));
}
