// Test support: a loopback TCP proxy whose client-to-server direction can be held back, so a test
// can make a client's acknowledgements get lost with the client (a crash right after sending).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

namespace telemetry::testing {

// Listens on a free loopback port and relays each accepted connection to 127.0.0.1:target_port.
// While held, what the client sends is kept back instead of forwarded; when the connection ends
// it is dropped, as if it had never left the client. Thread safety: hold() from any thread.
class tcp_proxy {
public:
    explicit tcp_proxy(std::uint16_t target_port);
    ~tcp_proxy();
    tcp_proxy(const tcp_proxy&) = delete;
    tcp_proxy& operator=(const tcp_proxy&) = delete;

    std::uint16_t port() const noexcept { return port_; }
    std::string url() const { return "tcp://127.0.0.1:" + std::to_string(port_); }
    // Holds (true) or resumes (false) the client-to-server direction; resuming sends what was held.
    void hold(bool on) noexcept { held_ = on; }

private:
    void run();

    std::uint16_t target_;
    std::uint16_t port_ = 0;
    int listener_ = -1;
    std::atomic<bool> held_{false};
    std::atomic<bool> stopping_{false};
    std::thread thread_;
};

}  // namespace telemetry::testing
