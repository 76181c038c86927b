// Serves the dashboard embedded into the binary (web/): `/` and `/assets/<name>`.
#include "http/assets.hpp"

#include "core/conditional.hpp"
#include "web_assets.hpp"

namespace telemetry::bridge::http {

asset_server::asset_server() {
    for (const auto& f : web::assets()) files_.emplace(std::string(f.name), entry{&f, strong_etag(f.bytes)});
}

answer asset_server::get(const responder& r, const request_info& ri, std::string_view name) const {
    const auto it = files_.find(name);
    if (it == files_.end())
        return r.error(ri, error_code::not_found, "no such dashboard asset: " + std::string(name));
    const web::asset& f = *it->second.file;
    content c;
    c.body.assign(f.bytes);
    c.content_type = f.content_type;
    c.etag = it->second.etag;
    c.last_modified = f.modified;
    c.cache_control = "no-cache";
    c.headers.emplace_back("X-Content-Type-Options", "nosniff");
    return r.ok(ri, std::move(c));
}

}  // namespace telemetry::bridge::http
