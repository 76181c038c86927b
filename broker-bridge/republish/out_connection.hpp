// The republisher's MQTT 5 connection to the out broker, on libmosquitto driven by the
// republisher's own io_context: one thread, no locks, no thread hand-offs.
//
// Why not Paho, as ingest uses: Paho C's asynchronous clients in one process share one receive
// thread and one send thread, and Debian's build tracks every allocation under one global mutex.
// A second Paho client publishing at the ingest rate would queue its PUBACKs and its writes on the
// threads and locks that ingest's PUBACKs wait for (bench/README.md, "MQTT republish").
#pragma once

#include "core/config.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct mosquitto;
struct mqtt5__property;  // libmosquitto's mosquitto_property

namespace telemetry::bridge {

// host, port and TLS from an mqtt_out.url (tcp://, mqtt://, ssl://, mqtts://; no WebSocket);
// nullopt if it is none of those.
struct out_address {
    std::string host;
    int port = 0;
    bool tls = false;
};
std::optional<out_address> parse_out_url(std::string_view url);

class out_connection {
public:
    struct acked {
        int mid = 0;          // what publish() returned
        int reason_code = 0;  // the PUBACK's: 0x80 and above refuse the message
    };
    // Called on the io_context's thread, never from inside publish().
    struct events {
        std::function<void(int receive_maximum)> connected;          // CONNACK accepted us
        std::function<void(const std::string& why, bool was_connected)> closed;  // failed, refused or lost
        std::function<void(const std::vector<acked>&)> acknowledged;   // PUBACKs, in the order they came
    };

    // Throws std::runtime_error when libmosquitto cannot set up the client (TLS files, URL).
    out_connection(boost::asio::io_context& io, const mqtt_config& broker, std::size_t max_inflight, events e);
    ~out_connection();
    out_connection(const out_connection&) = delete;
    out_connection& operator=(const out_connection&) = delete;

    // Starts connecting (DNS resolution blocks the calling thread); the outcome comes as an event.
    void connect();
    // One QoS 1 message with the user properties id and epoch (none when id is 0). Returns its
    // message id, or nullopt with the reason in `error` (not connected, the socket failed).
    std::optional<int> publish(const std::string& topic, std::string_view payload, bool retained, std::int64_t id,
                               const std::string& epoch, std::string& error);
    // Sends DISCONNECT if connected and stops watching the socket; no event follows.
    void disconnect();

private:
    static void on_connect(mosquitto*, void* self, int rc, int flags, const ::mqtt5__property* props);
    static void on_publish(mosquitto*, void* self, int mid, int reason_code, const ::mqtt5__property* props);
    static void on_log(mosquitto*, void* self, int level, const char* text);
    std::string with_logged_error(std::string why);

    void watch_read();
    void watch_write();
    void tick();
    void after_io(int rc);
    void close(const std::string& why);
    void release_socket();

    boost::asio::io_context& io_;
    const out_address address_;
    const int keepalive_s_;
    events events_;
    mosquitto* mosq_ = nullptr;
    boost::asio::posix::stream_descriptor socket_;
    boost::asio::steady_timer tick_;
    bool writing_ = false;          // a wait for writability is pending
    bool connected_ = false;        // CONNACK accepted
    bool open_ = false;             // the socket is being watched
    int refused_ = 0;               // the CONNACK's reason code, when it refused us
    int receive_maximum_ = 0;       // from an accepting CONNACK not yet announced
    std::vector<acked> acks_;       // gathered by on_publish during one read
    std::string last_error_;        // libmosquitto's last error line (OpenSSL's reason, say)
    // Handlers still queued in the io_context when we are gone find it expired.
    std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace telemetry::bridge
