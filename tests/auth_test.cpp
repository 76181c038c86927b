// Unit tests of authentication and read grants: static tokens, HS256 JWTs (valid, expired, not
// yet valid, wrong key, tampered, other algorithms, missing claims, audience, issuer, key
// rotation), and what a grant permits (docs/api.md section 8).
#include "core/auth.hpp"

#include "core/config.hpp"
#include "core/selector.hpp"

#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <chrono>
#include <string>

using namespace telemetry::bridge;

namespace {

std::string b64url(std::string_view in) {
    std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
    out.resize(static_cast<std::size_t>(n));
    while (!out.empty() && out.back() == '=') out.pop_back();
    for (char& c : out) c = c == '+' ? '-' : c == '/' ? '_' : c;
    return out;
}

// A JWT signed with `key` (HS256), as any JWT library would make it.
std::string jwt(const std::string& claims, const std::string& key, const std::string& header = R"({"alg":"HS256","typ":"JWT"})") {
    const std::string signing_input = b64url(header) + "." + b64url(claims);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
         reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(), mac, &len);
    return signing_input + "." + b64url(std::string(reinterpret_cast<char*>(mac), len));
}

const std::string key1 = "0123456789abcdef0123456789abcdef";
const std::string key2 = "a second key, for rotation, 32 bytes";
constexpr std::int64_t now = 1'800'000'000;

auth_config config_with_keys() {
    auth_config c;
    c.jwt_hs256_keys = {key1, key2};
    c.leeway = std::chrono::seconds(30);
    c.tokens.push_back({"static-token-for-a-0001", {"sensors/a/#"}, "a"});
    return c;
}

std::string claims(std::int64_t exp, const std::string& topics = R"(["sensors/a/#"])", const std::string& extra = "") {
    return R"({"sub":"tester","exp":)" + std::to_string(exp) + R"(,"topics":)" + topics + extra + "}";
}

auth_failure failure_of(const authenticator& a, const std::string& token) {
    auto r = a.authenticate(token, now);
    REQUIRE(std::holds_alternative<auth_failure>(r));
    return std::get<auth_failure>(r);
}

}  // namespace

TEST_CASE("auth - off: everyone reads everything") {
    const authenticator a(auth_config{});
    CHECK(!a.enabled());
    auto r = a.authenticate("", now);
    REQUIRE(std::holds_alternative<grant_ptr>(r));
    CHECK(std::get<grant_ptr>(r)->unrestricted());
}

TEST_CASE("auth - static tokens carry their grant, others are refused") {
    const authenticator a(config_with_keys());
    auto r = a.authenticate("static-token-for-a-0001", now);
    REQUIRE(std::holds_alternative<grant_ptr>(r));
    const auto& g = *std::get<grant_ptr>(r);
    CHECK(g.permits("sensors/a/temperature"));
    CHECK(!g.permits("sensors/b/temperature"));
    CHECK(g.expires_at() == 0);
    CHECK(failure_of(a, "") == auth_failure::missing);
    CHECK(failure_of(a, "static-token-for-a-0002") == auth_failure::unknown_token);
    CHECK(failure_of(a, "static-token-for-a-000") == auth_failure::unknown_token);
}

TEST_CASE("auth - a valid JWT from either key grants its topics until exp") {
    const authenticator a(config_with_keys());
    for (const auto& key : {key1, key2}) {
        auto r = a.authenticate(jwt(claims(now + 60, R"(["sensors/+/temperature"])"), key), now);
        REQUIRE(std::holds_alternative<grant_ptr>(r));
        const auto& g = *std::get<grant_ptr>(r);
        CHECK(g.permits("sensors/x/temperature"));
        CHECK(!g.permits("sensors/x/humidity"));
        CHECK(g.subject() == "tester");
        CHECK(g.expires_at() == now + 60 + 30);  // exp plus the leeway
    }
    // The leeway admits a token just past exp; beyond it, expired. Verified tokens are cached:
    // the cache must not keep an expired one alive.
    const std::string t = jwt(claims(now - 20), key1);
    CHECK(std::holds_alternative<grant_ptr>(a.authenticate(t, now)));
    CHECK(std::get<auth_failure>(a.authenticate(t, now + 60)) == auth_failure::expired);
    CHECK(failure_of(a, jwt(claims(now - 31), key1)) == auth_failure::expired);
}

TEST_CASE("auth - JWTs that must be refused") {
    const authenticator a(config_with_keys());
    CHECK(failure_of(a, jwt(claims(now + 60), "the wrong key, 32 bytes long......")) == auth_failure::bad_signature);
    CHECK(failure_of(a, jwt(claims(now + 60, R"(["sensors/a/#"])", R"(,"nbf":)" + std::to_string(now + 120)), key1)) ==
          auth_failure::not_yet_valid);
    // Tampered: the payload changed after signing (a wider grant), the signature kept.
    const std::string good = jwt(claims(now + 60), key1);
    const auto dot1 = good.find('.'), dot2 = good.rfind('.');
    const std::string tampered = good.substr(0, dot1 + 1) + b64url(claims(now + 60, R"(["#"])")) + good.substr(dot2);
    CHECK(failure_of(a, tampered) == auth_failure::bad_signature);
    // alg none, or another algorithm, is never verified with our keys.
    CHECK(failure_of(a, jwt(claims(now + 60), key1, R"({"alg":"none"})")) == auth_failure::unsupported_alg);
    CHECK(failure_of(a, b64url(R"({"alg":"none"})") + "." + b64url(claims(now + 60)) + ".") == auth_failure::unsupported_alg);
    CHECK(failure_of(a, jwt(claims(now + 60), key1, R"({"alg":"HS512"})")) == auth_failure::unsupported_alg);
    // Claims we need.
    CHECK(failure_of(a, jwt(R"({"topics":["#"]})", key1)) == auth_failure::malformed);                 // no exp
    CHECK(failure_of(a, jwt(R"({"exp":)" + std::to_string(now + 60) + "}", key1)) == auth_failure::malformed);  // no topics
    CHECK(failure_of(a, jwt(claims(now + 60, R"(["a/#/b"])"), key1)) == auth_failure::malformed);      // bad filter
    CHECK(failure_of(a, jwt(claims(now + 60, R"([])"), key1)) == auth_failure::malformed);
    CHECK(failure_of(a, "a.b.c") == auth_failure::malformed);
    CHECK(failure_of(a, "not!base64.x.y") == auth_failure::malformed);
}

TEST_CASE("auth - audience and issuer when configured") {
    auth_config c = config_with_keys();
    c.jwt_audience = "telemetry";
    c.jwt_issuer = "https://issuer.example";
    const authenticator a(c);
    const std::string iss = R"(,"iss":"https://issuer.example")";
    CHECK(std::holds_alternative<grant_ptr>(a.authenticate(jwt(claims(now + 60, R"(["#"])", R"(,"aud":"telemetry")" + iss), key1), now)));
    CHECK(std::holds_alternative<grant_ptr>(a.authenticate(jwt(claims(now + 60, R"(["#"])", R"(,"aud":["x","telemetry"])" + iss), key1), now)));
    CHECK(failure_of(a, jwt(claims(now + 60, R"(["#"])", R"(,"aud":"other")" + iss), key1)) == auth_failure::wrong_audience);
    CHECK(failure_of(a, jwt(claims(now + 60, R"(["#"])", R"(,"aud":"telemetry")"), key1)) == auth_failure::wrong_issuer);
}

TEST_CASE("auth - what a grant and a selector within it select") {
    const grant g({*topic_filter::parse("sensors/a/#"), *topic_filter::parse("sensors/+/temperature")}, "", 0);
    CHECK(g.permits("sensors/a/humidity"));
    CHECK(g.permits("sensors/b/temperature"));
    CHECK(!g.permits("sensors/b/humidity"));
    CHECK(g.permits_sensor("sensors/b"));  // its temperature
    CHECK(g.overlaps(*topic_filter::parse("#")));
    CHECK(g.overlaps(*topic_filter::parse("sensors/b/+")));
    CHECK(!g.overlaps(*topic_filter::parse("sensors/b/humidity")));
    CHECK(!g.overlaps(*topic_filter::parse("other/#")));
    const grant same({*topic_filter::parse("sensors/+/temperature"), *topic_filter::parse("sensors/a/#")}, "x", 5);
    CHECK(same.key() == g.key());

    const auto gp = std::make_shared<const grant>(std::vector<topic_filter>{*topic_filter::parse("sensors/a/#")}, "", 0);
    const reading_selector wide({*topic_filter::parse("#")}, gp);
    CHECK(wide.selects("sensors/a/t"));
    CHECK(!wide.selects("sensors/b/t"));
    CHECK(wide.selects_sensor("sensors/a"));
    CHECK(!wide.selects_sensor("sensors/b"));
    CHECK(wide.can_select_anything());
    const reading_selector elsewhere({*topic_filter::parse("sensors/b/#")}, gp);
    CHECK(!elsewhere.can_select_anything());
}

TEST_CASE("auth - topic filters overlap when some topic matches both") {
    const auto f = [](const char* s) { return *topic_filter::parse(s); };
    CHECK(f("a/+").overlaps(f("+/b")));
    CHECK(f("a/#").overlaps(f("a")));
    CHECK(f("a/b/c").overlaps(f("a/#")));
    CHECK(!f("a/b").overlaps(f("a/c")));
    CHECK(!f("a/b").overlaps(f("a/b/c")));
    CHECK(!f("a/+").overlaps(f("a")));
    CHECK(f("+/+/+").overlaps(f("x/y/z")));
}

// Regression (fuzz/corpus/fuzz_auth/regression-exp-int64-max, found by fuzz_auth under UBSan):
// exp + leeway overflowed for an exp near INT64_MAX (a "never expires" token), and an exp past
// 2262 overflowed the streams' expiry timer (system_clock::from_time_t in nanoseconds).
TEST_CASE("auth - a far-future exp is capped within system_clock's range") {
    const authenticator a(config_with_keys());
    const std::int64_t latest =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::duration::max()).count();
    for (const std::int64_t exp : {INT64_MAX, INT64_MAX - 29, std::int64_t{32'503'680'000} /* year 3000 */}) {
        CAPTURE(exp);
        auto r = a.authenticate(jwt(claims(exp), key1), now);
        REQUIRE(std::holds_alternative<grant_ptr>(r));
        const auto& g = *std::get<grant_ptr>(r);
        CHECK(g.expires_at() > now);
        CHECK(g.expires_at() < latest);
        const auto at = std::chrono::system_clock::from_time_t(static_cast<std::time_t>(g.expires_at()));
        CHECK(at > std::chrono::system_clock::now());
    }
    // An ordinary exp keeps its leeway exactly.
    auto r = a.authenticate(jwt(claims(now + 60), key1), now);
    REQUIRE(std::holds_alternative<grant_ptr>(r));
    CHECK(std::get<grant_ptr>(r)->expires_at() == now + 60 + 30);
}
