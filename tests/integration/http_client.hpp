// Test support: a small blocking HTTP/1.1 client over a plain socket (one request per connection).
#pragma once

#include <charconv>
#include <string_view>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace telemetry::testing {

struct http_response {
    int status = 0;
    std::map<std::string, std::string> headers;  // names lower-cased
    std::string body;
    bool has(const std::string& name) const { return headers.count(name) > 0; }
    std::string header(const std::string& name) const {
        auto it = headers.find(name);
        return it == headers.end() ? std::string{} : it->second;
    }
};

using header_list = std::vector<std::pair<std::string, std::string>>;

// Sends `raw` as is and reads the answer until the server closes. Throws on connect failure.
// The reading id of a cursor as the bridge hands it out, `N@E` (docs/api.md 2.1); -1 if none.
inline std::int64_t cursor_id(std::string_view cursor) {
    std::int64_t id = -1;
    std::from_chars(cursor.data(), cursor.data() + cursor.size(), id);
    return id;
}

http_response http_raw(std::uint16_t port, const std::string& raw,
                       std::chrono::milliseconds timeout = std::chrono::seconds(30));
// Sends the parts one after another with `pause` between them (so the server's reads end where a
// part does), then reads as http_raw does.
http_response http_raw_parts(std::uint16_t port, const std::vector<std::string>& parts,
                             std::chrono::milliseconds pause,
                             std::chrono::milliseconds timeout = std::chrono::seconds(30));
// A well-formed request with "Connection: close".
http_response http_get(std::uint16_t port, const std::string& target, const header_list& headers = {},
                       const std::string& method = "GET",
                       std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace telemetry::testing
