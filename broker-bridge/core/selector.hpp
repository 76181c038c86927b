// Which readings and presence events one client may receive: its topic filters, within its read
// grant. The one object that every selection of readings consults (catch-up from the window or
// storage, and the live registry), so a grant is applied in one place for every transport.
#pragma once

#include "core/auth.hpp"
#include "core/topic_filter.hpp"

#include <algorithm>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

namespace telemetry::bridge {

// Immutable once built; safe to share across threads (held by shared_ptr).
class reading_selector {
public:
    explicit reading_selector(std::vector<topic_filter> filters, grant_ptr access = grant::everything())
        : filters_(std::move(filters)), grant_(std::move(access)) {}

    // A reading whose topic is `topic` (prefix/sensor/metric) is for this client.
    bool selects(std::string_view topic) const noexcept { return matches_any(filters_, topic) && grant_->permits(topic); }
    // The grant alone (for callers that already matched the filters, like the registry's index).
    bool permits(std::string_view topic) const noexcept { return grant_->permits(topic); }
    bool unrestricted() const noexcept { return grant_->unrestricted(); }
    // The presence of the sensor whose readings are `sensor_topic/<metric>` is for this client.
    bool selects_sensor(std::string_view sensor_topic) const noexcept {
        if (!grant_->permits_sensor(sensor_topic)) return false;
        return std::any_of(filters_.begin(), filters_.end(),
                           [&](const topic_filter& f) { return f.matches_child_of(sensor_topic); });
    }
    // False when the filters and the grant share no topic: the request can see nothing (403).
    bool can_select_anything() const noexcept {
        return std::any_of(filters_.begin(), filters_.end(), [&](const topic_filter& f) { return grant_->overlaps(f); });
    }
    const std::vector<topic_filter>& filters() const noexcept { return filters_; }
    const grant_ptr& access() const noexcept { return grant_; }

private:
    std::vector<topic_filter> filters_;
    grant_ptr grant_;
};
using selector_ptr = std::shared_ptr<const reading_selector>;

}  // namespace telemetry::bridge
