// Test support: a Server-Sent Events reader that behaves like a browser's EventSource (it keeps
// the last event id and can reconnect with Last-Event-ID).
#include "sse_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>

namespace telemetry::testing {

sse_client::sse_client(std::uint16_t port, const std::string& target,
                       const std::optional<std::string>& last_event_id, int receive_buffer) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (receive_buffer > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
        throw std::runtime_error("sse: cannot connect");
    std::string req = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n";
    if (last_event_id) req += "Last-Event-ID: " + *last_event_id + "\r\n";
    req += "\r\n";
    ::send(fd_, req.data(), req.size(), MSG_NOSIGNAL);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (buf_.find("\r\n\r\n") == std::string::npos)
        if (!fill(deadline)) break;
    const auto end = buf_.find("\r\n\r\n");
    if (end == std::string::npos) return;
    header_ = buf_.substr(0, end);
    buf_.erase(0, end + 4);
    if (header_.size() > 12) status_ = std::stoi(header_.substr(9, 3));
    if (last_event_id) last_id_ = *last_event_id;
}

sse_client::~sse_client() {
    if (fd_ >= 0) ::close(fd_);
}

bool sse_client::fill(std::chrono::steady_clock::time_point deadline) {
    if (closed_) return false;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char tmp[65536];
    const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) {
        closed_ = true;
        return false;
    }
    buf_.append(tmp, static_cast<std::size_t>(n));
    return true;
}

std::optional<sse_event> sse_client::next(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        const auto end = buf_.find("\n\n");
        if (end == std::string::npos) {
            if (!fill(deadline)) return std::nullopt;
            continue;
        }
        const std::string block = buf_.substr(0, end + 1);
        buf_.erase(0, end + 2);
        sse_event ev;
        bool any = false;
        std::size_t pos = 0;
        while (pos < block.size()) {
            const auto eol = block.find('\n', pos);
            const std::string line = block.substr(pos, eol - pos);
            pos = eol + 1;
            if (line.empty() || line[0] == ':') continue;
            const auto colon = line.find(':');
            const std::string field = line.substr(0, colon);
            std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
            if (!value.empty() && value[0] == ' ') value.erase(0, 1);
            any = true;
            if (field == "id") ev.id = value;
            else if (field == "event") ev.event = value;
            else if (field == "data") ev.data += (ev.data.empty() ? "" : "\n") + value;
            else if (field == "retry") ev.retry = value;
        }
        if (!any) continue;  // a comment (heartbeat)
        if (ev.event.empty()) ev.event = ev.data.empty() && !ev.retry.empty() ? "retry" : "message";
        if (!ev.id.empty()) last_id_ = ev.id;
        return ev;
    }
}

}  // namespace telemetry::testing
