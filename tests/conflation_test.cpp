// Unit tests of the conflate policy's buffer: newest per series, counts, oldest first.
#include "streams/conflation.hpp"

#include <doctest/doctest.h>

using namespace telemetry::bridge;
using namespace telemetry::bridge::http;

namespace {

live_ptr live(std::int64_t id, std::string topic) {
    auto l = std::make_shared<live_reading>();
    l->r.id = id;
    l->topic = std::move(topic);
    l->json = "{\"id\":" + std::to_string(id) + "}";
    return l;
}

}  // namespace

TEST_CASE("conflation - keeps the newest reading per series, counts the rest, hands them oldest first") {
    conflation c;
    CHECK(c.empty());
    CHECK_FALSE(c.hold(live(1, "s/a/t")));
    CHECK_FALSE(c.hold(live(2, "s/b/t")));
    CHECK(c.hold(live(3, "s/a/t")));
    CHECK(c.hold(live(4, "s/a/t")));
    const auto held = c.take();
    CHECK(c.empty());
    REQUIRE(held.size() == 2);
    CHECK(held[0].newest->r.id == 2);  // s/b: its only reading, now the older of the two
    CHECK(held[0].skipped == 0);
    CHECK(held[1].newest->r.id == 4);
    CHECK(held[1].skipped == 2);
}

TEST_CASE("conflation - skipped is added to the reading's JSON only when something was skipped") {
    std::string out;
    append_with_skipped(out, "{\"id\":7}", 0);
    CHECK(out == "{\"id\":7}");
    out.clear();
    append_with_skipped(out, "{\"id\":7}", 3);
    CHECK(out == "{\"id\":7,\"skipped\":3}");
}
