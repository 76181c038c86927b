// The reading: one measured value of one series, as stored and as served.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace telemetry {

// One sample of a series (sensor, metric). `id` is 0 until the reading is committed; after that it
// is the global, strictly increasing cursor of docs/api.md section 2.
struct reading {
    std::int64_t id = 0;
    std::string sensor;
    std::string metric;
    std::int64_t ts = 0;  // sensor time, epoch milliseconds
    double value = 0.0;
    std::string unit;     // SenML unit name; empty when the sensor sent none
    std::optional<std::int64_t> seq;

    friend bool operator==(const reading&, const reading&) = default;
};

}  // namespace telemetry
