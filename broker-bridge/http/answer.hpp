// Building HTTP answers: JSON errors, conditional 304s, HEAD, gzip, all through one place.
#pragma once

#include <boost/beast/http.hpp>

#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace telemetry::bridge {
class metrics;
}

namespace telemetry::bridge::http {

namespace bhttp = boost::beast::http;
using request = bhttp::request<bhttp::string_body>;

// What an answer needs to know of its request; copied so that an answer can be built on another
// thread after the request object is gone.
struct request_info {
    unsigned version = 11;
    bool keep_alive = true;
    bool head = false;
    bool gzip_ok = false;
    std::optional<std::string> if_none_match;
    std::optional<std::string> if_modified_since;
    // A cross-origin caller on the allow-list: echoed in Access-Control-Allow-Origin.
    std::optional<std::string> cors_origin;
    static request_info of(const request& req);
};

// A finished answer: the status (for metrics and tests) and the serialisable message.
struct answer {
    unsigned status;
    std::optional<bhttp::message_generator> msg;
    // Or, for the hottest path (a 304 to an HTTP/1.1 keep-alive revalidation), bytes prepared
    // once per representation and written as they are.
    std::shared_ptr<const std::string> raw = {};
    bool keep_alive() const { return msg ? msg->keep_alive() : true; }
};

// Error codes of docs/api.md section 3.9; each maps to one status in error_status().
enum class error_code {
    bad_request,         // 400: malformed request line, headers or percent-encoding
    bad_parameter,       // 400: a query parameter, named in the message
    unauthorized,        // 401: no token, or a bad, expired or tampered one
    forbidden,           // 403: the token's grant covers nothing of what was asked, or a refused origin
    not_found,           // 404
    method_not_allowed,  // 405
    payload_too_large,   // 413
    upgrade_required,    // 426
    uri_too_long,        // 414
    misdirected,         // 421: a Host this bridge does not serve (DNS rebinding)
    too_many_requests,   // 429: over a rate limit, with Retry-After
    headers_too_large,   // 431
    unavailable,         // 503
    not_implemented,     // 501
    internal,            // 500: a bug, never bad input
};
unsigned error_status(error_code c) noexcept;
std::string_view error_name(error_code c) noexcept;

// Options of a successful answer.
struct content {
    std::string body;
    std::string_view content_type = "application/json";
    std::string etag;                           // empty: no validators
    std::time_t last_modified = 0;
    std::string_view cache_control = "no-cache";  // revalidate every time: the data is live
    std::vector<std::pair<std::string, std::string>> headers;
};

class responder {
public:
    responder(metrics& m, std::size_t gzip_min_bytes) : metrics_(m), gzip_min_(gzip_min_bytes) {}

    // 200 with the content, or 304 when the request's conditions match its validators.
    answer ok(const request_info& ri, content c) const;
    // 304 from memory, with the validators the 200 would carry (`etag`: the variant's tag).
    answer not_modified(const request_info& ri, const std::string& etag, std::time_t last_modified,
                        std::string_view cache_control = "no-cache") const;
    // A prepared 304 (see answer::raw), for HTTP/1.1 keep-alive requests only.
    answer prepared(std::shared_ptr<const std::string> bytes) const;
    answer error(const request_info& ri, error_code code, std::string_view message,
                 std::vector<std::pair<std::string, std::string>> headers = {}) const;

    // Whether the representation of `body_size` bytes is sent gzipped to this client, and the
    // entity tag of that variant (a strong tag must differ between content codings).
    bool use_gzip(const request_info& ri, std::size_t body_size) const noexcept {
        return ri.gzip_ok && body_size >= gzip_min_;
    }
    static std::string variant_etag(const std::string& etag, bool gzipped);

private:
    answer finish(const request_info& ri, unsigned status, std::string body,
                  std::string_view content_type,
                  const std::vector<std::pair<std::string, std::string>>& headers) const;

    metrics& metrics_;
    std::size_t gzip_min_;
};

}  // namespace telemetry::bridge::http
