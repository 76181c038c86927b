// The cap on the number of series (ingest.max_series): readings of known series always pass, a
// new series only while there is room.
//
// Series are created by whoever can publish: without a cap one client publishing ever new sensor
// names (or one SenML pack of many names) grows the series table, its caches and /sensors
// without bound. The set holds every series accepted since start-up (those in storage included),
// so a series retention emptied still counts until the next restart.
//
// Thread safety: none; the ingest's receive thread alone uses it.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_set>

namespace telemetry::bridge {

class series_cap {
public:
    explicit series_cap(std::size_t max) : max_(max) {}

    // Counts a series as known (at start-up, from storage), whatever the cap.
    void know(std::string_view sensor, std::string_view metric) { known_.insert(key(sensor, metric)); }

    // True for a known series, and for a new one while fewer than the cap are known (it then is).
    bool admit(std::string_view sensor, std::string_view metric) {
        std::string k = key(sensor, metric);
        if (known_.count(k)) return true;
        if (known_.size() >= max_) return false;
        known_.insert(std::move(k));
        return true;
    }

    std::size_t size() const noexcept { return known_.size(); }
    std::size_t max() const noexcept { return max_; }

private:
    static std::string key(std::string_view sensor, std::string_view metric) {
        std::string k;
        k.reserve(sensor.size() + 1 + metric.size());
        k.append(sensor).push_back('/');
        k.append(metric);
        return k;
    }

    std::size_t max_;
    std::unordered_set<std::string> known_;
};

}  // namespace telemetry::bridge
