// Every wire form of what the bridge sends about readings: the Reading JSON object (docs/api.md
// section 3), CSV rows, SSE frames, WebSocket messages, and the status and reset events in each
// transport's form. One module, so a field added to a reading reaches every transport at once.
#pragma once

#include "reading.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace telemetry::bridge {

// A committed reading as the live side hands it out: its MQTT topic (for filter matching) and its
// wire forms, serialised once and shared by every client that receives it.
struct live_reading {
    reading r;
    std::string topic;
    std::string json;
    std::string ws_json;  // the same as a WebSocket message: {"op":"reading",...}
};
using live_ptr = std::shared_ptr<const live_reading>;

// `prefix/sensor/metric`, the JSON and the WebSocket message of a committed reading.
live_ptr make_live(std::string_view topic_prefix, reading r);
// A series' topic, `prefix/sensor/metric`, into `out` (its buffer reused).
void assign_topic(std::string& out, std::string_view prefix, std::string_view sensor, std::string_view metric);

// A sensor's presence changed (its retained `status` topic).
struct status_event {
    std::string sensor;
    bool online = false;
};
using status_ptr = std::shared_ptr<const status_event>;

// Retention deleted readings after a client's cursor, or the cursor is of another epoch (other
// data: docs/api.md 2.1): it resumes from the oldest reading kept.
struct reset_notice {
    std::int64_t after = 0;
    std::int64_t oldest_id = 0;
    std::string epoch;  // empty: a retention reset; else an epoch reset, and the current epoch
};

// JSON primitives. Numbers in their shortest exact decimal form (std::to_chars).
void append_int(std::string& out, std::int64_t v);
void append_double(std::string& out, double v);
// `s` as a JSON string literal (quotes included), escaping what RFC 8259 requires.
void append_json_string(std::string& out, std::string_view s);

// {"id":..,"sensor":..,"metric":..,"ts":..,"value":..,"unit":..|null,"seq":..|null}
void append_reading_json(std::string& out, const reading& r);
std::string reading_json(const reading& r);
// A reading's JSON object with `"skipped":N` added when N > 0 (`json` ends with its '}'); a
// conflating stream says so how many older readings of the series it replaced.
void append_with_skipped(std::string& out, std::string_view json, std::uint64_t skipped);

// CSV (RFC 4180, CRLF): the header row and one row per reading. A text cell that a spreadsheet
// would take for a formula (starting with = + - @, a tab or CR) is quoted with a leading
// apostrophe, so it opens as text.
inline constexpr std::string_view csv_header = "id,sensor,metric,ts,value,unit,seq\r\n";
void append_csv_row(std::string& out, const reading& r);

// {"sensor":..,"online":true|false}: a presence change as SSE data and MQTT republish send it.
void append_status_json(std::string& out, const status_event& s);

// {"reason":"retention","after":N,"oldest_id":M}, or {"reason":"epoch",...,"epoch":"E"}
void append_reset_json(std::string& out, const reset_notice& r);

// Server-Sent Events frames.
// `at_epoch` ("@" and the store's epoch) follows the id in the `id:` line, so that the cursor a
// browser sends back as Last-Event-ID names its epoch (docs/api.md 2.1).
void append_sse_reading(std::string& out, const live_reading& l, std::string_view at_epoch, std::uint64_t skipped = 0);
// The size of append_sse_reading's frame without `skipped`, without building it.
std::size_t sse_reading_size(const live_reading& l, std::string_view at_epoch);
void append_sse_status(std::string& out, const status_event& s);
void append_sse_reset(std::string& out, const reset_notice& r);
void append_sse_retry(std::string& out, std::int64_t retry_ms);
// event: error, {"code":..,"message":..}: why the bridge ends the stream (e.g. token_expired).
void append_sse_error(std::string& out, std::string_view code, std::string_view message);

// WebSocket messages (the text of one message each).
std::string ws_status_message(const status_event& s);
std::string ws_reset_message(std::string_view topic, const reset_notice& r);

}  // namespace telemetry::bridge
