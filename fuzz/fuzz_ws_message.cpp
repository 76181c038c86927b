// WebSocket client messages on /api/v1/ws: parse_ws_client_message (subscribe / unsubscribe
// JSON) and then what the session does with the topic first, parse_client_filter with the
// default bounds. Properties: an error has a code the API documents; a request's `after` is
// non-negative; the error message is a valid JSON string once escaped.
#include "core/topic_filter.hpp"
#include "core/wire_format.hpp"
#include "core/ws_message.hpp"
#include "fuzz_common.hpp"

#include <boost/json/parse.hpp>

#include <string>

using namespace telemetry;
using namespace telemetry::bridge;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text = fuzz::as_text(data, size);
    auto m = parse_ws_client_message(text);
    if (const auto* e = std::get_if<ws_client_error>(&m)) {
        FUZZ_CHECK(e->code == "bad_json" || e->code == "bad_request");
        FUZZ_CHECK(!e->message.empty());
        return 0;
    }
    const auto& r = std::get<ws_client_request>(m);
    FUZZ_CHECK(!r.after || r.after->id >= 0);
    if (r.op == ws_client_request::kind::unsubscribe) FUZZ_CHECK(!r.after && !r.conflate);

    // What the session answers with: the topic echoed in a JSON string.
    std::string echoed = "{\"op\":\"subscribed\",\"topic\":";
    append_json_string(echoed, r.topic);
    echoed += '}';
    boost::system::error_code ec;
    const auto doc = boost::json::parse(echoed, ec);
    FUZZ_CHECK(!ec && doc.as_object().at("topic").as_string() == r.topic);

    std::string why;
    const auto f = parse_client_filter(r.topic, 256, 8, why);
    FUZZ_CHECK(f.has_value() == why.empty());
    if (f) FUZZ_CHECK(f->str() == r.topic && f->levels().size() <= 8);
    return 0;
}
