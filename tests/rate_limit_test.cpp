// Unit tests of the token buckets behind 429 (docs/api.md section 8.3).
#include "core/rate_limit.hpp"

#include <doctest/doctest.h>

using namespace telemetry::bridge;
using namespace std::chrono_literals;

TEST_CASE("rate limit - a burst is allowed, then one request per 1/rate, per key") {
    rate_limiter limit(2, 4);
    const auto t0 = rate_limiter::clock::now();
    for (int i = 0; i < 4; ++i) CHECK(!limit.take("a", t0));
    const auto refused = limit.take("a", t0);
    REQUIRE(refused);
    CHECK(*refused == 1s);        // one token comes back in half a second: Retry-After rounds up
    CHECK(!limit.take("b", t0));  // another client is unaffected
    CHECK(!limit.take("a", t0 + 500ms));
    CHECK(limit.take("a", t0 + 600ms));
    CHECK(!limit.take("a", t0 + 10s));  // refilled, up to the burst only
    for (int i = 0; i < 3; ++i) CHECK(!limit.take("a", t0 + 10s));
    CHECK(limit.take("a", t0 + 10s));
}

TEST_CASE("rate limit - off at rate 0, and a flood of keys stays bounded") {
    rate_limiter off(0, 0);
    CHECK(!off.enabled());
    for (int i = 0; i < 100; ++i) CHECK(!off.take("x", rate_limiter::clock::now()));

    rate_limiter limit(1, 1, 100);
    const auto t0 = rate_limiter::clock::now();
    for (int i = 0; i < 10'000; ++i) (void)limit.take("client-" + std::to_string(i), t0 + std::chrono::milliseconds(i));
    // The newest client still has its state (it was just refused) ...
    CHECK(limit.take("client-9999", t0 + 9999ms));
    // ... and a client seen long ago starts again with a full bucket.
    CHECK(!limit.take("client-0", t0 + 9999ms));
}
