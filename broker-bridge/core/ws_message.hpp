// A WebSocket client's message on /api/v1/ws (docs/api.md): JSON subscribe / unsubscribe ->
// what it asks, or the error the session answers with. Pure and fuzzable; the session acts on it.
#pragma once

#include "core/bucket_aggregator.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "core/cursor.hpp"

namespace telemetry::bridge {

// {"op":"subscribe","topic":F[,"after":N|"N@E"][,"epoch":"E"][,"policy":"all"|"conflate"][,"bucket":"1m"[,"provisional":B]]}
// {"op":"unsubscribe","topic":F}
// The topic is not validated here (the session checks it against its bounds and the grant).
struct ws_client_request {
    enum class kind { subscribe, unsubscribe };
    kind op = kind::subscribe;
    std::string topic;
    // subscribe only: a reading id (non-negative) or a cursor `N@E` (docs/api.md 2.1), and the
    // epoch it names (from the cursor, or from "epoch" beside a numeric id; absent: the current).
    std::optional<wire_cursor> after;
    bool conflate = false;              // subscribe only
    std::optional<bucket_spec> bucket;  // subscribe only: live aggregates instead of readings
};

// The error the session sends back ({"op":"error","code":..,"message":..}).
struct ws_client_error {
    std::string_view code;     // "bad_json" or "bad_request"
    std::string_view message;
};

std::variant<ws_client_request, ws_client_error> parse_ws_client_message(std::string_view text);

}  // namespace telemetry::bridge
