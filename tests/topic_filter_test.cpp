// Unit tests for MQTT topic filter validation and matching.
#include "core/topic_filter.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using telemetry::bridge::matches_any;
using telemetry::bridge::topic_filter;

namespace {

bool match(std::string_view filter, std::string_view topic) {
    const auto f = topic_filter::parse(filter);
    REQUIRE_MESSAGE(f, "invalid filter: " << filter);
    return f->matches(topic);
}

}  // namespace

TEST_CASE("topic filter - valid topic filters") {
    for (const char* f : {"#", "+", "a", "/", "a/b/c", "sensors/+/temperature", "sensors/#", "+/+", "+/#",
                          "a//b", "/a", "a/", "$SYS/#", "sensors/s1/temperature", "a b/c"}) {
        const auto parsed = topic_filter::parse(f);
        REQUIRE_MESSAGE(parsed, f);
        CHECK(parsed->str() == f);
    }
    CHECK(topic_filter::parse(std::string(65535, 'a')));
}

TEST_CASE("topic filter - invalid topic filters") {
    for (const char* f : {"", "a#", "#a", "a/#/b", "#/a", "a/b#", "a+", "+a", "a/b+/c", "a/++", "##", "#/#"})
        CHECK_MESSAGE(!topic_filter::parse(f), f);
    CHECK_FALSE(topic_filter::parse(std::string("a\0b", 3)));
    CHECK_FALSE(topic_filter::parse(std::string(65536, 'a')));
}

TEST_CASE("topic filter - topic filter matching table") {
    struct row {
        const char* filter;
        const char* topic;
        bool expected;
    };
    const row rows[] = {
        {"sensors/+/temperature", "sensors/s1/temperature", true},
        {"sensors/+/temperature", "sensors/s1/humidity", false},
        {"sensors/+/temperature", "sensors/s1/temperature/x", false},
        {"sensors/+/temperature", "sensors/temperature", false},
        {"sensors/+/temperature", "sensors//temperature", true},  // + matches an empty level
        {"sensors/#", "sensors/s1/temperature", true},
        {"sensors/#", "sensors", true},  // parent level
        {"sensors/#", "sensors/", true},
        {"sensors/#", "sensorsX/a", false},
        {"sensors/#", "other/s1", false},
        {"sensors/s1/#", "sensors/s1", true},
        {"sensors/s1/#", "sensors/s2/temperature", false},
        {"#", "sensors/s1/temperature", true},
        {"#", "a", true},
        {"#", "/", true},
        {"+", "a", true},
        {"+", "a/b", false},
        {"+", "/a", false},
        {"+/+", "/a", true},
        {"/+", "/a", true},
        {"+/#", "a", true},
        {"+/#", "a/b/c", true},
        {"a/b", "a/b", true},
        {"a/b", "a/b/", false},
        {"a/b", "A/b", false},
        {"a/b", "a", false},
        {"a/b/c", "a/b", false},
        {"a/+/+", "a/b", false},
        {"#", "$SYS/broker/uptime", false},
        {"+/broker/uptime", "$SYS/broker/uptime", false},
        {"+/#", "$SYS/x", false},
        {"$SYS/#", "$SYS/broker/uptime", true},
        {"$SYS/+/uptime", "$SYS/broker/uptime", true},
        {"sensors/+/+", "sensors/$s/x", true},  // only the first level is special
        {"#", "", false},
    };
    for (const auto& r : rows) {
        CAPTURE(r.filter);
        CAPTURE(r.topic);
        CHECK(match(r.filter, r.topic) == r.expected);
    }
}

TEST_CASE("topic filter - matches_any over a list of filters") {
    std::vector<topic_filter> filters;
    CHECK_FALSE(matches_any(filters, "sensors/s1/temperature"));
    filters.push_back(*topic_filter::parse("sensors/+/humidity"));
    CHECK_FALSE(matches_any(filters, "sensors/s1/temperature"));
    filters.push_back(*topic_filter::parse("sensors/s1/#"));
    CHECK(matches_any(filters, "sensors/s1/temperature"));
    CHECK(matches_any(filters, "sensors/s9/humidity"));
    CHECK_FALSE(matches_any(filters, "sensors/s9/temperature"));
}

TEST_CASE("topic filter - default constructed filter matches nothing") {
    const topic_filter f{};
    CHECK_FALSE(f.matches("a"));
}

// A filter wants a sensor's presence when it can match one of the sensor's reading topics
// (`parent/<metric>`). Regression (fuzz/corpus/fuzz_topic/regression-child-then-hash): a filter
// ending in `<metric>/#` matches `parent/<metric>` through `#` matching its parent level.
TEST_CASE("topic filter - matches_child_of agrees with matches on the parent's children") {
    struct row {
        const char* filter;
        const char* parent;
        bool expected;
    };
    const row rows[] = {
        {"sensors/+/temperature", "sensors/kitchen", true},
        {"sensors/kitchen/#", "sensors/kitchen", true},
        {"sensors/#", "sensors/kitchen", true},
        {"#", "sensors/kitchen", true},
        {"sensors/kitchen/temperature/#", "sensors/kitchen", true},  // matches sensors/kitchen/temperature
        {"sensors/+/+/#", "sensors/kitchen", true},
        {"sensors/kitchen/#", "sensors", true},                      // matches sensors/kitchen
        {"sensors/kitchen/temperature/x/#", "sensors/kitchen", false},
        {"sensors/kitchen/temperature/x", "sensors/kitchen", false},
        {"sensors/kitchen", "sensors/kitchen", false},
        {"sensors/hall/+", "sensors/kitchen", false},
        {"+/#", "$SYS", false},
    };
    for (const auto& r : rows) {
        CAPTURE(r.filter);
        CAPTURE(r.parent);
        CHECK(topic_filter::parse(r.filter)->matches_child_of(r.parent) == r.expected);
    }
}

// A client's list (HTTP topic parameters, a gRPC SubscribeRequest): none means "#", bounds checked.
TEST_CASE("topic filter - parse_client_filters") {
    using telemetry::bridge::parse_client_filters;
    std::vector<topic_filter> out;
    CHECK(parse_client_filters({}, 2, 256, 8, out).empty());
    REQUIRE(out.size() == 1);
    CHECK(out[0].str() == "#");
    out.clear();
    CHECK(parse_client_filters({"a/+", "b/#"}, 2, 256, 8, out).empty());
    CHECK(out.size() == 2);
    out.clear();
    CHECK(parse_client_filters({"a", "b", "c"}, 2, 256, 8, out).find("too many topic filters") == 0);
    CHECK(parse_client_filters({"a/#/b"}, 2, 256, 8, out).find("topic: ") == 0);
    CHECK(parse_client_filters({"a/b/c"}, 2, 256, 2, out).find("at most 2 levels") != std::string::npos);
    CHECK(parse_client_filters({std::string(300, 'x')}, 2, 256, 8, out).find("at most 256 bytes") != std::string::npos);
}
