// Building HTTP answers: JSON errors, conditional 304s, HEAD, gzip, all through one place.
#include "http/answer.hpp"

#include "core/conditional.hpp"
#include "core/gzip.hpp"
#include "core/metrics.hpp"
#include "core/wire_format.hpp"

namespace telemetry::bridge::http {
namespace {

constexpr std::string_view server_name = "telemetry-broker-bridge";

// On every response: no content sniffing, no Referer leaking a URL, and the CORS answer for an
// allowed cross-origin caller (never `*`: requests carry credentials).
template <typename Response>
void set_security_headers(Response& res, const request_info& ri) {
    res.set("X-Content-Type-Options", "nosniff");
    res.set("Referrer-Policy", "no-referrer");
    if (ri.cors_origin) {
        res.set(bhttp::field::access_control_allow_origin, *ri.cors_origin);
        res.set(bhttp::field::access_control_expose_headers, "ETag, Last-Modified, X-Next-Cursor, Retry-After");
        res.insert(bhttp::field::vary, "Origin");
    }
}

}  // namespace

request_info request_info::of(const request& req) {
    request_info ri;
    ri.version = req.version();
    ri.keep_alive = req.keep_alive();
    ri.head = req.method() == bhttp::verb::head;
    // One walk over the fields (in the order received) rather than a lookup per name: repeated
    // fields are joined with ", " (RFC 9110 5.3).
    std::optional<std::string> accept_encoding;
    const auto join = [](std::optional<std::string>& to, boost::beast::string_view v) {
        if (!to) to.emplace();
        else if (!to->empty()) *to += ", ";
        to->append(v.data(), v.size());
    };
    for (const auto& f : req) {
        switch (f.name()) {
        case bhttp::field::accept_encoding: join(accept_encoding, f.value()); break;
        case bhttp::field::if_none_match: join(ri.if_none_match, f.value()); break;
        case bhttp::field::if_modified_since: join(ri.if_modified_since, f.value()); break;
        default: break;
        }
    }
    if (accept_encoding) ri.gzip_ok = accepts_gzip(*accept_encoding);
    return ri;
}

unsigned error_status(error_code c) noexcept {
    switch (c) {
    case error_code::bad_request: return 400;
    case error_code::bad_parameter: return 400;
    case error_code::unauthorized: return 401;
    case error_code::forbidden: return 403;
    case error_code::not_found: return 404;
    case error_code::method_not_allowed: return 405;
    case error_code::payload_too_large: return 413;
    case error_code::upgrade_required: return 426;
    case error_code::uri_too_long: return 414;
    case error_code::misdirected: return 421;
    case error_code::too_many_requests: return 429;
    case error_code::headers_too_large: return 431;
    case error_code::unavailable: return 503;
    case error_code::not_implemented: return 501;
    case error_code::internal: return 500;
    }
    return 500;
}

std::string_view error_name(error_code c) noexcept {
    switch (c) {
    case error_code::bad_request: return "bad_request";
    case error_code::bad_parameter: return "bad_parameter";
    case error_code::unauthorized: return "unauthorized";
    case error_code::forbidden: return "forbidden";
    case error_code::not_found: return "not_found";
    case error_code::method_not_allowed: return "method_not_allowed";
    case error_code::payload_too_large: return "payload_too_large";
    case error_code::upgrade_required: return "upgrade_required";
    case error_code::uri_too_long: return "uri_too_long";
    case error_code::misdirected: return "misdirected_request";
    case error_code::too_many_requests: return "too_many_requests";
    case error_code::headers_too_large: return "headers_too_large";
    case error_code::unavailable: return "unavailable";
    case error_code::not_implemented: return "not_implemented";
    case error_code::internal: return "internal";
    }
    return "internal";
}

std::string responder::variant_etag(const std::string& etag, bool gzipped) {
    if (!gzipped || etag.size() < 2) return etag;
    std::string v = etag;
    v.insert(v.size() - 1, "-gz");
    return v;
}

answer responder::ok(const request_info& ri, content c) const {
    const bool gz = use_gzip(ri, c.body.size());
    std::vector<std::pair<std::string, std::string>> headers = std::move(c.headers);
    if (!c.etag.empty()) {
        const std::string tag = variant_etag(c.etag, gz);
        if (is_not_modified({ri.if_none_match, ri.if_modified_since}, tag, c.last_modified))
            return not_modified(ri, tag, c.last_modified, c.cache_control);
        headers.emplace_back("ETag", tag);
        headers.emplace_back("Last-Modified", format_http_date(c.last_modified));
    }
    headers.emplace_back("Cache-Control", std::string(c.cache_control));
    headers.emplace_back("Vary", "Accept, Accept-Encoding");
    if (gz) {
        if (auto z = gzip(c.body)) {
            headers.emplace_back("Content-Encoding", "gzip");
            return finish(ri, 200, std::move(*z), c.content_type, headers);
        }
    }
    return finish(ri, 200, std::move(c.body), c.content_type, headers);
}

answer responder::not_modified(const request_info& ri, const std::string& etag,
                               std::time_t last_modified, std::string_view cache_control) const {
    // RFC 9110 15.4.5: a 304 has no body and carries the validators a 200 would have. Built with
    // empty_body: prepare_payload() would add a Content-Length of 0, which is wrong here.
    bhttp::response<bhttp::empty_body> res{bhttp::status::not_modified, ri.version};
    res.set(bhttp::field::server, server_name);
    res.set(bhttp::field::date, http_date_now());
    res.set(bhttp::field::etag, etag);
    res.set(bhttp::field::last_modified, format_http_date(last_modified));
    res.set(bhttp::field::cache_control, cache_control);
    res.set(bhttp::field::vary, "Accept, Accept-Encoding");
    set_security_headers(res, ri);
    res.keep_alive(ri.keep_alive);
    metrics_.count_response(304);
    return {304, bhttp::message_generator(std::move(res))};
}

answer responder::prepared(std::shared_ptr<const std::string> bytes) const {
    metrics_.count_response(304);
    return {304, std::nullopt, std::move(bytes)};
}

answer responder::error(const request_info& ri, error_code code, std::string_view message,
                        std::vector<std::pair<std::string, std::string>> headers) const {
    std::string body = "{\"error\":{\"code\":";
    append_json_string(body, error_name(code));
    body += ",\"message\":";
    append_json_string(body, message);
    body += "}}";
    headers.emplace_back("Cache-Control", "no-store");
    return finish(ri, error_status(code), std::move(body), "application/json", headers);
}

answer responder::finish(const request_info& ri, unsigned status, std::string body,
                         std::string_view content_type,
                         const std::vector<std::pair<std::string, std::string>>& headers) const {
    metrics_.count_response(status);
    const auto set_common = [&](auto& res) {
        res.set(bhttp::field::server, server_name);
        res.set(bhttp::field::date, http_date_now());
        res.set(bhttp::field::content_type, content_type);
        for (const auto& [k, v] : headers) res.insert(k, v);
        set_security_headers(res, ri);
        res.keep_alive(ri.keep_alive);
    };
    if (ri.head) {
        // HEAD: the same header as GET, Content-Length included, and no body.
        bhttp::response<bhttp::empty_body> res{static_cast<bhttp::status>(status), ri.version};
        set_common(res);
        res.content_length(body.size());
        return {status, bhttp::message_generator(std::move(res))};
    }
    bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(status), ri.version};
    set_common(res);
    res.body() = std::move(body);
    res.prepare_payload();
    return {status, bhttp::message_generator(std::move(res))};
}

}  // namespace telemetry::bridge::http
