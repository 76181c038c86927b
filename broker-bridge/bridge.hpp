// Wires the bridge together: storage -> ingest -> hub -> HTTP, and runs it until a signal.
#pragma once

#include "core/config.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <memory>
#include <string>

namespace telemetry::bridge {

// Construction opens storage, loads the hub and binds the HTTP port, or throws: a bridge that
// exists is able to serve. run() connects to MQTT, serves until SIGINT/SIGTERM, then stops taking
// work, lets the commit in progress finish, answers parked polls and returns the exit code.
class bridge {
public:
    explicit bridge(config c);
    ~bridge();
    bridge(const bridge&) = delete;
    bridge& operator=(const bridge&) = delete;

    boost::asio::ip::tcp::endpoint http_endpoint() const;
    // The gRPC API's port (its bound port when [grpc] listen gives 0); 0 when it is off.
    std::uint16_t grpc_port() const;
    const std::string& grpc_host() const;
    int run();

private:
    struct parts;
    std::unique_ptr<parts> p_;
};

}  // namespace telemetry::bridge
