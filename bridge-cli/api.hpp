// Talking to the bridge's API: a client from the global options, which status means which exit
// code, and JSON bodies.
#pragma once

#include "commands.hpp"
#include "http_client.hpp"

#include <boost/json/value.hpp>

#include <string>

namespace telemetry::cli {

// A client for --url, --timeout and --token; throws cli_error(usage) for a bad URL.
http_client make_client(const global_options& g);

// Throws cli_error unless r is a 2xx: 4xx -> client_error, 5xx -> server_error, the message
// taken from the server's {"error":{"code","message"}} body ("404 not_found: unknown series a/b").
void check_status(const http_response& r);
// Parses a JSON body; throws cli_error(bad_response) if it is not JSON.
boost::json::value parse_body(const http_response& r);
// The status and the server's own error message, for messages printed while retrying.
std::string describe_error(const http_response& r);

}  // namespace telemetry::cli
