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
    CHECK(r.after == 123);
    r = request_of(R"({"op":"subscribe","topic":"#","after":null,"policy":"conflate"})");
    CHECK(!r.after);
    CHECK(r.conflate);
    r = request_of(R"({"op":"subscribe","topic":"#","policy":"all","after":9223372036854775807})");
    CHECK(!r.conflate);
    CHECK(r.after == INT64_MAX);

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
                            R"({"op":"subscribe","topic":"#","after":"7"})"}) {
        CAPTURE(bad);
        CHECK(error_of(bad).code == "bad_request");
    }
    CHECK(error_of(R"({"op":"subscribe","topic":"x/#","policy":"newest"})").code == "bad_request");
}
