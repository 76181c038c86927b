// A WebSocket client's subscribe / unsubscribe message, parsed (docs/api.md).
#include "core/ws_message.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

namespace telemetry::bridge {

std::variant<ws_client_request, ws_client_error> parse_ws_client_message(std::string_view text) {
    boost::system::error_code ec;
    const auto doc = boost::json::parse(text, ec);
    if (ec || !doc.is_object()) return ws_client_error{"bad_json", "messages are JSON objects with an \"op\""};
    const auto& o = doc.as_object();
    const auto* op = o.if_contains("op");
    if (!op || !op->is_string()) return ws_client_error{"bad_request", "\"op\" must be a string"};
    const auto* topic = o.if_contains("topic");
    if (!topic || !topic->is_string())
        return ws_client_error{"bad_request", "\"topic\" must be an MQTT topic filter string"};
    ws_client_request r;
    r.topic = std::string(topic->as_string());
    if (*op == "subscribe") {
        r.op = ws_client_request::kind::subscribe;
        if (const auto* a = o.if_contains("after"); a && !a->is_null()) {
            if (a->is_int64() && a->as_int64() >= 0) r.after = a->as_int64();
            else if (a->is_uint64() && a->as_uint64() <= static_cast<std::uint64_t>(INT64_MAX))
                r.after = static_cast<std::int64_t>(a->as_uint64());
            else return ws_client_error{"bad_request", "\"after\" must be a reading id (a non-negative integer)"};
        }
        if (const auto* p = o.if_contains("policy"); p && !p->is_null()) {
            if (!p->is_string() || (p->as_string() != "all" && p->as_string() != "conflate"))
                return ws_client_error{"bad_request", "\"policy\" must be \"all\" or \"conflate\""};
            r.conflate = p->as_string() == "conflate";
        }
        return r;
    }
    if (*op == "unsubscribe") {
        r.op = ws_client_request::kind::unsubscribe;
        return r;
    }
    return ws_client_error{"bad_request", "\"op\" must be subscribe or unsubscribe"};
}

}  // namespace telemetry::bridge
