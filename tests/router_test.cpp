// Unit tests of the router (request -> answer, no I/O) for query parameters at their limits.
#include "core/auth.hpp"
#include "core/config.hpp"
#include "core/metrics.hpp"
#include "http/router.hpp"
#include "live/hub.hpp"

#include <doctest/doctest.h>

using namespace telemetry;
using namespace telemetry::bridge;

namespace {

struct fixture {
    config cfg;
    metrics stats;
    hub live{"sensors", 100};
    authenticator auth{cfg.auth};
    http::router router{live, stats, cfg, auth, [] { return true; }, [] { return true; }};

    fixture() {
        reading r;
        r.id = 1;
        r.sensor = "kitchen";
        r.metric = "temperature";
        r.ts = 1'732'269'600'000;
        r.value = 21.5;
        live.publish({r});
    }

    // The status of the router's answer, or 0 when it asks for a storage query.
    unsigned status(std::string_view target) {
        http::request req{boost::beast::http::verb::get, target, 11};
        req.set(boost::beast::http::field::host, "127.0.0.1:8080");
        auto a = router.route(req, "127.0.0.1");
        if (auto* ans = std::get_if<http::answer>(&a)) return ans->status;
        return 0;
    }
};

}  // namespace

// Regression (fuzz/corpus/fuzz_query/regression-aggregate-range-overflow, found by fuzz_query
// under UBSan): `to - from` overflowed for bounds far apart (epoch ms may be negative).
TEST_CASE("router - aggregate bounds far apart are too many buckets, not an overflow") {
    fixture f;
    const std::string path = "/api/v1/sensors/kitchen/temperature/aggregate?bucket=1d";
    CHECK(f.status(path + "&from=-9000000000000000000&to=9000000000000000000") == 400);
    CHECK(f.status(path + "&from=-9223372036854775807&to=9223372036854775806") == 400);
    CHECK(f.status(path + "&from=0&to=9000000000000000000") == 400);
    CHECK(f.status(path + "&from=2024-11-22T00:00:00Z&to=2024-11-23T00:00:00Z") == 0);  // a storage query
    CHECK(f.status(path + "&from=5&to=5") == 400);
}

// The path is matched segment by segment after percent-decoding, without copying segments that
// have no escapes; one trailing slash is tolerated and paths longer than any route are not found.
TEST_CASE("router - path segments: escapes decoded, one trailing slash, long paths not found") {
    fixture f;
    CHECK(f.status("/api/v1/sensors/kitchen/temperature/latest") == 200);
    CHECK(f.status("/api/v1/sensors/kitchen/temperature/latest/") == 200);
    CHECK(f.status("/api/v1/sensors/kitch%65n/temperatur%65/latest") == 200);
    CHECK(f.status("/%61pi/v1/sensors/kitchen/temperature/l%61test") == 200);
    CHECK(f.status("/api/v1/sensors/kitchen/temperature/latest//") == 404);
    CHECK(f.status("/api/v1/sensors/kitchen/temperature/latest/a/b/c") == 404);
    CHECK(f.status("/api/v1/sensors/kitchen/temperature/latest/a/b/c/d/e/f/g/h") == 404);
    CHECK(f.status("/api/v1/sensors/kitchen/humidity/latest") == 404);
    CHECK(f.status("/api/v1/sensors/kitch%2Fen/temperature/latest") == 404);  // '/' is not a name character
}
