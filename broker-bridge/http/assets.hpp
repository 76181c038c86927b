// Serves the dashboard embedded into the binary (web/): `/` and `/assets/<name>`.
#pragma once

#include "http/answer.hpp"

#include <map>
#include <string>
#include <string_view>

namespace telemetry::web { struct asset; }

namespace telemetry::bridge::http {

// Invariant: one entry per embedded file, with the strong tag of its bytes computed once at
// construction. Immutable afterwards, so answer() may run on any number of threads at once.
class asset_server {
public:
    asset_server();

    // 200 with the file (gzipped when the client accepts it and it is large enough), 304 when the
    // request's If-None-Match / If-Modified-Since matches, 404 JSON error for an unknown name.
    // Cache-Control is no-cache: browsers keep a copy but revalidate it, so an upgraded bridge is
    // picked up at the next load while an unchanged one costs a 304.
    answer get(const responder& r, const request_info& ri, std::string_view name) const;

private:
    struct entry {
        const web::asset* file;
        std::string etag;
    };
    std::map<std::string, entry, std::less<>> files_;
};

}  // namespace telemetry::bridge::http
