// A WebSocket client's subscribe / unsubscribe message, parsed (docs/api.md).
#include "core/ws_message.hpp"

#include "core/text.hpp"

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
            if (a->is_int64() && a->as_int64() >= 0) r.after = wire_cursor{a->as_int64(), {}};
            else if (a->is_uint64() && a->as_uint64() <= static_cast<std::uint64_t>(INT64_MAX))
                r.after = wire_cursor{static_cast<std::int64_t>(a->as_uint64()), {}};
            else if (a->is_string()) r.after = parse_cursor(std::string_view(a->as_string()));
            if (!r.after)
                return ws_client_error{"bad_request", "\"after\" must be a reading id (a non-negative integer) or a cursor (\"N@E\")"};
        }
        if (const auto* e = o.if_contains("epoch"); e && !e->is_null()) {
            std::optional<std::uint32_t> epoch;
            if (e->is_string()) epoch = parse_epoch(std::string_view(e->as_string()));
            if (!epoch || !r.after || (r.after->epoch && r.after->epoch != epoch))
                return ws_client_error{"bad_request", "\"epoch\" must be the epoch of \"after\" (eight hexadecimal digits)"};
            r.after->epoch = epoch;
        }
        if (const auto* p = o.if_contains("policy"); p && !p->is_null()) {
            if (!p->is_string() || (p->as_string() != "all" && p->as_string() != "conflate"))
                return ws_client_error{"bad_request", "\"policy\" must be \"all\" or \"conflate\""};
            r.conflate = p->as_string() == "conflate";
        }
        const auto* b = o.if_contains("bucket");
        const auto* prov = o.if_contains("provisional");
        if (b && !b->is_null()) {
            std::optional<std::int64_t> w;
            if (b->is_string()) w = live_bucket_width(std::string_view(b->as_string()));
            if (!w)
                return ws_client_error{"bad_request", "\"bucket\" must be a duration from 1s to 31d, such as \"1m\""};
            if (r.conflate) return ws_client_error{"bad_request", "\"policy\":\"conflate\" cannot be combined with \"bucket\""};
            bucket_spec spec;
            spec.width_ms = *w;
            if (prov && !prov->is_null()) {
                if (!prov->is_bool()) return ws_client_error{"bad_request", "\"provisional\" must be true or false"};
                spec.provisional = prov->as_bool();
            }
            r.bucket = spec;
        } else if (prov && !prov->is_null()) {
            return ws_client_error{"bad_request", "\"provisional\" needs \"bucket\""};
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
