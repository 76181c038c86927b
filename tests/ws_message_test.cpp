// Unit tests of the WebSocket client messages (docs/api.md section 5.1): subscribe / unsubscribe
// JSON -> request, or the error the session sends back.
#include "core/ws_message.hpp"

#include <doctest/doctest.h>

using namespace telemetry::bridge;

namespace {

ws_client_request request_of(std::string_view text) {
    auto m = parse_ws_client_message(text);
    REQUIRE_MESSAGE(std::holds_alternative<ws_client_request>(m), text);
    return std::get<ws_client_request>(m);
}

ws_client_error error_of(std::string_view text) {
    auto m = parse_ws_client_message(text);
    REQUIRE_MESSAGE(std::holds_alternative<ws_client_error>(m), text);
    return std::get<ws_client_error>(m);
}

}  // namespace

TEST_CASE("ws message - the documented client messages") {
    auto r = request_of(R"({"op":"subscribe","topic":"sensors/+/temperature"})");
    CHECK(r.op == ws_client_request::kind::subscribe);
    CHECK(r.topic == "sensors/+/temperature");
    CHECK(!r.after);
    CHECK(!r.conflate);

    r = request_of(R"({"op":"subscribe","topic":"sensors/+/temperature","after":123})");
    REQUIRE(r.after);
    CHECK(r.after->id == 123);
    CHECK(!r.after->epoch);
    r = request_of(R"({"op":"subscribe","topic":"#","after":null,"policy":"conflate"})");
    CHECK(!r.after);
    CHECK(r.conflate);
    r = request_of(R"({"op":"subscribe","topic":"#","policy":"all","after":9223372036854775807})");
    CHECK(!r.conflate);
    REQUIRE(r.after);
    CHECK(r.after->id == INT64_MAX);

    // A cursor as the other transports hand it out, or an id with its epoch beside it.
    r = request_of(R"({"op":"subscribe","topic":"#","after":"1043@00c0ffee"})");
    REQUIRE(r.after);
    CHECK(r.after->id == 1043);
    CHECK(r.after->epoch == 0x00c0ffeeu);
    r = request_of(R"({"op":"subscribe","topic":"#","after":1043,"epoch":"9f3a01c2"})");
    REQUIRE(r.after);
    CHECK(r.after->epoch == 0x9f3a01c2u);
    r = request_of(R"({"op":"subscribe","topic":"#","after":"7"})");
    REQUIRE(r.after);
    CHECK(r.after->id == 7);

    r = request_of(R"({"topic":"sensors/+/temperature","op":"unsubscribe","after":"ignored"})");
    CHECK(r.op == ws_client_request::kind::unsubscribe);
    CHECK(r.topic == "sensors/+/temperature");
}

TEST_CASE("ws message - refusals name their code") {
    CHECK(error_of("not json").code == "bad_json");
    CHECK(error_of("[1]").code == "bad_json");
    CHECK(error_of(R"({"op":1,"topic":"#"})").message == "\"op\" must be a string");
    CHECK(error_of(R"({"op":"subscribe"})").message == "\"topic\" must be an MQTT topic filter string");
    CHECK(error_of(R"({"op":"dance","topic":"x"})").message == "\"op\" must be subscribe or unsubscribe");
    for (const char* bad : {R"({"op":"subscribe","topic":"#","after":-3})",
                            R"({"op":"subscribe","topic":"#","after":18446744073709551615})",
                            R"({"op":"subscribe","topic":"#","after":1.5})",
                            R"({"op":"subscribe","topic":"#","after":"7@"})",
                            R"({"op":"subscribe","topic":"#","after":"x7"})",
                            R"({"op":"subscribe","topic":"#","after":"-7@00c0ffee"})",
                            R"({"op":"subscribe","topic":"#","epoch":"00c0ffee"})",
                            R"({"op":"subscribe","topic":"#","after":7,"epoch":"nothex"})",
                            R"({"op":"subscribe","topic":"#","after":7,"epoch":7})",
                            R"({"op":"subscribe","topic":"#","after":"7@00c0ffee","epoch":"00c0fffe"})"}) {
        CAPTURE(bad);
        CHECK(error_of(bad).code == "bad_request");
    }
    CHECK(error_of(R"({"op":"subscribe","topic":"x/#","policy":"newest"})").code == "bad_request");
}

TEST_CASE("ws message - bucket subscriptions (docs/api.md 4.1)") {
    auto r = request_of(R"({"op":"subscribe","topic":"#","bucket":"1m"})");
    REQUIRE(r.bucket);
    CHECK(r.bucket->width_ms == 60'000);
    CHECK_FALSE(r.bucket->provisional);
    r = request_of(R"({"op":"subscribe","topic":"#","bucket":"31d","provisional":true,"after":5})");
    REQUIRE(r.bucket);
    CHECK(r.bucket->width_ms == 31LL * 86'400'000);
    CHECK(r.bucket->provisional);
    CHECK(r.after->id == 5);
    CHECK_FALSE(request_of(R"({"op":"subscribe","topic":"#","bucket":null})").bucket);
    for (const char* bad : {R"({"op":"subscribe","topic":"#","bucket":"999ms"})",
                            R"({"op":"subscribe","topic":"#","bucket":"32d"})",
                            R"({"op":"subscribe","topic":"#","bucket":60})",
                            R"({"op":"subscribe","topic":"#","provisional":true})",
                            R"({"op":"subscribe","topic":"#","bucket":"1m","provisional":1})",
                            R"({"op":"subscribe","topic":"#","bucket":"1m","policy":"conflate"})"}) {
        CAPTURE(bad);
        CHECK(error_of(bad).code == "bad_request");
    }
}
