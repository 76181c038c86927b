// The bridge's base URL (--url / BRIDGE_URL) and the request targets built under it.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace telemetry::cli {

struct server_url {
    std::string host;       // as given; an IPv6 literal without brackets
    std::string port;       // "80" when the URL has none
    std::string base_path;  // "" or a prefix such as "/telemetry" (a bridge behind a proxy)
    std::string host_header;  // host[:port] as the Host header wants it
};

using query_list = std::vector<std::pair<std::string, std::string>>;

// Parses "http://host[:port][/prefix]"; throws cli_error(usage) naming what is wrong.
server_url parse_server_url(const std::string& text);

// base_path + every segment percent-encoded + "?k=v&..." with every key and value
// percent-encoded (a '+' in a topic filter must reach the server as %2B, not as a space).
std::string make_target(const server_url& base, const std::vector<std::string>& segments,
                        const query_list& query = {});

}  // namespace telemetry::cli
