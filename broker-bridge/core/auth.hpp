// Authentication and read grants (docs/api.md section 8): a bearer token -> the topic filters its
// holder may read, or the reason it is refused. Pure: no I/O; the clock is passed in.
#pragma once

#include "core/topic_filter.hpp"

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

namespace telemetry::bridge {

struct auth_config;

// What a token lets its holder read. Immutable; shared by every request and stream that used
// the token. `unrestricted` is the grant of everyone while authentication is off.
class grant {
public:
    static std::shared_ptr<const grant> everything();
    grant(std::vector<topic_filter> topics, std::string subject, std::int64_t expires_at);

    bool unrestricted() const noexcept { return unrestricted_; }
    // A reading on `topic` may be read.
    bool permits(std::string_view topic) const noexcept;
    // Some reading of the sensor whose topics are `sensor_topic/<metric>` may be read.
    bool permits_sensor(std::string_view sensor_topic) const noexcept;
    // Some topic matched by `f` may be read.
    bool overlaps(const topic_filter& f) const noexcept;

    const std::vector<topic_filter>& topics() const noexcept { return topics_; }
    const std::string& subject() const noexcept { return subject_; }
    // Epoch seconds after which the grant is void (a JWT's exp plus the clock leeway, at most a day
    // before the end of std::chrono::system_clock's range, year 2262); 0: never.
    std::int64_t expires_at() const noexcept { return expires_at_; }
    // Equal for grants that permit the same topics: what per-grant caches are keyed by.
    const std::string& key() const noexcept { return key_; }

private:
    grant() = default;
    std::vector<topic_filter> topics_;
    std::string subject_;
    std::int64_t expires_at_ = 0;
    std::string key_;
    bool unrestricted_ = false;
};
using grant_ptr = std::shared_ptr<const grant>;

// Why a token was refused; each becomes a 401 with its own error_description.
enum class auth_failure {
    missing,            // no token where one is required
    unknown_token,      // not a configured static token, and not a JWT
    malformed,          // a JWT that does not parse, or lacks the claims we need
    unsupported_alg,    // a JWT whose header alg is not HS256
    bad_signature,      // no configured key verifies it
    expired,            // exp (plus leeway) is past
    not_yet_valid,      // nbf (minus leeway) is in the future
    wrong_audience,
    wrong_issuer,
};
std::string_view describe(auth_failure f) noexcept;

// Thread safety: authenticate() may be called from any thread (a small cache of verified JWTs
// has its own mutex).
class authenticator {
public:
    explicit authenticator(const auth_config& cfg);

    bool enabled() const noexcept { return enabled_; }
    // The grant of `token` at `now` (epoch seconds). With authentication off, everything.
    std::variant<grant_ptr, auth_failure> authenticate(std::string_view token, std::int64_t now) const;

private:
    std::variant<grant_ptr, auth_failure> verify_jwt(std::string_view token, std::int64_t now) const;

    bool enabled_ = false;
    std::vector<std::pair<std::string, grant_ptr>> static_;  // compared in constant time
    std::vector<std::string> keys_;
    std::string audience_;
    std::string issuer_;
    std::int64_t leeway_s_ = 30;

    // Verified JWTs by their text: the signature is checked once per token, not per request;
    // the time claims are checked every time. Bounded; cleared when full.
    mutable std::mutex cache_mutex_;
    mutable std::unordered_map<std::string, std::pair<grant_ptr, std::int64_t>> verified_;  // grant, nbf
};

}  // namespace telemetry::bridge
