// The gRPC API (docs/api.md section 12), service telemetry.v1.Telemetry on [grpc] listen. This
// header names no gRPC type: gRPC stays in the translation units of broker-bridge/grpc/.
#pragma once

#include "core/config.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace telemetry::bridge {

class authenticator;
class catch_up;
class query_pool;
class hub;
class metrics;
namespace http {
class io_shards;
class send_budget;
class tls_identity;
}  // namespace http

// What the service reads from the rest of the bridge; everything outlives the server.
struct grpc_parts {
    const config& cfg;
    hub& live;
    catch_up& catchup;
    query_pool& queries;  // History and Aggregate read storage there, as HTTP does
    http::io_shards& io;
    metrics& stats;
    http::send_budget& budget;
    const authenticator& auth;
    const http::tls_identity* tls;  // HTTPS's certificate, offered on the gRPC port too; null: plaintext
};

// Construction binds the port and starts gRPC's threads, or throws config_error; streams post
// their work to `io`'s shards, which must run until stop() has returned.
class grpc_server {
public:
    explicit grpc_server(const grpc_parts& parts);
    ~grpc_server();
    grpc_server(const grpc_server&) = delete;
    grpc_server& operator=(const grpc_server&) = delete;

    std::uint16_t port() const noexcept;
    // The TLS identity was reloaded (SIGHUP): new connections get it within a second; open ones
    // keep theirs. No-op when plaintext.
    void identity_changed();
    // Ends every call (streams were told by hub::release_all and end with UNAVAILABLE) and waits
    // for them, at most `grace`, then cancels what is left.
    void stop(std::chrono::milliseconds grace);

private:
    struct impl;
    std::unique_ptr<impl> p_;
};

}  // namespace telemetry::bridge
