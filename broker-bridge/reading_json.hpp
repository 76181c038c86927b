// The Reading object of API.md section 3, serialised once per committed reading (a hot path).
#pragma once

#include "reading.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace telemetry::bridge {

// {"id":..,"sensor":..,"metric":..,"ts":..,"value":..,"unit":..|null,"seq":..|null}
// Appends to `out` so callers can build arrays without copies.
void append_reading_json(std::string& out, const reading& r);
std::string reading_json(const reading& r);

// Appends a number in its shortest exact decimal form (std::to_chars).
void append_int(std::string& out, std::int64_t v);
void append_double(std::string& out, double v);

// Appends `s` as a JSON string literal (quotes included), escaping what RFC 8259 requires.
void append_json_string(std::string& out, std::string_view s);

}  // namespace telemetry::bridge
