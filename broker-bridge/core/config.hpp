// The bridge's typed configuration: TOML file -> config, or an error naming file:line and key.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace telemetry::bridge {

struct config_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct mqtt_config {
    std::string url = "tcp://127.0.0.1:1883";
    std::string client_id = "broker-bridge";
    std::string topic_prefix = "sensors";
    // Replicas subscribe to readings as $share/<shared_group>/<prefix>/+/+, so the broker hands
    // each reading to one of them (empty: a plain subscription). Presence stays a plain
    // subscription on every replica.
    std::string shared_group;
    std::string username;
    std::string password;
    // TLS, on for an ssl:// or mqtts:// url (docs/api.md section 9). ca_file: the CAs trusted for
    // the broker's certificate (empty: the system's store); cert_file / key_file: a client
    // certificate for brokers that ask for one. verify = false skips the chain and host name
    // checks: anyone on the path can then read the password.
    std::filesystem::path ca_file;
    std::filesystem::path cert_file;
    std::filesystem::path key_file;
    bool verify = true;
    std::chrono::seconds keepalive{30};
    std::uint32_t session_expiry_s = 7 * 24 * 3600;
    std::chrono::seconds reconnect_min{1};
    std::chrono::seconds reconnect_max{30};
};

struct http_config {
    std::string host = "127.0.0.1";
    std::uint16_t port = 8080;
    int threads = 2;
    std::size_t max_header_bytes = 8 * 1024;
    std::size_t max_body_bytes = 64 * 1024;
    std::size_t max_target_bytes = 4 * 1024;
    std::size_t max_connections = 10'000;
    std::chrono::seconds idle_timeout{60};
    // A new connection must finish its TLS handshake (and send a complete first request) in this
    // time: a client that opens connections and sends nothing, or a byte at a time, holds no slot
    // for long (slowloris).
    std::chrono::seconds handshake_timeout{10};
    // HTTPS and WSS when both are set (PEM files; the certificate file may hold the chain). Read
    // again on SIGHUP: new connections get the new certificate, open ones keep theirs.
    std::filesystem::path tls_cert;
    std::filesystem::path tls_key;
    bool tls() const noexcept { return !tls_cert.empty(); }
    std::chrono::seconds longpoll_default{30};
    std::chrono::seconds longpoll_max{120};
    std::size_t longpoll_max_filters = 32;
    std::size_t gzip_min_bytes = 1024;
    // Connections one client address may hold open: one client cannot lock everyone else out.
    std::size_t max_connections_per_address = 1000;
    // Cross-origin callers allowed (CORS, and the Origin of WebSocket and SSE requests); the
    // bridge's own origin is always allowed.
    std::vector<std::string> allowed_origins;
    // Host header names accepted (DNS rebinding); empty: loopback names when listening on a
    // loopback address, any name otherwise.
    std::vector<std::string> allowed_hosts;
    // Listening beyond loopback with authentication off is refused unless this is set.
    bool allow_public_without_auth = false;
    // Requests per second per client address (0: no limit), and the burst above it (0: twice
    // the rate): beyond, 429 with Retry-After.
    double rate_limit_per_s = 0;
    double rate_limit_burst = 0;
};

// A static bearer token and the topic filters it may read.
struct static_token {
    std::string token;
    std::vector<std::string> topics;
    std::string name;  // who holds it, for the log (never the token itself)
};

struct auth_config {
    std::vector<std::string> jwt_hs256_keys;  // any of them verifies a JWT (rotation)
    std::string jwt_audience;                 // when set, a JWT's aud must name it
    std::string jwt_issuer;                   // when set, a JWT's iss must equal it
    std::chrono::seconds leeway{30};          // clock skew allowed on exp and nbf
    std::vector<static_token> tokens;
    std::string metrics_token;                // when set, GET /metrics requires it
    double rate_limit_per_s = 0;              // requests per second per token (0: no limit)
    double rate_limit_burst = 0;              // 0: twice the rate
    // Authentication is on in any configuration that sets tokens or JWT keys.
    bool enabled() const noexcept { return !jwt_hs256_keys.empty() || !tokens.empty(); }
};

struct storage_config {
    // "sqlite" (the embedded default: the file at db_path) or "postgresql" (the database at url,
    // shared by several replicas; db_path then only places this replica's ingest journal).
    std::string engine = "sqlite";
    std::string url;  // libpq connection string or postgresql:// URL
    bool postgresql() const noexcept { return engine == "postgresql"; }
    std::filesystem::path db_path = "data/telemetry.db";
    int query_threads = 2;
    int retention_days = 30;  // 0 keeps everything
    std::chrono::seconds retention_interval{600};
    std::size_t retention_chunk = 2000;
};

struct ingest_config {
    std::size_t max_payload_bytes = 16 * 1024;
    std::size_t max_senml_records = 1000;
    // Disk reserved up front for the ingest journal; compaction writes a second file this large.
    std::uint64_t journal_reserve_mb = 64;
    // Series (sensor, metric) the bridge accepts; a reading of a new series beyond it is rejected
    // (series_limit), so that publishing ever new names cannot grow memory without bound. Each
    // series costs about 2 KB of memory (docs/api.md 8.3).
    std::size_t max_series = 100'000;
    // Power-loss durability (docs/api.md 1.5): each journal append is synced to stable storage
    // (msync) before the MQTT callback returns and Paho sends the PUBACK, and SQLite runs with
    // synchronous=FULL. Off: durable against a crash of the process only.
    bool sync = false;
    // A reading's time is accepted this far after / before its arrival (docs/api.md section 1.4).
    // Left out of the file, max_ts_past is the retention period (30 days with retention off):
    // an older reading would only be deleted by the next retention pass.
    std::chrono::seconds max_ts_future{300};
    std::chrono::seconds max_ts_past{30 * 86'400};
};

struct stream_config {
    std::size_t max_queue_bytes = 1 << 20;   // per connection; beyond it a slow client is dropped
    // All streams' queues together; beyond it the streams furthest behind are dropped first
    // (streams/send_budget.hpp).
    std::size_t max_total_queue_bytes = 256u << 20;
    std::size_t max_queue_events = 10'000;
    std::chrono::seconds heartbeat{15};
    std::chrono::milliseconds retry{2000};  // SSE reconnect hint
    std::chrono::seconds write_timeout{30};
    std::size_t max_filters = 32;
    // Bounds on one topic filter a client sends (real topics here have three levels): memory
    // that a client controls stays small.
    std::size_t max_filter_bytes = 256;
    std::size_t max_filter_levels = 8;
    // The largest WebSocket message a client may send (subscribe/unsubscribe are small); a larger
    // one closes the connection with 1009.
    std::size_t ws_max_message_bytes = 64 * 1024;

    // How many readings a replay or back-fill queues at once, at most `most`: half the send
    // queue's bound in events, and in bytes at up to 512 bytes a reading, so that a client
    // resuming far behind is never closed by its own replay, however small the bound.
    std::size_t replay_chunk(std::size_t most) const {
        const std::size_t fit = std::min(max_queue_events / 2, max_queue_bytes / 1024);
        return std::clamp<std::size_t>(fit, 1, most);
    }
};

// The gRPC API (docs/api.md section 12): off unless `listen` is set. It uses [http]'s TLS
// certificate when that is set, [auth]'s tokens and [stream]'s bounds.
struct grpc_config {
    std::string host;  // empty: off
    std::uint16_t port = 0;  // 0: a free port, logged at start-up
    bool enabled() const noexcept { return !host.empty(); }
};

struct hub_config {
    std::size_t window = 100'000;  // recent readings kept in memory for replay and long polls
};

// [mqtt_out]: committed readings republished to MQTT (docs/api.md section 12). Broker settings
// left out are taken from [mqtt] when the bridge starts (after --mqtt), see mqtt_out_broker().
struct mqtt_out_config {
    std::string prefix;                          // empty: republish off
    std::optional<std::string> retained_prefix;  // absent: `<prefix>/latest`; "": no retained copies
    std::optional<std::string> url;
    std::optional<std::string> client_id;        // absent: `<mqtt.client_id>-out`
    std::optional<std::string> username;
    std::optional<std::string> password;
    std::optional<std::filesystem::path> ca_file;
    std::optional<std::filesystem::path> cert_file;
    std::optional<std::filesystem::path> key_file;
    std::optional<bool> verify;
    // Messages (readings, retained copies, presence) published and not yet acknowledged (PUBACK);
    // the broker's Receive Maximum caps it further.
    std::size_t max_inflight = 100;
    // Committed readings handed over live and not yet published; beyond it the republisher lets
    // go of live delivery and reads storage instead (it never queues without bound).
    std::size_t max_queued = 10'000;
    bool enabled() const noexcept { return !prefix.empty(); }
    // Where the latest reading per series is retained; empty: nowhere.
    std::string latest_prefix() const { return retained_prefix.value_or(prefix + "/latest"); }
};

struct config {
    mqtt_config mqtt;
    mqtt_out_config mqtt_out;
    http_config http;
    storage_config storage;
    ingest_config ingest;
    stream_config stream;
    grpc_config grpc;
    hub_config hub;
    auth_config auth;
    std::string log_level = "info";
};

// Reads a TOML file; keys absent keep their defaults. Unknown keys and bad values are errors that
// name the file, line and key, so a typo never silently falls back to a default.
config load_config(const std::filesystem::path& file);

// Parses the TOML text (used by load_config and by tests). `origin` names the source in errors.
config parse_config(std::string_view toml_text, const std::string& origin);

// "HOST:PORT" -> (host, port); throws config_error.
void apply_listen(http_config& http, const std::string& host_port);

// An ssl://, mqtts:// or wss:// broker URL: the connection uses TLS.
bool mqtt_url_uses_tls(std::string_view url);

// 127.x.y.z, ::1 or localhost.
bool is_loopback_host(std::string_view host);

// The broker connection of [mqtt_out]: its own keys, the rest as [mqtt] has them.
mqtt_config mqtt_out_broker(const config& c);

// Checks cross-field rules (ranges, prefix syntax, MQTT TLS files exist); throws config_error.
void validate(const config& c);

}  // namespace telemetry::bridge
