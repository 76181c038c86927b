// Authentication: static tokens and HS256 JWTs (RFC 7519), verified with OpenSSL's HMAC and
// compared in constant time; their `topics` claim is the read grant.
#include "core/auth.hpp"

#include "core/config.hpp"

#include <boost/json.hpp>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <optional>

namespace telemetry::bridge {
namespace {

constexpr std::size_t max_token_bytes = 8192;
constexpr std::size_t verified_cache_entries = 4096;
// The latest expiry a grant carries, epoch seconds: a day before the end of system_clock's range
// (year 2262), which the streams' expiry timers use. A later `exp` (a "never" such as INT64_MAX)
// means this; adding the leeway to it must not overflow either.
const std::int64_t latest_expiry_s =
    std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::duration::max()).count() - 86'400;

// base64url without padding (RFC 7515 section 2) -> bytes; nullopt if not valid.
std::optional<std::string> base64url_decode(std::string_view in) {
    if (in.size() % 4 == 1) return std::nullopt;
    std::string std64(in);
    for (char& c : std64) {
        if (c == '-') c = '+';
        else if (c == '_') c = '/';
        else if (!(std::isalnum(static_cast<unsigned char>(c)))) return std::nullopt;
    }
    while (std64.size() % 4) std64.push_back('=');
    std::string out(std64.size() / 4 * 3, '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(std64.data()), static_cast<int>(std64.size()));
    if (n < 0) return std::nullopt;
    // EVP_DecodeBlock counts the padding's zero bytes: drop them.
    std::size_t len = static_cast<std::size_t>(n);
    for (std::size_t i = in.size(); i % 4; ++i) --len;
    out.resize(len);
    return out;
}

bool is_compact_jwt(std::string_view t) { return std::count(t.begin(), t.end(), '.') == 2; }

std::optional<std::int64_t> int_claim(const boost::json::object& o, const char* name, bool& bad) {
    const auto* v = o.if_contains(name);
    if (!v) return std::nullopt;
    if (v->is_int64()) return v->as_int64();
    if (v->is_uint64() && v->as_uint64() <= static_cast<std::uint64_t>(INT64_MAX)) return static_cast<std::int64_t>(v->as_uint64());
    if (v->is_double() && v->as_double() > 0 && v->as_double() < 9e15) return static_cast<std::int64_t>(v->as_double());
    bad = true;
    return std::nullopt;
}

std::string grant_key(const std::vector<topic_filter>& topics) {
    std::vector<std::string> t;
    for (const auto& f : topics) t.push_back(f.str());
    std::sort(t.begin(), t.end());
    t.erase(std::unique(t.begin(), t.end()), t.end());
    std::string key;
    for (const auto& s : t) key.append(s).push_back('\n');
    return key;
}

}  // namespace

grant_ptr grant::everything() {
    static const grant_ptr all = [] {
        auto g = std::shared_ptr<grant>(new grant());
        g->unrestricted_ = true;
        g->key_ = "#\n";
        return g;
    }();
    return all;
}

grant::grant(std::vector<topic_filter> topics, std::string subject, std::int64_t expires_at)
    : topics_(std::move(topics)), subject_(std::move(subject)), expires_at_(expires_at), key_(grant_key(topics_)) {
    unrestricted_ = std::any_of(topics_.begin(), topics_.end(), [](const topic_filter& f) { return f.str() == "#"; });
}

bool grant::permits(std::string_view topic) const noexcept { return unrestricted_ || matches_any(topics_, topic); }

bool grant::permits_sensor(std::string_view sensor_topic) const noexcept {
    if (unrestricted_) return true;
    return std::any_of(topics_.begin(), topics_.end(),
                       [&](const topic_filter& f) { return f.matches_child_of(sensor_topic); });
}

bool grant::overlaps(const topic_filter& f) const noexcept {
    if (unrestricted_) return true;
    return std::any_of(topics_.begin(), topics_.end(), [&](const topic_filter& g) { return g.overlaps(f); });
}

std::string_view describe(auth_failure f) noexcept {
    switch (f) {
    case auth_failure::missing: return "a bearer token is required";
    case auth_failure::unknown_token: return "the token is not valid";
    case auth_failure::malformed: return "the token is malformed or lacks the exp or topics claim";
    case auth_failure::unsupported_alg: return "the token's algorithm is not HS256";
    case auth_failure::bad_signature: return "the token's signature does not verify";
    case auth_failure::expired: return "the token has expired";
    case auth_failure::not_yet_valid: return "the token is not valid yet";
    case auth_failure::wrong_audience: return "the token is not for this audience";
    case auth_failure::wrong_issuer: return "the token is not from a trusted issuer";
    }
    return "the token is not valid";
}

authenticator::authenticator(const auth_config& cfg)
    : enabled_(cfg.enabled()), keys_(cfg.jwt_hs256_keys), audience_(cfg.jwt_audience),
      issuer_(cfg.jwt_issuer), leeway_s_(cfg.leeway.count()) {
    for (const auto& t : cfg.tokens) {
        std::vector<topic_filter> topics;
        for (const auto& s : t.topics) topics.push_back(*topic_filter::parse(s));  // validated by the config
        static_.emplace_back(t.token, std::make_shared<const grant>(std::move(topics), t.name, 0));
    }
}

std::variant<grant_ptr, auth_failure> authenticator::authenticate(std::string_view token, std::int64_t now) const {
    if (!enabled_) return grant::everything();
    if (token.empty()) return auth_failure::missing;
    if (token.size() > max_token_bytes) return auth_failure::unknown_token;
    // Every static token is compared, in constant time, so timing tells nothing of a near miss.
    grant_ptr found;
    for (const auto& [secret, g] : static_)
        if (secret.size() == token.size() && CRYPTO_memcmp(secret.data(), token.data(), token.size()) == 0) found = g;
    if (found) return found;
    if (keys_.empty() || !is_compact_jwt(token)) return auth_failure::unknown_token;
    return verify_jwt(token, now);
}

std::variant<grant_ptr, auth_failure> authenticator::verify_jwt(std::string_view token, std::int64_t now) const {
    const auto check_time = [&](const grant_ptr& g, std::int64_t nbf) -> std::variant<grant_ptr, auth_failure> {
        // From the second a stream ends for expiry, the token opens nothing new either.
        if (now >= g->expires_at()) return auth_failure::expired;  // expires_at includes the leeway
        if (nbf && now + leeway_s_ < nbf) return auth_failure::not_yet_valid;
        return g;
    };
    {
        std::lock_guard lock(cache_mutex_);
        if (auto it = verified_.find(std::string(token)); it != verified_.end())
            return check_time(it->second.first, it->second.second);
    }
    const auto dot1 = token.find('.');
    const auto dot2 = token.find('.', dot1 + 1);
    const std::string_view signed_part = token.substr(0, dot2);
    const auto header = base64url_decode(token.substr(0, dot1));
    const auto payload = base64url_decode(token.substr(dot1 + 1, dot2 - dot1 - 1));
    const auto signature = base64url_decode(token.substr(dot2 + 1));
    if (!header || !payload || !signature) return auth_failure::malformed;

    boost::system::error_code ec;
    const auto h = boost::json::parse(*header, ec);
    if (ec || !h.is_object()) return auth_failure::malformed;
    // Only HS256: a token that names another algorithm (or "none") is never verified with ours.
    const auto* alg = h.as_object().if_contains("alg");
    if (!alg || !alg->is_string() || alg->as_string() != "HS256") return auth_failure::unsupported_alg;

    bool verified = false;
    for (const auto& key : keys_) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int mac_len = 0;
        if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
                  reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size(), mac, &mac_len))
            continue;
        if (signature->size() == mac_len && CRYPTO_memcmp(signature->data(), mac, mac_len) == 0) verified = true;
    }
    if (!verified) return auth_failure::bad_signature;

    const auto p = boost::json::parse(*payload, ec);
    if (ec || !p.is_object()) return auth_failure::malformed;
    const auto& claims = p.as_object();
    bool bad = false;
    const auto exp = int_claim(claims, "exp", bad);
    const auto nbf = int_claim(claims, "nbf", bad);
    if (bad || !exp) return auth_failure::malformed;
    if (!audience_.empty()) {
        const auto* aud = claims.if_contains("aud");
        bool ok = aud && aud->is_string() && aud->as_string() == audience_;
        if (aud && aud->is_array())
            for (const auto& a : aud->as_array()) ok = ok || (a.is_string() && a.as_string() == audience_);
        if (!ok) return auth_failure::wrong_audience;
    }
    if (!issuer_.empty()) {
        const auto* iss = claims.if_contains("iss");
        if (!iss || !iss->is_string() || iss->as_string() != issuer_) return auth_failure::wrong_issuer;
    }
    const auto* topics = claims.if_contains("topics");
    if (!topics || !topics->is_array() || topics->as_array().empty()) return auth_failure::malformed;
    std::vector<topic_filter> filters;
    for (const auto& t : topics->as_array()) {
        if (!t.is_string()) return auth_failure::malformed;
        auto f = topic_filter::parse(t.as_string());
        if (!f || f->levels().size() > 32) return auth_failure::malformed;
        filters.push_back(std::move(*f));
    }
    std::string subject;
    if (const auto* sub = claims.if_contains("sub"); sub && sub->is_string()) subject = sub->as_string();
    const std::int64_t expires = *exp > latest_expiry_s - leeway_s_ ? latest_expiry_s : *exp + leeway_s_;
    auto g = std::make_shared<const grant>(std::move(filters), std::move(subject), expires);
    {
        std::lock_guard lock(cache_mutex_);
        if (verified_.size() >= verified_cache_entries) verified_.clear();
        verified_.emplace(std::string(token), std::make_pair(g, nbf.value_or(0)));
    }
    return check_time(g, nbf.value_or(0));
}

}  // namespace telemetry::bridge
