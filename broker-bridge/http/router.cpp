// Decides the answer to each request and does no I/O: request (+ hub state) -> answer, or the
// storage query / long poll the session must run to get one.
#include "http/router.hpp"

#include "database.hpp"
#include "core/history_limits.hpp"
#include "core/conditional.hpp"
#include "core/cursor.hpp"
#include "http/representations.hpp"
#include "core/metrics.hpp"
#include "core/payload.hpp"
#include "core/wire_format.hpp"
#include "core/text.hpp"

#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include <openssl/crypto.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <map>
#include <set>

namespace telemetry::bridge::http {
namespace {

constexpr std::size_t validator_cache_entries = 4096;

// Query parameters, decoded. Every name must be known; all but the repeatable ones at most once.
// The path's segments, percent-decoded, without one trailing empty segment (a trailing slash is
// tolerated). Views into the request target unless a segment has escapes: the hot paths (a 304 on
// /latest) allocate nothing here. A path longer than any route gets size() = most + 1.
class path_segments {
public:
    static constexpr std::size_t most = 8;
    // `u`: the parsed target; nullptr for a plain path (see plain_path), split here.
    path_segments(std::string_view target, const boost::urls::url_view* u) {
        if (!u) {
            split(target);
            return;
        }
        for (const auto s : u->encoded_segments()) {
            if (n_ == most) {
                ++n_;  // matches no route
                return;
            }
            if (s.decoded_size() == s.size()) {
                views_[n_++] = std::string_view(s.data(), s.size());
            } else {
                decoded_[n_] = s.decode();
                views_[n_] = decoded_[n_];
                ++n_;
            }
        }
        if (n_ > 0 && views_[n_ - 1].empty()) --n_;
    }
    path_segments(const path_segments&) = delete;  // views_ may point into decoded_
    path_segments& operator=(const path_segments&) = delete;
    std::size_t size() const noexcept { return n_; }
    bool empty() const noexcept { return n_ == 0; }
    std::string_view operator[](std::size_t i) const noexcept { return views_[i]; }

private:
    void split(std::string_view target) {
        std::string_view rest = target.substr(1);
        if (rest.empty()) return;  // "/": no segment, as Boost.URL has it
        while (true) {
            if (n_ == most) {
                ++n_;
                return;
            }
            const auto slash = rest.find('/');
            views_[n_++] = rest.substr(0, slash);
            if (slash == std::string_view::npos) break;
            rest.remove_prefix(slash + 1);
        }
        if (views_[n_ - 1].empty()) --n_;
    }

    std::array<std::string_view, most> views_{};
    std::array<std::string, most> decoded_{};
    std::size_t n_ = 0;
};

// A target that is only a path of unreserved characters, sub-delimiters, ':', '@' and single
// slashes, with no escapes and no query: valid origin-form as it is (RFC 9112 3.2.1), and its
// segments are what splitting at '/' gives. The hot revalidation of /latest is one, and is routed
// without Boost.URL's parse; anything else is parsed by it.
bool plain_path(std::string_view target) noexcept {
    if (target.empty() || target.front() != '/') return false;
    char prev = 0;
    for (const char c : target) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                        std::string_view("-._~!$&'()*+,;=:@").find(c) != std::string_view::npos ||
                        (c == '/' && prev != '/');
        if (!ok) return false;
        prev = c;
    }
    return true;
}

class params {
public:
    // Returns an error message naming the parameter, or empty on success.
    std::string parse(const boost::urls::url_view& u, const std::set<std::string_view>& known,
                      const std::set<std::string_view>& repeatable = {}) {
        for (const auto& p : u.params()) {
            if (!known.count(p.key)) return "unknown query parameter '" + p.key + "'";
            if (!repeatable.count(p.key) && values_.count(p.key))
                return "query parameter '" + p.key + "' is given more than once";
            values_[p.key].push_back(p.value);
        }
        return {};
    }
    const std::string* get(const std::string& k) const {
        auto it = values_.find(k);
        return it == values_.end() ? nullptr : &it->second.front();
    }
    std::vector<std::string> all(const std::string& k) const {
        auto it = values_.find(k);
        return it == values_.end() ? std::vector<std::string>{} : it->second;
    }

private:
    std::map<std::string, std::vector<std::string>, std::less<>> values_;
};

// `bucket` and `provisional` of a live subscription (docs/api.md section 4.1); an error or "".
std::string parse_live_bucket(const params& p, std::optional<bucket_spec>& out) {
    const auto* b = p.get("bucket");
    const auto* prov = p.get("provisional");
    if (!b) return prov ? "provisional needs bucket" : "";
    const auto w = live_bucket_width(*b);
    if (!w) return std::string(live_bucket_error);
    bucket_spec spec;
    spec.width_ms = *w;
    if (prov) {
        if (*prov != "true" && *prov != "false") return "provisional must be true or false";
        spec.provisional = *prov == "true";
    }
    out = spec;
    return {};
}

// `from` and `to` (RFC 3339 or epoch milliseconds) into the given bounds; an error message or "".
std::string parse_range(const params& p, std::int64_t& from, std::int64_t& to) {
    for (const auto& [name, bound] : {std::pair<const char*, std::int64_t*>{"from", &from}, {"to", &to}}) {
        if (const auto* s = p.get(name)) {
            auto t = parse_time(*s);
            if (!t) return std::string(name) + " must be an RFC 3339 time or epoch milliseconds";
            *bound = *t;
        }
    }
    return {};
}

std::optional<std::int64_t> to_int(std::string_view s) {
    std::int64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
    return v;
}



// The token of an `Authorization: Bearer <token>` header; empty without one.
std::string_view bearer_token(const request& req) {
    auto it = req.find(bhttp::field::authorization);
    if (it == req.end()) return {};
    const std::string_view v(it->value().data(), it->value().size());
    return v.size() > 7 && boost::beast::iequals(v.substr(0, 7), "Bearer ") ? v.substr(7) : std::string_view{};
}

// What is wrong with a WebSocket upgrade request (one is_upgrade() accepts) that Beast's accept
// would refuse, and whether it is the version (RFC 6455 4.2.1, 4.4); nullopt when it is fine.
std::optional<std::pair<std::string, bool>> websocket_handshake_error(const request& req) {
    // Sec-WebSocket-Key: base64 of 16 bytes, so 22 base64 characters and "==".
    const auto keys = req.equal_range(bhttp::field::sec_websocket_key);
    if (keys.first == keys.second) return std::pair{std::string("the Sec-WebSocket-Key header is missing"), false};
    if (std::next(keys.first) != keys.second)
        return std::pair{std::string("Sec-WebSocket-Key is given more than once"), false};
    const std::string_view key(keys.first->value().data(), keys.first->value().size());
    const auto base64 = [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
    };
    if (key.size() != 24 || key.substr(22) != "==" || !std::all_of(key.begin(), key.begin() + 22, base64))
        return std::pair{std::string("Sec-WebSocket-Key must be 16 bytes in base64 (24 characters)"), false};
    const auto versions = req.equal_range(bhttp::field::sec_websocket_version);
    if (versions.first == versions.second || std::next(versions.first) != versions.second ||
        versions.first->value() != "13")
        return std::pair{std::string("Sec-WebSocket-Version must be 13"), true};
    return std::nullopt;
}

bool wants_csv(const request& req) {
    auto it = req.find(bhttp::field::accept);
    if (it == req.end()) return false;
    const std::string_view v(it->value().data(), it->value().size());
    return v.find("text/csv") != std::string_view::npos &&
           v.find("application/json") == std::string_view::npos;
}

}  // namespace

router::router(hub& h, metrics& m, const config& c, const authenticator& auth, std::function<bool()> mqtt_ready,
               std::function<bool()> storage_writable)
    : hub_(h), metrics_(m), cfg_(c), auth_(auth),
      per_address_(c.http.rate_limit_per_s, c.http.rate_limit_burst),
      per_token_(c.auth.rate_limit_per_s, c.auth.rate_limit_burst), mqtt_ready_(std::move(mqtt_ready)),
      storage_writable_(std::move(storage_writable)),
      responder_(m, c.http.gzip_min_bytes) {}

action router::route(const request& req, std::string_view peer) {
    request_info ri = request_info::of(req);
    if (!host_allowed(req))
        return responder_.error(ri, error_code::misdirected, "this bridge does not serve that Host");
    // Cross-origin callers: an allowed one gets CORS headers; a refused one gets none (its
    // browser then keeps the answer from it) and may not open streams at all (below).
    const auto origin = cross_origin(req);
    const bool origin_refused = origin && !origin_allowed(*origin);
    if (origin && !origin_refused) ri.cors_origin = *origin;
    if (req.method() == bhttp::verb::options) return preflight(ri, req, origin_refused);
    if (req.method() != bhttp::verb::get && req.method() != bhttp::verb::head)
        return responder_.error(ri, error_code::method_not_allowed,
                                "only GET and HEAD are supported here", {{"Allow", "GET, HEAD, OPTIONS"}});

    const std::string_view target(req.target().data(), req.target().size());
    // Parsed up front unless it is a plain path (which always parses): then only when asked for.
    const bool plain = plain_path(target);
    std::optional<boost::urls::url_view> parsed;
    if (!plain) {
        auto p = boost::urls::parse_origin_form(target);
        if (!p)
            return responder_.error(ri, error_code::bad_request,
                                    "the request target is not a valid URL path and query");
        parsed = *p;
    }
    const auto url = [&]() -> const boost::urls::url_view& {
        if (!parsed) parsed = *boost::urls::parse_origin_form(target);
        return *parsed;
    };

    const path_segments seg(target, plain ? nullptr : &*parsed);

    const auto no_params = [&]() -> std::optional<answer> {
        if (plain) return std::nullopt;  // no '?'
        const auto& u = url();
        if (u.has_query() && !u.params().empty())
            return responder_.error(ri, error_code::bad_parameter,
                                    "this path takes no query parameters");
        return std::nullopt;
    };

    // Open to anyone: the dashboard (it asks for a token itself), liveness and readiness.
    // `/` ignores its query: the page reads it (e.g. ?transport=sse).
    if (seg.empty()) return assets_.get(responder_, ri, "index.html");
    if (seg.size() == 2 && seg[0] == "assets") return assets_.get(responder_, ri, seg[1]);
    if (seg.size() == 1 && seg[0] == "healthz") return health(ri);
    if (seg.size() == 1 && seg[0] == "readyz") return ready(ri);
    // Probes above are never limited: a load balancer must always learn the truth.
    if (auto limited = over_rate(ri, per_address_, peer)) return std::move(*limited);
    if (seg.size() == 1 && seg[0] == "metrics") return metrics_page(ri, req);
    if (seg.size() < 2 || seg[0] != "api" || seg[1] != "v1")
        return responder_.error(ri, error_code::not_found, "no such path: " + std::string(url().path()));

    // Everything under /api/v1 needs a grant. Streams may carry the token in the query: browsers'
    // EventSource and WebSocket cannot set headers.
    const bool streaming = seg.size() == 3 && (seg[2] == "stream" || seg[2] == "ws");
    if (streaming && origin_refused)
        return responder_.error(ri, error_code::forbidden, "streams are not served to this Origin");
    auto who = authorize(ri, req, streaming ? &url() : nullptr);
    if (auto* refused = std::get_if<answer>(&who)) return std::move(*refused);
    const grant_ptr g = std::get<grant_ptr>(std::move(who));
    if (per_token_.enabled() && auth_.enabled()) {
        // Keyed by the grant's holder: the subject and topics (a token's text is never kept).
        if (auto limited = over_rate(ri, per_token_, g->subject() + "\n" + g->key())) return std::move(*limited);
    }

    if (seg.size() == 3 && seg[2] == "sensors") return sensors(ri, url(), g);
    if (seg.size() == 6 && seg[2] == "sensors") {
        if (!valid_name(seg[3]) || !valid_name(seg[4]))
            return responder_.error(ri, error_code::not_found,
                                    "sensor and metric names are [A-Za-z0-9_.-]{1,64}");
        if (!g->unrestricted()) {
            std::string topic;
            assign_topic(topic, hub_.topic_prefix(), seg[3], seg[4]);
            if (!g->permits(topic))
                return responder_.error(ri, error_code::forbidden, "the token does not grant reading this series");
        }
        if (seg[5] == "latest") {
            if (auto e = no_params()) return std::move(*e);
            return latest(ri, seg[3], seg[4]);
        }
        if (seg[5] == "readings") return readings(ri, req, std::string(seg[3]), std::string(seg[4]));
        if (seg[5] == "aggregate") return aggregate(ri, req, std::string(seg[3]), std::string(seg[4]));
    }
    if (seg.size() == 3 && seg[2] == "updates") return updates(ri, req, g);
    if (seg.size() == 3 && seg[2] == "stream") return stream(ri, req, g);
    if (seg.size() == 3 && seg[2] == "ws") {
        for (const auto& p : url().params())
            if (p.key != "access_token")
                return responder_.error(ri, error_code::bad_parameter, "unknown query parameter '" + p.key + "'");
        if (!boost::beast::websocket::is_upgrade(req))
            return responder_.error(ri, error_code::upgrade_required,
                                    "this path speaks WebSocket: send an Upgrade request",
                                    {{"Upgrade", "websocket"}, {"Connection", "Upgrade"}});
        // The rest of the opening handshake is checked here, so that a bad one gets the API's
        // error rather than Beast's plain text; the connection then closes.
        if (auto why = websocket_handshake_error(req)) {
            request_info closing = ri;
            closing.keep_alive = false;
            std::vector<std::pair<std::string, std::string>> headers;
            if (why->second) headers.emplace_back("Sec-WebSocket-Version", "13");  // RFC 6455 4.4
            return responder_.error(closing, error_code::bad_request, why->first, std::move(headers));
        }
        return websocket_request{g};
    }
    return responder_.error(ri, error_code::not_found, "no such path: " + std::string(url().path()));
}

std::optional<answer> router::over_rate(const request_info& ri, rate_limiter& limit, std::string_view key) {
    if (!limit.enabled()) return std::nullopt;
    const auto wait = limit.take(key, rate_limiter::clock::now());
    if (!wait) return std::nullopt;
    metrics_.rate_limited.fetch_add(1, std::memory_order_relaxed);
    return responder_.error(ri, error_code::too_many_requests, "too many requests; retry after the given seconds",
                            {{"Retry-After", std::to_string(wait->count())}});
}

std::variant<grant_ptr, answer> router::authorize(const request_info& ri, const request& req,
                                                  const boost::urls::url_view* query_token_in) const {
    std::string token(bearer_token(req));
    if (token.empty() && query_token_in)
        if (auto it = query_token_in->params().find("access_token"); it != query_token_in->params().end())
            token = (*it).value;
    auto r = auth_.authenticate(token, std::time(nullptr));
    if (auto* g = std::get_if<grant_ptr>(&r)) return std::move(*g);
    const auth_failure why = std::get<auth_failure>(r);
    metrics_.auth_failures.fetch_add(1, std::memory_order_relaxed);
    // RFC 6750 section 3: no token, no error attribute; a bad one says invalid_token.
    std::string challenge = "Bearer realm=\"telemetry\"";
    if (why != auth_failure::missing) {
        challenge += ", error=\"invalid_token\", error_description=\"";
        challenge += describe(why);
        challenge += '"';
    }
    return responder_.error(ri, error_code::unauthorized, describe(why), {{"WWW-Authenticate", challenge}});
}

bool router::host_allowed(const request& req) const {
    auto it = req.find(bhttp::field::host);
    if (it == req.end()) return req.version() < 11;  // HTTP/1.1 requires Host (RFC 9112 3.2)
    std::string_view host(it->value().data(), it->value().size());
    // Without the port: "name:8080", "[::1]:8080".
    if (!host.empty() && host.front() == '[') host = host.substr(0, host.find(']') + 1);
    else if (auto colon = host.rfind(':'); colon != std::string_view::npos) host = host.substr(0, colon);
    const auto& allowed = cfg_.http.allowed_hosts;
    if (!allowed.empty())
        return std::any_of(allowed.begin(), allowed.end(), [&](const std::string& a) { return boost::beast::iequals(a, host); });
    // Listening on loopback: only loopback names, so a DNS name rebound to 127.0.0.1 by a web
    // page reaches nothing.
    if (!is_loopback_host(cfg_.http.host)) return true;
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    return boost::beast::iequals(host, "localhost") || is_loopback_host(host);
}

std::optional<std::string> router::cross_origin(const request& req) const {
    auto it = req.find(bhttp::field::origin);
    if (it == req.end()) return std::nullopt;
    const std::string_view origin(it->value().data(), it->value().size());
    if (auto h = req.find(bhttp::field::host); h != req.end()) {
        const std::string_view host(h->value().data(), h->value().size());
        for (std::string_view scheme : {"http://", "https://"})
            if (origin.size() == scheme.size() + host.size() && origin.substr(0, scheme.size()) == scheme &&
                boost::beast::iequals(origin.substr(scheme.size()), host))
                return std::nullopt;  // same origin
    }
    return std::string(origin);
}

bool router::origin_allowed(const std::string& origin) const {
    const auto& allowed = cfg_.http.allowed_origins;
    return std::find(allowed.begin(), allowed.end(), origin) != allowed.end();
}

// A CORS preflight (RFC 9110 OPTIONS, Fetch standard): what an allowed origin may send.
answer router::preflight(const request_info& ri, const request& req, bool origin_refused) const {
    if (origin_refused || !ri.cors_origin) {
        if (!req.count(bhttp::field::origin)) {
            content c;
            c.cache_control = "no-store";
            c.headers.emplace_back("Allow", "GET, HEAD, OPTIONS");
            return responder_.ok(ri, std::move(c));
        }
        return responder_.error(ri, error_code::forbidden, "this Origin is not allowed");
    }
    content c;
    c.cache_control = "no-store";
    c.headers.emplace_back("Access-Control-Allow-Methods", "GET, HEAD");
    c.headers.emplace_back("Access-Control-Allow-Headers",
                           "Authorization, If-None-Match, If-Modified-Since, Last-Event-ID, Accept");
    c.headers.emplace_back("Access-Control-Max-Age", "600");
    return responder_.ok(ri, std::move(c));
}

answer router::health(const request_info& ri) const {
    content c;
    c.body = "{\"status\":\"ok\"}";
    c.cache_control = "no-store";
    return responder_.ok(ri, std::move(c));
}

answer router::ready(const request_info& ri) const {
    const bool mqtt = mqtt_ready_();
    const bool storage = storage_writable_();
    std::string body = "{\"ready\":";
    body += (mqtt && storage) ? "true" : "false";
    body += ",\"mqtt_subscribed\":";
    body += mqtt ? "true" : "false";
    body += ",\"storage_writable\":";
    body += storage ? "true" : "false";
    body += "}";
    if (mqtt && storage) {
        content c;
        c.body = std::move(body);
        c.cache_control = "no-store";
        return responder_.ok(ri, std::move(c));
    }
    return responder_.error(ri, error_code::unavailable,
                            std::string("not ready: ") + (mqtt ? "" : "MQTT not subscribed ") +
                                (storage ? "" : "storage not writable"),
                            {{"Retry-After", "1"}});
}

answer router::metrics_page(const request_info& ri, const request& req) const {
    if (const auto& want = cfg_.auth.metrics_token; !want.empty()) {
        const std::string_view got = bearer_token(req);
        if (got.size() != want.size() || CRYPTO_memcmp(got.data(), want.data(), want.size()) != 0)
            return responder_.error(ri, error_code::unauthorized, "GET /metrics requires the metrics token",
                                    {{"WWW-Authenticate", "Bearer realm=\"telemetry-metrics\""}});
    }
    content c;
    c.body = metrics_.render({hub_.parked(), hub_.series_count(), hub_.newest_id(), storage_writable_()});
    c.content_type = "text/plain; version=0.0.4; charset=utf-8";
    c.cache_control = "no-store";
    return responder_.ok(ri, std::move(c));
}

action router::sensors(const request_info& ri, const boost::urls::url_view& u, const grant_ptr& g) {
    params p;
    if (auto e = p.parse(u, {"topic", "limit", "after"}, {"topic"}); !e.empty())
        return responder_.error(ri, error_code::bad_parameter, e);
    std::optional<sensors_page> page;
    if (!p.all("topic").empty() || p.get("limit") || p.get("after")) {
        page.emplace();
        std::vector<topic_filter> filters;
        if (auto e = parse_filters(p.all("topic"), cfg_.stream.max_filters, filters); !e.empty())
            return responder_.error(ri, error_code::bad_parameter, e);
        for (const auto& t : p.all("topic")) page->cache_key += "topic=" + t + '\n';
        page->only = std::make_shared<const reading_selector>(std::move(filters), g);
        if (!page->only->can_select_anything())
            return responder_.error(ri, error_code::forbidden, "the token grants none of these topics");
        if (auto s = p.get("limit")) {
            auto n = to_int(*s);
            if (!n || *n < 1 || *n > static_cast<std::int64_t>(max_history_limit))
                return responder_.error(ri, error_code::bad_parameter, "limit must be an integer from 1 to 10000");
            page->limit = static_cast<std::size_t>(*n);
        }
        if (auto s = p.get("after")) {
            const auto slash = s->find('/');
            if (slash == std::string::npos || !valid_name(s->substr(0, slash)) || !valid_name(s->substr(slash + 1)))
                return responder_.error(ri, error_code::bad_parameter, "after must be a series as sensor/metric (the \"next\" of the previous page)");
            page->after = std::string(*s);
        }
        page->cache_key += "limit=" + std::to_string(page->limit) + "\nafter=" + page->after;
    }
    const auto rep = sensors_representation(hub_.series(), *g, hub_.topic_prefix(), page ? &*page : nullptr);
    content c;
    c.body = rep->body;
    c.etag = rep->etag;
    c.last_modified = rep->last_modified;
    return responder_.ok(ri, std::move(c));
}

action router::latest(const request_info& ri, std::string_view sensor, std::string_view metric) {
    auto rep = latest_representation(hub_.series(), sensor, metric);
    if (!rep)
        return responder_.error(ri, error_code::not_found,
                                "unknown series " + std::string(sensor) + "/" + std::string(metric));
    // The common revalidation is answered before any body is copied.
    if ((ri.if_none_match || ri.if_modified_since) &&
        is_not_modified({ri.if_none_match, ri.if_modified_since}, rep->etag, rep->last_modified)) {
        if (ri.version == 11 && ri.keep_alive && rep->not_modified_http11)
            return responder_.prepared(rep->not_modified_http11);
        return responder_.not_modified(ri, rep->etag, rep->last_modified);
    }
    content c;
    c.body = rep->body;
    c.etag = rep->etag;
    c.last_modified = rep->last_modified;
    return responder_.ok(ri, std::move(c));
}

std::optional<answer> router::cached_304(const request_info& ri, const std::string& key,
                                         const series_version& v) {
    if (!ri.if_none_match && !ri.if_modified_since) return std::nullopt;
    std::lock_guard lock(cache_mutex_);
    auto it = cache_.find(key);
    if (it == cache_.end() || !(it->second.version == v)) return std::nullopt;
    const std::string tag =
        responder::variant_etag(it->second.etag, responder_.use_gzip(ri, it->second.body_size));
    if (!is_not_modified({ri.if_none_match, ri.if_modified_since}, tag, it->second.last_modified))
        return std::nullopt;
    return responder_.not_modified(ri, tag, it->second.last_modified);
}

void router::remember(const std::string& key, cached_validators v) {
    std::lock_guard lock(cache_mutex_);
    if (cache_.size() >= validator_cache_entries && !cache_.count(key)) cache_.clear();
    cache_.insert_or_assign(key, std::move(v));
}

answer router::stored_answer(const request_info& ri, const std::string& key,
                             const series_version& v, content c) {
    c.etag = strong_etag(c.body);
    c.last_modified = v.changed_at;
    remember(key, {v, c.etag, c.body.size(), c.last_modified});
    return responder_.ok(ri, std::move(c));
}

action router::readings(const request_info& ri, const request& req, std::string sensor,
                        std::string metric) {
    const std::string_view target(req.target().data(), req.target().size());
    const auto u = *boost::urls::parse_origin_form(target);
    params p;
    if (auto e = p.parse(u, {"from", "to", "limit", "order", "cursor", "format"}); !e.empty())
        return responder_.error(ri, error_code::bad_parameter, e);

    storage::history_query q;
    q.sensor = sensor;
    q.metric = metric;
    if (auto e = parse_range(p, q.from, q.to); !e.empty())
        return responder_.error(ri, error_code::bad_parameter, e);
    if (auto s = p.get("limit")) {
        auto n = to_int(*s);
        if (!n || *n < 1 || *n > static_cast<std::int64_t>(max_history_limit))
            return responder_.error(ri, error_code::bad_parameter, "limit must be an integer from 1 to 10000");
        q.limit = static_cast<std::size_t>(*n);
    }
    if (auto s = p.get("order")) {
        if (*s != "asc" && *s != "desc")
            return responder_.error(ri, error_code::bad_parameter, "order must be asc or desc");
        q.descending = *s == "desc";
    }
    if (auto s = p.get("cursor")) q.cursor = *s;
    bool csv = wants_csv(req);
    if (auto s = p.get("format")) {
        if (*s != "json" && *s != "csv")
            return responder_.error(ri, error_code::bad_parameter, "format must be json or csv");
        csv = *s == "csv";
    }

    const auto v = hub_.series().version(sensor, metric);
    if (!v) return responder_.error(ri, error_code::not_found, "unknown series " + sensor + "/" + metric);
    std::string key = std::string(target) + (csv ? "\ncsv" : "\njson");
    if (auto a = cached_304(ri, key, *v)) return std::move(*a);

    return storage_job{[this, ri, q = std::move(q), csv, key = std::move(key), v = *v](storage::store_reader& r) {
        storage::history_page page;
        try {
            page = r.history(q);
        } catch (const std::invalid_argument&) {
            return responder_.error(ri, error_code::bad_parameter,
                                    "cursor is not one this server gave for this query");
        }
        content c;
        if (csv) {
            c.content_type = "text/csv; charset=utf-8";
            c.body = csv_header;
            for (const auto& rd : page.readings) append_csv_row(c.body, rd);
            if (page.next) c.headers.emplace_back("X-Next-Cursor", *page.next);
        } else {
            c.body = "{\"readings\":[";
            for (std::size_t i = 0; i < page.readings.size(); ++i) {
                if (i) c.body += ',';
                append_reading_json(c.body, page.readings[i]);
            }
            c.body += "],\"next\":";
            if (page.next) append_json_string(c.body, *page.next); else c.body += "null";
            c.body += '}';
        }
        return stored_answer(ri, key, v, std::move(c));
    }};
}

action router::aggregate(const request_info& ri, const request& req, std::string sensor,
                         std::string metric) {
    const std::string_view target(req.target().data(), req.target().size());
    const auto u = *boost::urls::parse_origin_form(target);
    params p;
    if (auto e = p.parse(u, {"from", "to", "bucket"}); !e.empty())
        return responder_.error(ri, error_code::bad_parameter, e);
    storage::aggregate_query q;
    q.sensor = sensor;
    q.metric = metric;
    if (auto e = parse_range(p, q.from, q.to); !e.empty())
        return responder_.error(ri, error_code::bad_parameter, e);
    if (auto s = p.get("bucket")) {
        auto b = parse_duration_ms(*s);
        if (!b) return responder_.error(ri, error_code::bad_parameter, "bucket must be a duration such as 500ms, 10s, 1m, 1h or 1d");
        q.bucket_ms = *b;
    }
    // Presence, not value: an explicit from=-9223372036854775808 is a bound like any other.
    const bool has_from = p.get("from") != nullptr;
    const bool has_to = p.get("to") != nullptr;
    if (has_from && has_to) {
        if (q.to <= q.from) return responder_.error(ri, error_code::bad_parameter, "to must be later than from");
        if (bucket_count(q.from, q.to, q.bucket_ms) > max_buckets)
            return responder_.error(ri, error_code::bad_parameter, too_many_buckets);
    }
    const auto v = hub_.series().version(sensor, metric);
    if (!v) return responder_.error(ri, error_code::not_found, "unknown series " + sensor + "/" + metric);
    std::string key(target);
    if (auto a = cached_304(ri, key, *v)) return std::move(*a);

    return storage_job{[this, ri, q = std::move(q), key = std::move(key), v = *v, has_from,
                        has_to](storage::store_reader& r) {
        if (!has_from || !has_to) {
            // A missing bound is the series' first reading, or just after its last: the limit
            // holds for that effective range, before the query runs.
            if (const auto span = r.ts_span(q.sensor, q.metric);
                span && bucket_count_within(*span, has_from ? std::optional(q.from) : std::nullopt,
                                            has_to ? std::optional(q.to) : std::nullopt, q.bucket_ms) > max_buckets)
                return responder_.error(ri, error_code::bad_parameter, too_many_buckets);
        }
        const auto buckets = r.aggregate(q);
        if (buckets.size() > max_buckets)  // cannot happen after the checks above; kept as a guard
            return responder_.error(ri, error_code::bad_parameter, too_many_buckets);
        content c;
        c.body = "{\"bucket_ms\":";
        append_int(c.body, q.bucket_ms);
        c.body += ",\"buckets\":[";
        for (std::size_t i = 0; i < buckets.size(); ++i) {
            const auto& b = buckets[i];
            if (i) c.body += ',';
            c.body += "{\"t\":";
            append_int(c.body, b.t);
            c.body += ",\"count\":";
            append_int(c.body, b.count);
            c.body += ",\"min\":";
            append_double(c.body, b.min);
            c.body += ",\"max\":";
            append_double(c.body, b.max);
            c.body += ",\"avg\":";
            append_double(c.body, b.avg);
            c.body += '}';
        }
        c.body += "]}";
        return stored_answer(ri, key, v, std::move(c));
    }};
}

action router::updates(const request_info& ri, const request& req, const grant_ptr& g) {
    const std::string_view target(req.target().data(), req.target().size());
    const auto u = *boost::urls::parse_origin_form(target);
    params p;
    if (auto e = p.parse(u, {"after", "topic", "timeout", "limit", "bucket", "provisional"}, {"topic"}); !e.empty())
        return responder_.error(ri, error_code::bad_parameter, e);
    long_poll lp;
    if (auto e = parse_live_bucket(p, lp.bucket); !e.empty()) return responder_.error(ri, error_code::bad_parameter, e);
    lp.timeout = cfg_.http.longpoll_default;
    if (auto s = p.get("after")) {
        const auto c = parse_cursor(*s);
        if (!c) return responder_.error(ri, error_code::bad_parameter, "after must be a cursor (a previous answer's cursor, or a reading id)");
        const auto at = hub_.resume_from(*c);
        lp.after = at.after;
        lp.epoch_reset = at.epoch_reset;
    } else {
        lp.after = hub_.newest_id();
    }
    if (auto s = p.get("timeout")) {
        auto n = to_int(*s);
        if (!n || *n < 0 || *n > cfg_.http.longpoll_max.count())
            return responder_.error(ri, error_code::bad_parameter,
                                    "timeout must be whole seconds from 0 to " + std::to_string(cfg_.http.longpoll_max.count()));
        lp.timeout = std::chrono::seconds(*n);
    }
    if (auto s = p.get("limit")) {
        auto n = to_int(*s);
        if (!n || *n < 1 || *n > static_cast<std::int64_t>(max_history_limit))
            return responder_.error(ri, error_code::bad_parameter, "limit must be an integer from 1 to 10000");
        lp.limit = static_cast<std::size_t>(*n);
    }
    std::vector<topic_filter> filters;
    if (auto e = parse_filters(p.all("topic"), cfg_.http.longpoll_max_filters, filters); !e.empty())
        return responder_.error(ri, error_code::bad_parameter, e);
    lp.selector = std::make_shared<const reading_selector>(std::move(filters), g);
    if (!lp.selector->can_select_anything())
        return responder_.error(ri, error_code::forbidden, "the token grants none of these topics");
    return lp;
}

std::string router::parse_filters(const std::vector<std::string>& given, std::size_t max,
                                  std::vector<topic_filter>& out) const {
    return parse_client_filters(given, max, cfg_.stream.max_filter_bytes, cfg_.stream.max_filter_levels, out);
}

action router::stream(const request_info& ri, const request& req, const grant_ptr& g) {
    const std::string_view target(req.target().data(), req.target().size());
    const auto u = *boost::urls::parse_origin_form(target);
    params p;
    if (auto e = p.parse(u, {"after", "topic", "policy", "access_token", "bucket", "provisional"}, {"topic"}); !e.empty())
        return responder_.error(ri, error_code::bad_parameter, e);
    stream_request s;
    if (auto pol = p.get("policy")) {
        if (*pol != "all" && *pol != "conflate")
            return responder_.error(ri, error_code::bad_parameter, "policy must be all or conflate");
        s.conflate = *pol == "conflate";
    }
    if (auto e = parse_live_bucket(p, s.bucket); !e.empty()) return responder_.error(ri, error_code::bad_parameter, e);
    // A bucket stream holds one bucket per series already; conflating its events would drop values.
    if (s.bucket && s.conflate) return responder_.error(ri, error_code::bad_parameter, "policy=conflate cannot be combined with bucket");
    // A browser reconnecting sends Last-Event-ID; it wins over the `after` of the original URL.
    std::optional<std::string> resume;
    if (auto it = req.find("Last-Event-ID"); it != req.end()) resume = std::string(it->value());
    else if (auto a = p.get("after")) resume = *a;
    if (resume && !resume->empty()) {
        const auto c = parse_cursor(*resume);
        if (!c)
            return responder_.error(ri, error_code::bad_parameter,
                                    "after (or Last-Event-ID) must be a cursor (an event's id, or a reading id)");
        const auto at = hub_.resume_from(*c);
        s.after = at.after;
        s.epoch_reset = at.epoch_reset;
    }
    std::vector<topic_filter> filters;
    if (auto e = parse_filters(p.all("topic"), cfg_.stream.max_filters, filters); !e.empty())
        return responder_.error(ri, error_code::bad_parameter, e);
    s.selector = std::make_shared<const reading_selector>(std::move(filters), g);
    if (!s.selector->can_select_anything())
        return responder_.error(ri, error_code::forbidden, "the token grants none of these topics");
    if (ri.head) {
        content c;
        c.content_type = "text/event-stream; charset=utf-8";
        c.cache_control = "no-store";
        return responder_.ok(ri, std::move(c));
    }
    return s;
}

answer router::poll_answer(const request_info& ri, const poll_result& r,
                           const std::optional<reset_notice>& reset) const {
    content c;
    c.body = "{\"cursor\":\"";
    append_cursor(c.body, r.cursor, hub_.at_epoch());
    c.body += '"';
    if (reset) {
        // The same reset the streams send, as a field: the readings that follow start at the
        // oldest one retention kept.
        c.body += ",\"reset\":";
        append_reset_json(c.body, *reset);
    }
    if (r.buckets) {
        c.body += ",\"buckets\":[";
        for (std::size_t i = 0; i < r.buckets->size(); ++i) {
            if (i) c.body += ',';
            append_bucket_json(c.body, (*r.buckets)[i]);
        }
    } else {
        c.body += ",\"readings\":[";
        for (std::size_t i = 0; i < r.readings.size(); ++i) {
            if (i) c.body += ',';
            c.body += r.readings[i]->json;
        }
    }
    c.body += "]}";
    c.cache_control = "no-store";
    return responder_.ok(ri, std::move(c));
}

answer router::busy(const request_info& ri) const {
    metrics_.query_jobs_rejected.fetch_add(1, std::memory_order_relaxed);
    return responder_.error(ri, error_code::unavailable, "too many queries in progress; retry shortly",
                            {{"Retry-After", "1"}});
}

}  // namespace telemetry::bridge::http
