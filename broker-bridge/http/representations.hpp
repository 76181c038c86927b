// The HTTP representations of live state (GET .../latest and GET /api/v1/sensors): body, strong
// ETag, Last-Modified and a ready-made 304, built once per change of what they show and cached in
// the series table, so a revalidation costs a lookup and a reference count.
#pragma once

#include "core/auth.hpp"
#include "core/selector.hpp"
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
// A narrower or paged listing of /api/v1/sensors (docs/api.md section 3.3).
struct sensors_page {
    selector_ptr only;       // the series whose topic it selects (its grant included)
    std::string after;       // "sensor/metric": the listing starts after this series
    std::size_t limit = 0;   // 0: no limit; else at most this many, with "next" when more follow
    std::string cache_key;   // the parameters, canonical: part of the cache key
};

// Every series the grant may read (docs/api.md section 3.3), or the page of them asked for.
// Cached per grant (and page), so neither the body nor its ETag tells one grant anything of what
// another sees.
representation_ptr sensors_representation(series_table& t, const grant& g, std::string_view topic_prefix,
                                          const sensors_page* page = nullptr);

}  // namespace telemetry::bridge::http
