// Test support: a Server-Sent Events client that behaves like a browser's EventSource (it keeps
// the last event id and can reconnect with Last-Event-ID). The parsing is telemetry::sse's.
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
    while (head_buf_.find("\r\n\r\n") == std::string::npos)
        if (!fill(deadline)) break;
    const auto end = head_buf_.find("\r\n\r\n");
    if (end == std::string::npos) return;
    header_ = head_buf_.substr(0, end);
    if (header_.size() > 12) status_ = std::stoi(header_.substr(9, 3));
    if (last_event_id) last_id_ = *last_event_id;
    parser_.reset(last_id_);
    in_body_ = true;
    parse(std::string_view(head_buf_).substr(end + 4));
    std::string().swap(head_buf_);
}

sse_client::~sse_client() {
    if (fd_ >= 0) ::close(fd_);
}

bool sse_client::on_event(const sse::event& ev) {
    parsed_.push_back({std::string(ev.id), std::string(ev.type), std::string(ev.data), std::nullopt});
    return true;
}

bool sse_client::on_retry(std::chrono::milliseconds ms) {
    parsed_.push_back({parser_.last_event_id(), "retry", "", ms});
    return true;
}

void sse_client::parse(std::string_view bytes) {
    if (!parser_.feed(bytes, *this)) throw std::runtime_error("sse: the event stream exceeds the parser's limits");
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
    const std::string_view bytes(tmp, static_cast<std::size_t>(n));
    if (in_body_) parse(bytes);
    else head_buf_.append(bytes);
    return true;
}

std::optional<sse_event> sse_client::next(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (parsed_.empty())
        if (!fill(deadline)) return std::nullopt;
    sse_event ev = std::move(parsed_.front());
    parsed_.pop_front();
    last_id_ = ev.id;
    return ev;
}

}  // namespace telemetry::testing
