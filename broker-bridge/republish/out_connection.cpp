// libmosquitto driven from an io_context (see out_connection.hpp): the client runs unthreaded,
// so publish() writes to the socket at once, and its callbacks run inside the loop calls below,
// on the same thread. Readability, writability and a one-second tick replace mosquitto_loop(),
// whose select() refuses descriptors above FD_SETSIZE, which a bridge with many streams has.
#include "republish/out_connection.hpp"

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include <boost/asio/post.hpp>

#include <charconv>
#include <cstring>
#include <mutex>
#include <stdexcept>

namespace telemetry::bridge {
namespace {

namespace asio = boost::asio;

constexpr auto tick_interval = std::chrono::seconds(1);

std::string mosquitto_error(int rc) {
    if (rc == MOSQ_ERR_ERRNO) return std::string("system error: ") + std::strerror(errno);
    return mosquitto_strerror(rc);
}

void check(int rc, const char* what) {
    if (rc != MOSQ_ERR_SUCCESS) throw std::runtime_error(std::string("mqtt_out: ") + what + ": " + mosquitto_error(rc));
}

}  // namespace

std::optional<out_address> parse_out_url(std::string_view url) {
    out_address a;
    std::string_view rest;
    for (auto [scheme, tls, port] : {std::tuple{"tcp://", false, 1883}, std::tuple{"mqtt://", false, 1883},
                                     std::tuple{"ssl://", true, 8883}, std::tuple{"mqtts://", true, 8883}})
        if (url.starts_with(scheme)) {
            rest = url.substr(std::string_view(scheme).size());
            a.tls = tls;
            a.port = port;
        }
    if (rest.empty()) return std::nullopt;
    if (const auto slash = rest.find('/'); slash != std::string_view::npos) rest = rest.substr(0, slash);
    std::string_view host = rest, port_text;
    if (rest.front() == '[') {  // [IPv6]:port
        const auto close = rest.find(']');
        if (close == std::string_view::npos) return std::nullopt;
        host = rest.substr(1, close - 1);
        if (close + 1 < rest.size()) {
            if (rest[close + 1] != ':') return std::nullopt;
            port_text = rest.substr(close + 2);
        }
    } else if (const auto colon = rest.rfind(':'); colon != std::string_view::npos) {
        host = rest.substr(0, colon);
        port_text = rest.substr(colon + 1);
    }
    if (!port_text.empty()) {
        int p = 0;
        const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), p);
        if (ec != std::errc{} || end != port_text.data() + port_text.size() || p < 1 || p > 65535) return std::nullopt;
        a.port = p;
    }
    if (host.empty()) return std::nullopt;
    a.host = std::string(host);
    return a;
}

out_connection::out_connection(asio::io_context& io, const mqtt_config& broker, std::size_t max_inflight, events e)
    : io_(io),
      address_([&] {
          auto a = parse_out_url(broker.url);
          if (!a) throw std::runtime_error("mqtt_out: cannot use the url '" + broker.url + "'");
          return *a;
      }()),
      // libmosquitto accepts 0 (none) or at least 5 seconds.
      keepalive_s_(broker.keepalive.count() == 0 ? 0 : std::max<int>(5, static_cast<int>(broker.keepalive.count()))),
      events_(std::move(e)),
      socket_(io),
      tick_(io) {
    static std::once_flag init;
    std::call_once(init, [] { mosquitto_lib_init(); });
    mosq_ = mosquitto_new(broker.client_id.c_str(), true, this);
    if (!mosq_) throw std::runtime_error("mqtt_out: cannot create a client: " + mosquitto_error(MOSQ_ERR_ERRNO));
    try {
        check(mosquitto_int_option(mosq_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5), "MQTT 5");
        check(mosquitto_int_option(mosq_, MOSQ_OPT_TCP_NODELAY, 1), "TCP_NODELAY");
        // Our window stays within it; libmosquitto would otherwise hold messages back itself.
        check(mosquitto_int_option(mosq_, MOSQ_OPT_SEND_MAXIMUM, static_cast<int>(std::min<std::size_t>(max_inflight, 65535))),
              "send maximum");
        if (!broker.username.empty())
            check(mosquitto_username_pw_set(mosq_, broker.username.c_str(),
                                            broker.password.empty() ? nullptr : broker.password.c_str()),
                  "username");
        if (address_.tls) {
            // No ca_file: the system's trust store, as for ingest.
            if (broker.ca_file.empty()) check(mosquitto_int_option(mosq_, MOSQ_OPT_TLS_USE_OS_CERTS, 1), "system CAs");
            const std::string ca = broker.ca_file.string(), cert = broker.cert_file.string();
            // A key_file left out: the key is in cert_file, as Paho (ingest) reads it.
            const std::string key = broker.key_file.empty() ? cert : broker.key_file.string();
            check(mosquitto_tls_set(mosq_, ca.empty() ? nullptr : ca.c_str(), nullptr, cert.empty() ? nullptr : cert.c_str(),
                                    cert.empty() ? nullptr : key.c_str(), nullptr),
                  "TLS files");
            if (!broker.verify) {
                check(mosquitto_tls_opts_set(mosq_, 0 /* SSL_VERIFY_NONE */, nullptr, nullptr), "TLS verify");
                check(mosquitto_tls_insecure_set(mosq_, true), "TLS host name check");
            }
        }
    } catch (...) {
        mosquitto_destroy(mosq_);
        throw;
    }
    mosquitto_connect_v5_callback_set(mosq_, &on_connect);
    mosquitto_publish_v5_callback_set(mosq_, &on_publish);
    mosquitto_log_callback_set(mosq_, &on_log);
}

out_connection::~out_connection() {
    disconnect();
    mosquitto_destroy(mosq_);  // closes the socket
}

void out_connection::connect() {
    const int rc = mosquitto_connect_async(mosq_, address_.host.c_str(), address_.port, keepalive_s_);
    if (rc != MOSQ_ERR_SUCCESS || mosquitto_socket(mosq_) < 0) {
        // On loopback the TLS handshake can fail within this call: OpenSSL's reason is logged.
        const std::string why = with_logged_error(mosquitto_error(rc == MOSQ_ERR_SUCCESS ? MOSQ_ERR_NO_CONN : rc));
        asio::post(io_, [this, why, alive = std::weak_ptr<int>(alive_)] {
            if (alive.lock()) events_.closed(why, false);
        });
        return;
    }
    socket_.assign(mosquitto_socket(mosq_));
    open_ = true;
    watch_read();
    watch_write();  // the TCP connect, the TLS handshake and CONNECT complete on writability
    tick_.expires_after(tick_interval);
    tick_.async_wait([this, alive = std::weak_ptr<int>(alive_)](const boost::system::error_code& ec) {
        if (!ec && alive.lock()) tick();
    });
}

std::optional<int> out_connection::publish(const std::string& topic, std::string_view payload, bool retained,
                                           std::int64_t id, const std::string& epoch, std::string& error) {
    if (!connected_) {
        error = "not connected";
        return std::nullopt;
    }
    mosquitto_property* props = nullptr;
    if (id > 0) {
        char id_text[24];
        *std::to_chars(id_text, id_text + sizeof id_text - 1, id).ptr = '\0';
        if (mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "id", id_text) != MOSQ_ERR_SUCCESS ||
            mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "epoch", epoch.c_str()) != MOSQ_ERR_SUCCESS) {
            mosquitto_property_free_all(&props);
            error = "out of memory";
            return std::nullopt;
        }
    }
    int mid = 0;
    const int rc = mosquitto_publish_v5(mosq_, &mid, topic.c_str(), static_cast<int>(payload.size()), payload.data(), 1,
                                        retained, props);
    mosquitto_property_free_all(&props);
    // A failed write (the connection going away) is seen by the next read, which closes.
    if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_CONN_LOST && rc != MOSQ_ERR_ERRNO) {
        error = mosquitto_error(rc);
        return std::nullopt;
    }
    if (mosquitto_want_write(mosq_)) watch_write();  // the socket's buffer is full: the rest later
    return mid;
}

void out_connection::disconnect() {
    if (connected_) mosquitto_disconnect(mosq_);  // writes DISCONNECT at once (unthreaded)
    connected_ = false;
    release_socket();
}

void out_connection::release_socket() {
    if (!open_) return;
    open_ = false;
    writing_ = false;
    boost::system::error_code ignored;
    socket_.cancel(ignored);
    (void)socket_.release();  // the descriptor is libmosquitto's to close
    tick_.cancel();
}

void out_connection::watch_read() {
    socket_.async_wait(asio::posix::stream_descriptor::wait_read,
                       [this, alive = std::weak_ptr<int>(alive_)](const boost::system::error_code& ec) {
                           if (ec || !alive.lock() || !open_) return;
                           acks_.clear();
                           after_io(mosquitto_loop_read(mosq_, 1));
                           if (open_) watch_read();
                       });
}

void out_connection::watch_write() {
    if (writing_ || !open_) return;
    writing_ = true;
    socket_.async_wait(asio::posix::stream_descriptor::wait_write,
                       [this, alive = std::weak_ptr<int>(alive_)](const boost::system::error_code& ec) {
                           if (!alive.lock()) return;
                           writing_ = false;
                           if (ec || !open_) return;
                           acks_.clear();
                           after_io(mosquitto_loop_write(mosq_, 1));
                           if (open_ && mosquitto_want_write(mosq_)) watch_write();
                       });
}

// Keep-alive: PINGREQ when due, and the connection closed when the broker stopped answering.
void out_connection::tick() {
    if (!open_) return;
    acks_.clear();
    after_io(mosquitto_loop_misc(mosq_));
    if (!open_) return;
    if (mosquitto_want_write(mosq_)) watch_write();
    tick_.expires_after(tick_interval);
    tick_.async_wait([this, alive = std::weak_ptr<int>(alive_)](const boost::system::error_code& ec) {
        if (!ec && alive.lock()) tick();
    });
}

// After a loop call: announce what its callbacks gathered, then whether the connection ended.
// The events may destroy this object (the republisher replaces a closed connection), so nothing
// touches a member after one.
void out_connection::after_io(int rc) {
    const bool closed = mosquitto_socket(mosq_) < 0 || (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_CONN_PENDING);
    if (receive_maximum_ > 0) {
        const int m = receive_maximum_;
        receive_maximum_ = 0;
        // Accepted and closed in the same read: never announced, so it ends as a failed connect
        // (the republisher retries), not as a lost connection it never saw begin.
        if (!closed) {
            connected_ = true;
            auto alive = std::weak_ptr<int>(alive_);
            events_.connected(m);
            if (!alive.lock()) return;
        }
    }
    if (!acks_.empty()) {
        auto alive = std::weak_ptr<int>(alive_);
        std::vector<acked> batch;
        batch.swap(acks_);
        events_.acknowledged(batch);
        if (!alive.lock()) return;
    }
    if (!closed) return;
    const std::string why = with_logged_error(refused_ ? std::string("refused: ") + mosquitto_reason_string(refused_)
                                                       : mosquitto_error(rc == MOSQ_ERR_SUCCESS ? MOSQ_ERR_CONN_LOST : rc));
    refused_ = 0;
    close(why);
}

// `why`, with libmosquitto's last error line since the last call, if any.
std::string out_connection::with_logged_error(std::string why) {
    if (!last_error_.empty()) why += " (" + last_error_ + ")";
    last_error_.clear();
    return why;
}

void out_connection::close(const std::string& why) {
    const bool was_connected = connected_;
    connected_ = false;
    release_socket();
    events_.closed(why, was_connected);  // last: it may destroy us
}

void out_connection::on_connect(mosquitto*, void* self, int rc, int, const mosquitto_property* props) {
    auto* c = static_cast<out_connection*>(self);
    if (rc != 0) {  // a CONNACK refusing us; libmosquitto closes after it
        c->refused_ = rc;
        return;
    }
    // The broker's Receive Maximum (absent: 65535): our window stays within it.
    std::uint16_t receive_maximum = 65535;
    mosquitto_property_read_int16(props, MQTT_PROP_RECEIVE_MAXIMUM, &receive_maximum, false);
    c->receive_maximum_ = receive_maximum > 0 ? receive_maximum : 65535;
}

// Why a connection failed is often only in libmosquitto's log (OpenSSL's reason for a refused
// certificate): the last error line goes into the reason we report.
void out_connection::on_log(mosquitto*, void* self, int level, const char* text) {
    if (level == MOSQ_LOG_ERR && text) static_cast<out_connection*>(self)->last_error_ = text;
}

void out_connection::on_publish(mosquitto*, void* self, int mid, int reason_code, const mosquitto_property*) {
    static_cast<out_connection*>(self)->acks_.push_back(acked{mid, reason_code});
}

}  // namespace telemetry::bridge
