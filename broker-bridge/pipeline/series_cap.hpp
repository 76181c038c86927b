// The cap on the number of series (ingest.max_series): readings of known series always pass, a
// new series only while there is room.
//
// Series are created by whoever can publish: without a cap one client publishing ever new sensor
// names (or one SenML pack of many names) grows the series table, its caches and /sensors
// without bound. The set holds every series accepted since start-up (those in storage included),
// so a series retention emptied still counts until the next restart.
//
// With replicas on PostgreSQL the cap is the database's, not each replica's: a replica also
// counts every series the store tailer reads, whichever replica created it. Replicas admitting
// new series at the same moment can together pass the cap by the few each admits before the
// others' reach it.
//
// Thread safety: every member function may be called from any thread (the ingest's receive
// thread admits, the tailer's thread counts what other replicas stored).
#pragma once

#include "reading.hpp"

#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace telemetry::bridge {

class series_cap {
public:
    explicit series_cap(std::size_t max) : max_(max) {}

    // Counts a series as known (stored already), whatever the cap.
    void know(std::string_view sensor, std::string_view metric) {
        std::lock_guard lock(mutex_);
        known_.insert(key(sensor, metric));
    }
    // Counts the series of readings committed (by any replica), whatever the cap.
    void know(const std::vector<reading>& committed) {
        std::lock_guard lock(mutex_);
        for (const auto& r : committed)
            if (!known_.count(key(r.sensor, r.metric))) known_.insert(key_);
    }

    // True for a known series, and for a new one while fewer than the cap are known (it then is).
    // Called for every reading: the key is built in a reused buffer, no allocation for a known one.
    bool admit(std::string_view sensor, std::string_view metric) {
        std::lock_guard lock(mutex_);
        const std::string& k = key(sensor, metric);
        if (known_.count(k)) return true;
        if (known_.size() >= max_) return false;
        known_.insert(k);
        return true;
    }

    std::size_t size() const {
        std::lock_guard lock(mutex_);
        return known_.size();
    }
    std::size_t max() const noexcept { return max_; }

private:
    // Lock held.
    const std::string& key(std::string_view sensor, std::string_view metric) {
        key_.assign(sensor).push_back('/');
        key_.append(metric);
        return key_;
    }

    const std::size_t max_;
    mutable std::mutex mutex_;
    std::string key_;  // scratch for key()
    std::unordered_set<std::string> known_;
};

}  // namespace telemetry::bridge
