// Decides the answer to each request and does no I/O: request (+ hub state) -> answer, or the
// storage query / long poll the session must run to get one.
#pragma once

#include "core/config.hpp"
#include "http/answer.hpp"
#include "http/assets.hpp"
#include "core/auth.hpp"
#include "core/bucket_aggregator.hpp"
#include "core/rate_limit.hpp"
#include "core/selector.hpp"
#include "core/topic_filter.hpp"
#include "core/wire_format.hpp"
#include "live/hub.hpp"

#include <boost/url/url_view.hpp>

#include <chrono>
#include <functional>
#include <mutex>
#include <unordered_map>
#include <variant>

namespace telemetry::storage { class reader; }

namespace telemetry::bridge {
class metrics;
}

namespace telemetry::bridge::http {

// What a long poll answers: the readings, and the cursor to poll after next.
struct poll_result {
    std::int64_t cursor = 0;
    std::vector<live_ptr> readings;
    // A bucket poll (bucket=) answers these instead of readings.
    std::optional<std::vector<bucket_event>> buckets;
};

// A query to run on a storage thread; it returns the answer.
struct storage_job {
    std::function<answer(storage::store_reader&)> run;
};

// A long poll to park in the hub (see session).
struct long_poll {
    std::int64_t after = 0;
    std::optional<std::int64_t> epoch_reset;  // the cursor was this id of another epoch (hub::resume_from)
    selector_ptr selector;  // its topic filters within its grant
    std::size_t limit = 1000;
    std::chrono::seconds timeout{30};
    std::optional<bucket_spec> bucket;  // bucket=: answer live aggregates instead of readings
};

// A Server-Sent Events stream: filters, and where to resume (nullopt: start live).
struct stream_request {
    std::optional<std::int64_t> after;
    std::optional<std::int64_t> epoch_reset;  // the cursor was this id of another epoch (hub::resume_from)
    selector_ptr selector;  // its topic filters within its grant
    // policy=conflate: while the client is behind, keep only the newest reading per series and
    // tell it how many were skipped (for dashboards that want the present, not every reading).
    bool conflate = false;
    std::optional<bucket_spec> bucket;  // bucket=: live aggregates instead of readings (4.1)
};

// A WebSocket upgrade on /api/v1/ws (subscriptions arrive as messages).
struct websocket_request {
    grant_ptr access;  // every subscription of the connection is within it
};

using action = std::variant<answer, storage_job, long_poll, stream_request, websocket_request>;

// Thread safety: route() may run concurrently on several I/O threads; the validator cache has its
// own mutex, everything else is the hub's.
class router {
public:
    // `mqtt_ready` and `storage_writable` tell readiness (their owners keep that state).
    router(hub& h, metrics& m, const config& c, const authenticator& auth, std::function<bool()> mqtt_ready,
           std::function<bool()> storage_writable);

    // `peer`: the client's address (rate limits are per address).
    action route(const request& req, std::string_view peer = {});

    // The answer to a long poll, once readings arrived or it timed out.
    // `reset`: retention deleted readings after the client's cursor.
    answer poll_answer(const request_info& ri, const poll_result& r,
                       const std::optional<reset_notice>& reset = {}) const;
    // 503 for a storage queue that is full.
    answer busy(const request_info& ri) const;
    const responder& respond() const noexcept { return responder_; }

private:
    // The grant of the request's bearer token, or the 401 that refuses it. `query_token_in`: the
    // target whose access_token parameter may carry the token (streams), or nullptr.
    std::variant<grant_ptr, answer> authorize(const request_info& ri, const request& req,
                                              const boost::urls::url_view* query_token_in) const;
    bool host_allowed(const request& req) const;
    std::optional<std::string> cross_origin(const request& req) const;  // nullopt: none, or same origin
    bool origin_allowed(const std::string& origin) const;
    answer preflight(const request_info& ri, const request& req, bool origin_refused) const;
    std::optional<answer> over_rate(const request_info& ri, rate_limiter& limit, std::string_view key);
    action sensors(const request_info& ri, const boost::urls::url_view& u, const grant_ptr& g);
    action latest(const request_info& ri, std::string_view sensor, std::string_view metric);
    action readings(const request_info& ri, const request& req, std::string sensor, std::string metric);
    action aggregate(const request_info& ri, const request& req, std::string sensor, std::string metric);
    action updates(const request_info& ri, const request& req, const grant_ptr& g);
    action stream(const request_info& ri, const request& req, const grant_ptr& g);
    // Parses the repeatable `topic` parameter (default `#`) into filters, or an error message.
    std::string parse_filters(const std::vector<std::string>& topics, std::size_t max,
                              std::vector<topic_filter>& out) const;
    answer health(const request_info& ri) const;
    answer ready(const request_info& ri) const;
    answer metrics_page(const request_info& ri, const request& req) const;

    // Validators of stored-query answers, by request target: valid while the series' version is
    // unchanged, so a revalidation is answered 304 without touching storage.
    struct cached_validators {
        series_version version;
        std::string etag;  // of the identity body
        std::size_t body_size = 0;
        std::time_t last_modified = 0;
    };
    std::optional<answer> cached_304(const request_info& ri, const std::string& key,
                                     const series_version& v);
    void remember(const std::string& key, cached_validators v);
    answer stored_answer(const request_info& ri, const std::string& key, const series_version& v,
                         content c);

    hub& hub_;
    metrics& metrics_;
    const config& cfg_;
    const authenticator& auth_;
    rate_limiter per_address_;
    rate_limiter per_token_;
    std::function<bool()> mqtt_ready_;
    std::function<bool()> storage_writable_;
    responder responder_;
    asset_server assets_;

    std::mutex cache_mutex_;
    std::unordered_map<std::string, cached_validators> cache_;
};

}  // namespace telemetry::bridge::http
