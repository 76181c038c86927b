// Which readings and presence events one client may receive: its topic filters. The one object
// that every selection of readings consults (catch-up from the window or storage, and the live
// registry), so a later restriction (a read grant) is added here once, for every transport.
#pragma once

#include "core/topic_filter.hpp"

#include <memory>
#include <string_view>
#include <utility>
#include <vector>

namespace telemetry::bridge {

// Immutable once built; safe to share across threads (held by shared_ptr).
class reading_selector {
public:
    explicit reading_selector(std::vector<topic_filter> filters) : filters_(std::move(filters)) {}

    // A reading whose topic is `topic` (prefix/sensor/metric) is for this client.
    bool selects(std::string_view topic) const noexcept { return matches_any(filters_, topic); }
    // The presence of the sensor whose readings are `sensor_topic/<metric>` is for this client.
    bool selects_sensor(std::string_view sensor_topic) const noexcept {
        for (const auto& f : filters_)
            if (f.matches_child_of(sensor_topic)) return true;
        return false;
    }
    const std::vector<topic_filter>& filters() const noexcept { return filters_; }

private:
    std::vector<topic_filter> filters_;
};
using selector_ptr = std::shared_ptr<const reading_selector>;

}  // namespace telemetry::bridge
