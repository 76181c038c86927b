// Bearer tokens: authenticator::authenticate with static tokens and HS256 JWTs. Two modes, so
// that the fuzzer reaches the claims of a token that verifies, not only the signature check:
//   byte 0 even: the rest of the input is the token, as a client sends it;
//   byte 0 odd:  line 1 is the JWT header JSON, line 2 the claims JSON; the target signs them
//                with the configured key (bit 1 of byte 0: with a wrong key) and authenticates.
// Properties: the same token gives the same answer twice (the second from the verified cache);
// a grant is unexpired at `now` and lists only valid filters; a refused JWT has a description.
#include "core/auth.hpp"
#include "core/config.hpp"
#include "fuzz_common.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <chrono>
#include <string>

using namespace telemetry;
using namespace telemetry::bridge;

namespace {

const std::string key = "fuzz-key-0123456789abcdef0123456789abcdef";
constexpr std::int64_t now = 1'732'269'600;  // 2024-11-22T10:00:00Z

std::string base64url(std::string_view in) {
    static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        const unsigned v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8) |
                           static_cast<unsigned char>(in[i + 2]);
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += alphabet[(v >> 6) & 63];
        out += alphabet[v & 63];
    }
    if (i + 1 == in.size()) {
        const unsigned v = static_cast<unsigned char>(in[i]) << 16;
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
    } else if (i + 2 == in.size()) {
        const unsigned v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8);
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += alphabet[(v >> 6) & 63];
    }
    return out;
}

std::string sign(std::string_view header, std::string_view claims, const std::string& with) {
    std::string t = base64url(header) + "." + base64url(claims);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), with.data(), static_cast<int>(with.size()), reinterpret_cast<const unsigned char*>(t.data()),
         t.size(), mac, &len);
    return t + "." + base64url(std::string_view(reinterpret_cast<const char*>(mac), len));
}

auth_config make_config(bool audience) {
    auth_config a;
    a.jwt_hs256_keys = {"another-key-0123456789abcdef0123456789", key};  // rotation: either verifies
    if (audience) {
        a.jwt_audience = "telemetry";
        a.jwt_issuer = "https://issuer.example";
    }
    a.tokens.push_back({"static-token-0123456789", {"sensors/kitchen/#", "sensors/+/humidity"}, "fuzz"});
    return a;
}

void check(const std::variant<grant_ptr, auth_failure>& r) {
    if (const auto* g = std::get_if<grant_ptr>(&r)) {
        FUZZ_CHECK(*g != nullptr);
        const grant& gr = **g;
        FUZZ_CHECK(gr.expires_at() == 0 || gr.expires_at() > now);
        // The streams arm a system_clock timer at expires_at: it must be representable.
        FUZZ_CHECK(gr.expires_at() < std::chrono::duration_cast<std::chrono::seconds>(
                                         std::chrono::system_clock::duration::max()).count());
        FUZZ_CHECK(!gr.topics().empty());
        for (const auto& f : gr.topics()) FUZZ_CHECK(topic_filter::parse(f.str()).has_value());
        (void)gr.permits("sensors/kitchen/temperature");
        (void)gr.permits_sensor("sensors/kitchen");
        FUZZ_CHECK(!gr.key().empty());
    } else {
        FUZZ_CHECK(!describe(std::get<auth_failure>(r)).empty());
    }
}

bool same(const std::variant<grant_ptr, auth_failure>& a, const std::variant<grant_ptr, auth_failure>& b) {
    if (a.index() != b.index()) return false;
    if (a.index() == 1) return std::get<1>(a) == std::get<1>(b);
    return std::get<0>(a)->key() == std::get<0>(b)->key() && std::get<0>(a)->expires_at() == std::get<0>(b)->expires_at();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::uint8_t mode = data[0];
    const std::string_view rest = fuzz::as_text(data + 1, size - 1);
    const authenticator auth(make_config(mode & 4));  // fresh each run: its cache is per input

    std::string token;
    if (mode & 1) {
        const auto parts = fuzz::split_lines(rest, 2);
        const std::string_view header = parts[0];
        const std::string_view claims = parts.size() > 1 ? parts[1] : std::string_view("{}");
        token = sign(header, claims, (mode & 2) ? std::string("wrong-key-0123456789abcdef0123456789ab") : key);
    } else {
        token = std::string(rest);
    }
    const auto first = auth.authenticate(token, now);
    check(first);
    const auto again = auth.authenticate(token, now);  // from the verified cache when it was a JWT
    FUZZ_CHECK(same(first, again));
    // Later, every grant with an expiry has run out.
    const auto later = auth.authenticate(token, INT64_MAX / 2);
    if (const auto* g = std::get_if<grant_ptr>(&later)) FUZZ_CHECK((*g)->expires_at() == 0);
    if ((mode & 1) && !(mode & 2) && token.size() <= 8192) {
        // Signed with our key: never refused for its signature or as unknown.
        if (const auto* f = std::get_if<auth_failure>(&first))
            FUZZ_CHECK(*f != auth_failure::bad_signature && *f != auth_failure::unknown_token);
    }
    if ((mode & 1) && (mode & 2)) FUZZ_CHECK(first.index() == 1);  // a foreign key never verifies
    return 0;
}
