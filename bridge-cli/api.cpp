// Talking to the bridge's API: a client from the global options, which status means which exit
// code, and JSON bodies.
#include "api.hpp"

#include "exit_codes.hpp"

#include <boost/json/parse.hpp>

namespace telemetry::cli {

http_client make_client(const global_options& g) {
    return http_client(parse_server_url(g.url),
                       std::chrono::milliseconds(static_cast<std::int64_t>(g.timeout_s * 1000)), g.token);
}

std::string describe_error(const http_response& r) {
    std::string what = std::to_string(r.status);
    boost::system::error_code ec;
    const auto v = boost::json::parse(r.body, ec);
    if (!ec && v.is_object()) {
        const auto* err = v.get_object().if_contains("error");
        if (err && err->is_object()) {
            const auto* code = err->get_object().if_contains("code");
            const auto* message = err->get_object().if_contains("message");
            if (code && code->is_string()) what += ' ' + std::string(code->get_string());
            if (message && message->is_string()) what += ": " + std::string(message->get_string());
            return what;
        }
    }
    // Not our server's error shape (a proxy in between?): the first line of the body helps.
    std::string first = r.body.substr(0, std::min(r.body.find('\n'), std::size_t{200}));
    return first.empty() ? what : what + ": " + first;
}

void check_status(const http_response& r) {
    if (r.status >= 200 && r.status < 300) return;
    if (r.status >= 400 && r.status < 500) throw cli_error(exit_code::client_error, describe_error(r));
    if (r.status >= 500 && r.status < 600) throw cli_error(exit_code::server_error, describe_error(r));
    throw cli_error(exit_code::bad_response, "unexpected answer " + describe_error(r));
}

boost::json::value parse_body(const http_response& r) {
    boost::system::error_code ec;
    auto v = boost::json::parse(r.body, ec);
    if (ec) throw cli_error(exit_code::bad_response, "the server's answer is not JSON: " + ec.message());
    return v;
}

}  // namespace telemetry::cli
