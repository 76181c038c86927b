// Serves the dashboard embedded into the binary (web/): `/` and `/assets/<name>`.
#include "http/assets.hpp"

#include "core/conditional.hpp"
#include "web_assets.hpp"

namespace telemetry::bridge::http {
namespace {

// The dashboard loads only its own files and talks only to this bridge: no inline script or
// style, no other host, no framing (against clickjacking), no <base> or form posting elsewhere.
// Styles set through the CSSOM (uPlot sizes its canvas that way) are not affected.
constexpr std::string_view content_security_policy =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

}  // namespace

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
    c.headers.emplace_back("Content-Security-Policy", content_security_policy);
    return r.ok(ri, std::move(c));
}

}  // namespace telemetry::bridge::http
