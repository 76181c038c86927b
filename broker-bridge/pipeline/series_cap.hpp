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
    // Called for every reading: the key is built in a reused buffer, no allocation for a known one.
    bool admit(std::string_view sensor, std::string_view metric) {
        const std::string& k = key(sensor, metric);
        if (known_.count(k)) return true;
        if (known_.size() >= max_) return false;
        known_.insert(k);
        return true;
    }

    std::size_t size() const noexcept { return known_.size(); }
    std::size_t max() const noexcept { return max_; }

private:
    const std::string& key(std::string_view sensor, std::string_view metric) {
        key_.assign(sensor).push_back('/');
        key_.append(metric);
        return key_;
    }

    std::size_t max_;
    std::string key_;  // scratch for key()
    std::unordered_set<std::string> known_;
};

}  // namespace telemetry::bridge
