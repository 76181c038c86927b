// The HTTP representations of live state (GET .../latest and GET /api/v1/sensors): body, strong
// ETag, Last-Modified and a ready-made 304, built once per change of what they show and cached in
// the series table, so a revalidation costs a lookup and a reference count.
#pragma once

#include "core/auth.hpp"
#include "live/series_table.hpp"

#include <ctime>
#include <memory>
#include <string>
#include <string_view>

namespace telemetry::bridge::http {

// Immutable and shared.
struct representation {
    std::string body;
    std::string etag;
    std::time_t last_modified = 0;
    std::shared_ptr<const std::string> not_modified_http11;  // the whole 304, ready to write
};
using representation_ptr = std::shared_ptr<const representation>;

// The series' latest reading (docs/api.md section 3.4); nullptr for an unknown series.
representation_ptr latest_representation(series_table& t, std::string_view sensor, std::string_view metric);
// Every series the grant may read (docs/api.md section 3.3). Cached per grant, so neither the
// body nor its ETag tells one grant anything of what another sees.
representation_ptr sensors_representation(series_table& t, const grant& g, std::string_view topic_prefix);

}  // namespace telemetry::bridge::http
