// MQTT topic + payload -> readings, or the reason they were rejected. Pure and fuzzable.
#pragma once

#include "reading.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace telemetry::bridge {

// Why an MQTT message was not stored. Each is a label value of the rejects metric.
enum class reject_reason {
    bad_topic,      // not {prefix}/{sensor}/{metric} with names [A-Za-z0-9_.-]{1,64}
    oversize,       // payload longer than the configured limit
    bad_json,       // not a number, not valid JSON, or JSON of the wrong shape
    missing_value,  // a JSON object / SenML record without a value
    not_finite,     // value is NaN or infinite (or not a number)
    bad_timestamp,  // ts / t / bt unparsable or out of range
    bad_seq,        // seq not a non-negative integer
    bad_unit,       // unit not a short printable string
    bad_status,     // status payload other than online / offline
    ts_out_of_range,   // a reading's time too far from its arrival (payload_limits' window)
    retained_replay,   // from the broker's retained store, without the seq and ts that identify it
    series_limit,      // a new series while ingest.max_series exist already
};
inline constexpr std::array all_reject_reasons{
    reject_reason::bad_topic,     reject_reason::oversize,        reject_reason::bad_json,
    reject_reason::missing_value, reject_reason::not_finite,      reject_reason::bad_timestamp,
    reject_reason::bad_seq,       reject_reason::bad_unit,        reject_reason::bad_status,
    reject_reason::ts_out_of_range, reject_reason::retained_replay,
    reject_reason::series_limit};
std::string_view to_string(reject_reason r) noexcept;

// `{sensor}` and `{metric}`: one topic level each, [A-Za-z0-9_.-]{1,64}.
bool valid_name(std::string_view name) noexcept;

struct topic_parts {
    std::string sensor;
    std::string metric;  // "status" for the presence topic
};
// Splits "{prefix}/{sensor}/{metric}". The prefix may itself have several levels ("site/a/sensors").
std::optional<topic_parts> parse_topic(std::string_view prefix, std::string_view topic);

struct payload_limits {
    std::size_t max_payload_bytes = 16 * 1024;
    std::size_t max_senml_records = 1000;
    // How far a reading's time may lie after / before its arrival (docs/api.md section 1.4), in
    // ms. The defaults set no window (any time 1970..9999); the bridge sets them from [ingest].
    std::int64_t max_ts_future_ms = INT64_MAX;
    std::int64_t max_ts_past_ms = INT64_MAX;
};

struct rejection {
    reject_reason reason;
    std::string detail;  // human-readable, for the log line
};

// Either readings (at least one) or a rejection; never both.
struct parse_result {
    std::vector<reading> readings;
    std::optional<rejection> error;
    // Every reading's time came from the payload (a JSON `ts`, an absolute SenML time), none
    // from the arrival time.
    bool sensor_time = false;
    bool ok() const noexcept { return !error.has_value(); }
};

// Parses a reading payload published on `topic` (already split). `arrival_ms` is used when the
// payload carries no time. Accepts the three formats of docs/api.md section 1.2: a JSON object, SenML JSON,
// a bare number. Never throws.
parse_result parse_payload(const topic_parts& topic, std::string_view payload,
                           std::int64_t arrival_ms, const payload_limits& limits = {});

// "online" -> true, "offline" -> false, anything else -> nullopt. Surrounding whitespace ignored.
std::optional<bool> parse_status(std::string_view payload) noexcept;

// Parses an RFC 3339 date-time ("2024-11-22T10:00:00.123Z", offsets allowed) or a decimal epoch
// milliseconds integer, as used in payload `ts` strings and HTTP `from`/`to` parameters.
std::optional<std::int64_t> parse_time(std::string_view text) noexcept;

}  // namespace telemetry::bridge
