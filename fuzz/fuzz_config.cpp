// The configuration file: parse_config(TOML text). Either a config_error or a config whose every
// value lies in the range the documentation gives (conf/broker-bridge.toml), which the rest of
// the bridge relies on; an authenticator and the limits built from it must not misbehave.
#include "core/auth.hpp"
#include "core/config.hpp"
#include "core/topic_filter.hpp"
#include "fuzz_common.hpp"

#include <cmath>
#include <string>

using namespace telemetry;
using namespace telemetry::bridge;

namespace {

void check_ranges(const config& c) {
    FUZZ_CHECK(!c.mqtt.topic_prefix.empty());
    FUZZ_CHECK(c.mqtt.reconnect_min <= c.mqtt.reconnect_max);
    FUZZ_CHECK(c.http.threads >= 1 && c.http.threads <= 64);
    FUZZ_CHECK(c.http.longpoll_default <= c.http.longpoll_max);
    FUZZ_CHECK(c.http.rate_limit_per_s >= 0 && c.http.rate_limit_per_s <= 1e9);
    FUZZ_CHECK(c.http.rate_limit_burst >= 0 && c.http.rate_limit_burst <= 1e9);
    FUZZ_CHECK(c.auth.rate_limit_per_s >= 0 && c.auth.rate_limit_per_s <= 1e9);
    FUZZ_CHECK(c.auth.rate_limit_burst >= 0 && c.auth.rate_limit_burst <= 1e9);
    FUZZ_CHECK(c.auth.leeway.count() >= 0 && c.auth.leeway.count() <= 3600);
    FUZZ_CHECK(c.storage.query_threads >= 1 && c.storage.query_threads <= 64);
    FUZZ_CHECK(!c.storage.db_path.empty());
    FUZZ_CHECK(c.ingest.max_ts_future.count() >= 0 && c.ingest.max_ts_past.count() > 0);
    FUZZ_CHECK(c.stream.max_filter_bytes >= 16 && c.stream.max_filter_levels >= 1);
    FUZZ_CHECK(c.stream.replay_chunk(500) >= 1);
    FUZZ_CHECK(c.hub.window >= 16);
    for (const auto& k : c.auth.jwt_hs256_keys) FUZZ_CHECK(k.size() >= 32);
    for (const auto& t : c.auth.tokens) {
        FUZZ_CHECK(t.token.size() >= 16 && !t.topics.empty());
        for (const auto& f : t.topics) FUZZ_CHECK(topic_filter::parse(f).has_value());
    }
    FUZZ_CHECK(c.auth.enabled() || is_loopback_host(c.http.host) || c.http.allow_public_without_auth);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > 64 * 1024) return 0;  // a configuration file is small; keep toml++'s work bounded
    config c;
    try {
        c = parse_config(fuzz::as_text(data, size), "fuzz.toml");
    } catch (const config_error& e) {
        // Every error names the file (with its line), says what must hold, or starts with the key
        // it is about (e.g. "mqtt.password is set without mqtt.username").
        const std::string_view what(e.what());
        const std::string_view first_word = what.substr(0, what.find(' '));
        FUZZ_CHECK(what.rfind("fuzz.toml", 0) == 0 || what.find("must") != std::string_view::npos ||
                   what.find("listen") != std::string_view::npos ||
                   (first_word.find('.') != std::string_view::npos && first_word.size() < what.size()));
        return 0;
    }
    check_ranges(c);
    // What the bridge builds from it at start-up.
    authenticator auth(c.auth);
    FUZZ_CHECK(auth.enabled() == c.auth.enabled());
    (void)auth.authenticate("not-a-token", 1'732'269'600);
    return 0;
}
