// Test support: a small blocking HTTP/1.1 client over a plain socket (one request per connection).
#include "http_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <thread>

namespace telemetry::testing {

http_response http_raw(std::uint16_t port, const std::string& raw, std::chrono::milliseconds timeout) {
    return http_raw_parts(port, {raw}, std::chrono::milliseconds(0), timeout);
}

http_response http_raw_parts(std::uint16_t port, const std::vector<std::string>& parts,
                             std::chrono::milliseconds pause, std::chrono::milliseconds timeout) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        throw std::runtime_error("cannot connect to port " + std::to_string(port));
    }
    for (const auto& part : parts) {
        std::size_t sent = 0;
        while (sent < part.size()) {
            const ssize_t n = ::send(fd, part.data() + sent, part.size() - sent, MSG_NOSIGNAL);
            if (n <= 0) break;  // the server may close early on an oversize request; read its answer
            sent += static_cast<std::size_t>(n);
        }
        if (pause.count() > 0) std::this_thread::sleep_for(pause);
    }
    std::string data;
    char buf[65536];
    for (;;) {
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        data.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);

    http_response r;
    const auto end = data.find("\r\n\r\n");
    if (data.compare(0, 5, "HTTP/") != 0 || end == std::string::npos) return r;  // status 0
    r.status = std::stoi(data.substr(9, 3));
    std::size_t pos = data.find("\r\n") + 2;
    while (pos < end) {
        const auto eol = data.find("\r\n", pos);
        const std::string line = data.substr(pos, eol - pos);
        const auto colon = line.find(':');
        std::string name = line.substr(0, colon);
        std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
        std::string value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.erase(0, 1);
        r.headers[name] = value;
        pos = eol + 2;
    }
    r.body = data.substr(end + 4);
    return r;
}

http_response http_get(std::uint16_t port, const std::string& target, const header_list& headers,
                       const std::string& method, std::chrono::milliseconds timeout) {
    std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
    for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
    req += "\r\n";
    return http_raw(port, req, timeout);
}

}  // namespace telemetry::testing
