// Test support: a loopback TCP proxy whose client-to-server direction can be held back.
#include "tcp_proxy.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <stdexcept>
#include <vector>

namespace telemetry::testing {
namespace {

sockaddr_in loopback(std::uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    return a;
}

bool write_all(int fd, const char* p, std::size_t n) {
    while (n > 0) {
        const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return false;
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

// One relayed connection, served until either side closes.
struct relay {
    int client = -1;
    int server = -1;
    std::vector<char> held;  // client bytes kept back
    ~relay() {
        if (client >= 0) ::close(client);
        if (server >= 0) ::close(server);
    }
};

}  // namespace

tcp_proxy::tcp_proxy(std::uint16_t target_port) : target_(target_port) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    auto a = loopback(0);
    if (listener_ < 0 || ::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listener_, 16) != 0)
        throw std::runtime_error("tcp_proxy: cannot listen");
    socklen_t len = sizeof a;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
}

tcp_proxy::~tcp_proxy() {
    stopping_ = true;
    thread_.join();
    ::close(listener_);
}

// One thread, one connection at a time (the bridge holds one MQTT connection): a new one
// replaces the old.
void tcp_proxy::run() {
    std::unique_ptr<relay> r;
    char buf[65536];
    while (!stopping_) {
        std::vector<pollfd> fds{{listener_, POLLIN, 0}};
        if (r) {
            fds.push_back({r->client, POLLIN, 0});
            fds.push_back({r->server, POLLIN, 0});
        }
        if (::poll(fds.data(), fds.size(), 20) < 0) continue;
        if (fds[0].revents & POLLIN) {
            const int c = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c >= 0) {
                r = std::make_unique<relay>();
                r->client = c;
                r->server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                auto a = loopback(target_);
                if (::connect(r->server, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) r.reset();
            }
            continue;
        }
        if (!r) continue;
        if (!held_ && !r->held.empty()) {
            if (!write_all(r->server, r->held.data(), r->held.size())) r.reset();
            if (r) r->held.clear();
            continue;
        }
        bool open = true;
        if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            const ssize_t n = ::recv(r->client, buf, sizeof buf, 0);
            if (n <= 0) open = false;
            else if (held_) r->held.insert(r->held.end(), buf, buf + n);
            else open = write_all(r->server, buf, static_cast<std::size_t>(n));
        }
        if (open && (fds[2].revents & (POLLIN | POLLHUP | POLLERR))) {
            const ssize_t n = ::recv(r->server, buf, sizeof buf, 0);
            open = n > 0 && write_all(r->client, buf, static_cast<std::size_t>(n));
        }
        if (!open) r.reset();  // what was held goes with it
    }
}

}  // namespace telemetry::testing
