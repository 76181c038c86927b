// The bridge's base URL (--url / BRIDGE_URL) and the request targets built under it.
#include "server_url.hpp"

#include "exit_codes.hpp"

#include <boost/url/encode.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

namespace telemetry::cli {
namespace {

std::string encoded(const std::string& s) { return boost::urls::encode(s, boost::urls::unreserved_chars); }

}  // namespace

server_url parse_server_url(const std::string& text) {
    auto parsed = boost::urls::parse_uri(text);
    if (!parsed) throw cli_error(exit_code::usage, "--url '" + text + "' is not a URL (expected http://HOST:PORT)");
    const auto& u = *parsed;
    if (u.scheme() != "http")
        throw cli_error(exit_code::usage, "--url '" + text + "': only http:// is supported");
    if (u.host().empty()) throw cli_error(exit_code::usage, "--url '" + text + "' has no host");
    if (u.has_query() || u.has_fragment())
        throw cli_error(exit_code::usage, "--url '" + text + "' must not have a query or fragment");
    server_url s;
    s.host = u.host_address();
    s.port = u.has_port() && !u.port().empty() ? std::string(u.port()) : "80";
    s.host_header = std::string(u.encoded_host_and_port());
    s.base_path = std::string(u.encoded_path());
    while (!s.base_path.empty() && s.base_path.back() == '/') s.base_path.pop_back();
    return s;
}

std::string make_target(const server_url& base, const std::vector<std::string>& segments,
                        const query_list& query) {
    std::string t = base.base_path;
    for (const auto& s : segments) {
        t += '/';
        t += encoded(s);
    }
    char sep = '?';
    for (const auto& [k, v] : query) {
        t += sep;
        t += encoded(k);
        t += '=';
        t += encoded(v);
        sep = '&';
    }
    return t;
}

}  // namespace telemetry::cli
