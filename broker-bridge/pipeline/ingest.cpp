// MQTT ingest: owns the MQTT client, makes every reading durable before it is acknowledged,
// recognises redeliveries, and hands readings to the committer.
#include "pipeline/ingest.hpp"

#include "core/delivery_key.hpp"
#include "core/metrics.hpp"
#include "database.hpp"
#include "pipeline/committer.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <stdexcept>

namespace telemetry::bridge {
namespace {

constexpr std::size_t max_logged_rejects = 10'000;
// MQTT 5 Receive Maximum: the broker never has more QoS 1 messages unacknowledged towards us
// (Mosquitto takes it instead of its max_inflight_messages; 100 is what conf/mosquitto.conf sets,
// and more buys nothing: one callback handles a message in microseconds). The journal keeps the
// identities of many more deliveries than that, so the first delivery of any redelivery is still
// among them, even after several crashes in a row.
constexpr int receive_maximum = 100;
static_assert(receive_maximum * 4 <= storage::journal::deliveries_kept);
// Retain handling 1: retained messages only when the subscription is new (MQTT 5, 3.8.3.1).
constexpr unsigned char retained_on_new_subscription = 1;
constexpr unsigned char retained_always = 0;
// MQTT 5 subscription identifiers. A status topic matches both filters, and Mosquitto sends one
// copy per matching subscription: the identifier tells which copy is the presence one.
constexpr int readings_subscription = 1;
constexpr int status_subscription = 2;
constexpr unsigned both_subscribed = 3;  // one bit per subscription
constexpr auto connect_answer_timeout = std::chrono::seconds(15);
constexpr auto disconnect_timeout = std::chrono::seconds(5);

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch()).count();
}

payload_limits limits_of(const ingest_config& c) {
    payload_limits l;
    l.max_payload_bytes = c.max_payload_bytes;
    l.max_senml_records = c.max_senml_records;
    l.max_ts_future_ms = std::chrono::duration_cast<std::chrono::milliseconds>(c.max_ts_future).count();
    l.max_ts_past_ms = std::chrono::duration_cast<std::chrono::milliseconds>(c.max_ts_past).count();
    return l;
}

// A reading the broker kept retained may be months old and may be stored already: only its own
// `seq` and `ts` say which reading it is, and when.
bool identifies_itself(const parse_result& p) {
    return p.sensor_time &&
           std::all_of(p.readings.begin(), p.readings.end(), [](const reading& r) { return r.seq.has_value(); });
}

// "tcp://[::1]:1883" -> "::1", "mqtt://host:1883" -> "host".
std::string url_host(std::string_view url) {
    if (const auto scheme = url.find("://"); scheme != std::string_view::npos) url.remove_prefix(scheme + 3);
    if (url.starts_with('[')) return std::string(url.substr(1, url.find(']') - 1));
    return std::string(url.substr(0, url.find_first_of(":/")));
}

std::string reason_text(int code) {
    const char* s = MQTTReasonCode_toString(static_cast<MQTTReasonCodes>(code));
    return s ? s : "reason " + std::to_string(code);
}

}  // namespace

ingest::ingest(const mqtt_config& mqtt, const ingest_config& limits, committer& commits, series_cap& series,
               metrics& m)
    : cfg_(mqtt),
      limits_(limits_of(limits)),
      readings_filter_((mqtt.shared_group.empty() ? std::string() : "$share/" + mqtt.shared_group + "/") +
                       mqtt.topic_prefix + "/+/+"),
      status_filter_(mqtt.topic_prefix + "/+/status"),
      commits_(commits),
      metrics_(m),
      series_(series) {
    // Paho C formats protocol-level trace lines into an in-memory buffer for every packet unless
    // its trace level is above them (measured: a tenth of its receive thread's CPU at 10k
    // readings/s). Its errors still reach the connection callbacks. MQTT_C_CLIENT_TRACE, Paho's
    // own switch for debugging, keeps its levels.
    if (std::getenv("MQTT_C_CLIENT_TRACE") == nullptr) MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_ERROR);
    MQTTAsync_createOptions create = MQTTAsync_createOptions_initializer5;
    int rc = MQTTAsync_createWithOptions(&client_, cfg_.url.c_str(), cfg_.client_id.c_str(),
                                         MQTTCLIENT_PERSISTENCE_NONE, nullptr, &create);
    if (rc == MQTTASYNC_SUCCESS) rc = MQTTAsync_setCallbacks(client_, this, &connection_lost, &message_arrived, nullptr);
    if (rc == MQTTASYNC_SUCCESS) rc = MQTTAsync_setConnected(client_, this, &connected);
    if (rc != MQTTASYNC_SUCCESS) {
        if (client_) MQTTAsync_destroy(&client_);
        throw std::runtime_error("mqtt: cannot create a client for " + cfg_.url + ": " + MQTTAsync_strerror(rc));
    }
    if (mqtt_url_uses_tls(cfg_.url)) {
        spdlog::info("mqtt: TLS to {}, trusting {}{}", cfg_.url,
                     cfg_.ca_file.empty() ? std::string("the system's CAs") : cfg_.ca_file.string(),
                     cfg_.cert_file.empty() ? "" : ", client certificate " + cfg_.cert_file.string());
        if (!cfg_.verify)
            spdlog::warn("mqtt: mqtt.verify = false: the broker's certificate and host name are NOT checked. "
                         "Anyone on the network path can pose as the broker, read mqtt.password and "
                         "feed readings. Use it only to debug; set mqtt.ca_file instead");
    } else if (!cfg_.password.empty() && !is_loopback_host(url_host(cfg_.url))) {
        spdlog::warn("mqtt: the password for {} goes unencrypted over {}: use ssl:// or mqtts:// beyond "
                     "this machine", cfg_.username, cfg_.url);
    }
}

ingest::~ingest() {
    stop();
    MQTTAsync_destroy(&client_);
}

void ingest::start() { connector_ = std::thread([this] { connect_loop(); }); }

// The first connection is ours to retry: Paho's automatic reconnect only covers connections lost
// after a first success. Runs on its own thread, never on Paho's, so waiting for an answer is safe.
void ingest::connect_loop() {
    auto backoff = cfg_.reconnect_min;
    while (!stopping_) {
        std::string why;
        if (connect_once(why)) return;  // connected() subscribes
        if (stopping_) return;
        spdlog::warn("mqtt: cannot connect to {}: {}; retrying in {} s", cfg_.url, why, backoff.count());
        std::unique_lock lock(stop_mutex_);
        if (stop_cv_.wait_for(lock, backoff, [this] { return stopping_.load(); })) return;
        backoff = std::min(backoff * 2, cfg_.reconnect_max);
    }
}

bool ingest::connect_once(std::string& why) {
    // A persistent session (clean start off, an expiry) under our client id; Paho copies all of it.
    MQTTProperties props = MQTTProperties_initializer;
    MQTTProperty p;
    p.identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL;
    p.value.integer4 = cfg_.session_expiry_s;
    MQTTProperties_add(&props, &p);
    p.identifier = MQTTPROPERTY_CODE_RECEIVE_MAXIMUM;
    p.value.integer2 = receive_maximum;
    MQTTProperties_add(&props, &p);

    MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer5;
    o.cleanstart = 0;
    o.keepAliveInterval = static_cast<int>(cfg_.keepalive.count());
    o.connectTimeout = 10;
    o.automaticReconnect = 1;
    o.minRetryInterval = static_cast<int>(cfg_.reconnect_min.count());
    o.maxRetryInterval = static_cast<int>(cfg_.reconnect_max.count());
    if (!cfg_.username.empty()) o.username = cfg_.username.c_str();
    if (!cfg_.password.empty()) o.password = cfg_.password.c_str();
    // Paho needs TLS options for an ssl:// URL and refuses to connect without them.
    MQTTAsync_SSLOptions tls = MQTTAsync_SSLOptions_initializer;
    if (mqtt_url_uses_tls(cfg_.url)) {
        if (!cfg_.ca_file.empty()) tls.trustStore = cfg_.ca_file.c_str();  // else OpenSSL's default paths
        if (!cfg_.cert_file.empty()) tls.keyStore = cfg_.cert_file.c_str();
        if (!cfg_.key_file.empty()) tls.privateKey = cfg_.key_file.c_str();
        tls.enableServerCertAuth = cfg_.verify ? 1 : 0;  // the chain up to a trusted CA
        tls.verify = cfg_.verify ? 1 : 0;                // the certificate names the host in the URL
        tls.ssl_error_cb = &tls_error;
        tls.ssl_error_context = this;
        o.ssl = &tls;
    }
    o.connectProperties = &props;
    o.onSuccess5 = &connect_succeeded;
    o.onFailure5 = &connect_failed;
    o.context = this;
    {
        std::lock_guard lock(stop_mutex_);
        attempt_ = attempt::pending;
        tls_error_.clear();
    }
    const int rc = MQTTAsync_connect(client_, &o);
    MQTTProperties_free(&props);
    if (rc != MQTTASYNC_SUCCESS) {
        why = MQTTAsync_strerror(rc);
        return false;
    }
    std::unique_lock lock(stop_mutex_);
    if (!stop_cv_.wait_for(lock, connect_answer_timeout,
                           [this] { return stopping_.load() || attempt_ != attempt::pending; })) {
        why = "no answer";
        return false;
    }
    why = attempt_error_;
    if (!tls_error_.empty())
        why += " (TLS: " + tls_error_ + ")";
    else if (attempt_ == attempt::failed && mqtt_url_uses_tls(cfg_.url) && why.find("TCP/TLS") != std::string::npos)
        // Paho reports a certificate that does not name the host with no OpenSSL error at all.
        why += " (the broker is unreachable, or its certificate does not name the host in mqtt.url)";
    return attempt_ == attempt::succeeded;
}

// OpenSSL's error queue, one line per call, on Paho's thread: the reason a handshake failed
// (an unknown CA, an expired certificate), which Paho's own failure report does not say.
int ingest::tls_error(const char* text, std::size_t len, void* context) {
    auto& self = *static_cast<ingest*>(context);
    std::string_view line(text, len);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
    std::lock_guard lock(self.stop_mutex_);
    if (self.tls_error_.size() < 1024) {
        if (!self.tls_error_.empty()) self.tls_error_ += "; ";
        self.tls_error_ += line;
    }
    return 1;
}

void ingest::finish_attempt(attempt outcome, std::string why) {
    {
        std::lock_guard lock(stop_mutex_);
        attempt_ = outcome;
        attempt_error_ = std::move(why);
    }
    stop_cv_.notify_all();
}

void ingest::connect_succeeded(void* context, MQTTAsync_successData5*) {
    static_cast<ingest*>(context)->finish_attempt(attempt::succeeded);
}

void ingest::connect_failed(void* context, MQTTAsync_failureData5* response) {
    std::string why = response && response->message ? response->message : "";
    // A refused CONNECT (a bad password, a client the ACL or broker refuses) comes as the
    // CONNACK's reason in `code`, with reasonCode left at success (Paho C 1.3.12).
    const int reason = !response ? 0
                       : response->reasonCode != MQTTREASONCODE_SUCCESS ? response->reasonCode
                       : response->code >= MQTTREASONCODE_UNSPECIFIED_ERROR ? response->code : 0;
    if (reason != 0) {
        if (!why.empty()) why += ", ";
        why += reason_text(reason);
    }
    static_cast<ingest*>(context)->finish_attempt(attempt::failed, why.empty() ? "refused" : why);
}

// Called after the first connection and after every automatic reconnection.
void ingest::connected(void* context, char*) {
    auto& self = *static_cast<ingest*>(context);
    self.metrics_.mqtt_connected = 1;
    spdlog::info("mqtt: connected to {}; subscribing to {} and {} at QoS 1", self.cfg_.url, self.readings_filter_,
                 self.status_filter_);
    self.subscribe();
}

// Subscribing again on a resumed session is harmless and covers a session the broker lost. The
// broker then sends the retained status of every sensor (presence restored after a crash), but
// retained readings only if the readings subscription is new. One SUBSCRIBE each: a subscription
// identifier belongs to a whole SUBSCRIBE packet.
void ingest::subscribe() {
    subscriptions_acked_ = 0;
    subscribe_one(readings_filter_, readings_subscription, retained_on_new_subscription, &readings_subscribed);
    subscribe_one(status_filter_, status_subscription, retained_always, &status_subscribed);
}

void ingest::subscribe_one(const std::string& filter, int id, unsigned char retain_handling,
                           MQTTAsync_onSuccess5* on_success) {
    MQTTAsync_responseOptions r = MQTTAsync_responseOptions_initializer;
    MQTTProperty p;
    p.identifier = MQTTPROPERTY_CODE_SUBSCRIPTION_IDENTIFIER;
    p.value.integer4 = static_cast<unsigned>(id);
    MQTTProperties_add(&r.properties, &p);
    r.subscribeOptions.retainHandling = retain_handling;
    r.onSuccess5 = on_success;
    r.onFailure5 = &subscribe_failed;
    r.context = this;
    const int rc = MQTTAsync_subscribe(client_, filter.c_str(), 1, &r);
    MQTTProperties_free(&r.properties);
    if (rc != MQTTASYNC_SUCCESS) spdlog::error("mqtt: subscribe to {} failed: {}", filter, MQTTAsync_strerror(rc));
}

void ingest::readings_subscribed(void* context, MQTTAsync_successData5* response) {
    static_cast<ingest*>(context)->subscription_acked(readings_subscription, response->reasonCode);
}

void ingest::status_subscribed(void* context, MQTTAsync_successData5* response) {
    static_cast<ingest*>(context)->subscription_acked(status_subscription, response->reasonCode);
}

void ingest::subscription_acked(int id, int reason) {
    const std::string& filter = id == readings_subscription ? readings_filter_ : status_filter_;
    if (reason >= MQTTREASONCODE_UNSPECIFIED_ERROR) {
        spdlog::error("mqtt: subscription to {} refused ({})", filter, reason_text(reason));
        return;
    }
    spdlog::info("mqtt: subscribed to {}", filter);
    if ((subscriptions_acked_.fetch_or(1u << (id - 1)) | (1u << (id - 1))) != both_subscribed) return;
    subscribed_ = true;
    metrics_.mqtt_subscribed = 1;
}

void ingest::subscribe_failed(void*, MQTTAsync_failureData5* response) {
    spdlog::error("mqtt: a subscription was refused ({})",
                  response ? reason_text(response->reasonCode) : std::string("no answer"));
}

void ingest::connection_lost(void* context, char* cause) {
    auto& self = *static_cast<ingest*>(context);
    self.subscribed_ = false;
    self.metrics_.mqtt_connected = 0;
    self.metrics_.mqtt_subscribed = 0;
    if (!self.stopping_)
        spdlog::warn("mqtt: connection lost ({}); reconnecting", cause && *cause ? cause : "no reason given");
}

void ingest::disconnect_done(void* context, MQTTAsync_successData5*) {
    static_cast<ingest*>(context)->finish_attempt(attempt::succeeded);
}

void ingest::disconnect_failed(void* context, MQTTAsync_failureData5*) {
    static_cast<ingest*>(context)->finish_attempt(attempt::failed);
}

void ingest::stop() {
    {
        std::lock_guard lock(stop_mutex_);
        if (stopping_.exchange(true)) return;
    }
    stop_cv_.notify_all();
    if (connector_.joinable()) connector_.join();
    // Also when not connected: it ends automatic reconnection.
    MQTTAsync_disconnectOptions o = MQTTAsync_disconnectOptions_initializer5;
    o.timeout = static_cast<int>(std::chrono::milliseconds(disconnect_timeout).count());
    o.onSuccess5 = &disconnect_done;
    o.onFailure5 = &disconnect_failed;
    o.context = this;
    {
        std::unique_lock lock(stop_mutex_);
        attempt_ = attempt::pending;
        lock.unlock();
        const int rc = MQTTAsync_disconnect(client_, &o);
        lock.lock();
        if (rc != MQTTASYNC_SUCCESS && rc != MQTTASYNC_DISCONNECTED)
            spdlog::warn("mqtt: disconnect: {}", MQTTAsync_strerror(rc));
        else if (rc == MQTTASYNC_SUCCESS &&
                 !stop_cv_.wait_for(lock, disconnect_timeout + std::chrono::seconds(1),
                                    [this] { return attempt_ != attempt::pending; }))
            spdlog::warn("mqtt: disconnect: no answer");
    }
    // Fence: a callback still running finishes its commit; none starts touching storage after.
    std::lock_guard lock(callback_mutex_);
    closed_ = true;
    subscribed_ = false;
}

// Runs on Paho's receive thread; Paho acknowledges the message when this returns.
int ingest::message_arrived(void* context, char* topic, int topic_len, MQTTAsync_message* m) {
    delivery d;
    d.topic = topic_len > 0 ? std::string_view(topic, static_cast<std::size_t>(topic_len)) : std::string_view(topic);
    d.payload = std::string_view(static_cast<const char*>(m->payload), static_cast<std::size_t>(m->payloadlen));
    d.qos = m->qos;
    d.packet_id = m->msgid;
    d.duplicate = m->dup != 0;
    d.retained = m->retained != 0;
    // Without subscription identifiers (a broker that sends one copy however many subscriptions
    // match) the one copy is for presence too.
    const int ids = MQTTProperties_propertyCount(&m->properties, MQTTPROPERTY_CODE_SUBSCRIPTION_IDENTIFIER);
    d.for_status = ids == 0;
    for (int i = 0; i < ids; ++i)
        if (MQTTProperties_getNumericValueAt(&m->properties, MQTTPROPERTY_CODE_SUBSCRIPTION_IDENTIFIER, i) ==
            status_subscription)
            d.for_status = true;
    static_cast<ingest*>(context)->on_message(d);
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;  // handled (Paho then acknowledges)
}

// Nothing may escape (Paho is C) and nothing may wait on Paho (deadlock).
void ingest::on_message(const delivery& d) noexcept {
    try {
        std::lock_guard lock(callback_mutex_);
        if (closed_) return;
        const auto topic = parse_topic(cfg_.topic_prefix, d.topic);
        // A status comes once through each subscription: the presence one handles it.
        if (topic && topic->metric == "status" && !d.for_status) return;
        metrics_.messages_received.fetch_add(1, std::memory_order_relaxed);
        if (!topic) {
            reject("", {reject_reason::bad_topic, "topic '" + std::string(d.topic) + "' is not " +
                                                     cfg_.topic_prefix + "/{sensor}/{metric}"});
            return;
        }
        if (topic->metric == "status")
            handle_status(*topic, d.payload);
        else
            handle_reading(*topic, d);
    } catch (const std::exception& e) {
        spdlog::error("mqtt: message on {} not handled: {}", d.topic, e.what());
    } catch (...) {
        spdlog::error("mqtt: message on {} not handled", d.topic);
    }
}

// A reading that could not be journaled must not be acknowledged, and this callback has no way to
// refuse a message. So it keeps retrying: while it blocks, Paho neither acknowledges nor reads
// further, and if the broker drops us for missed keepalives it redelivers everything
// unacknowledged when we return.
template <typename F>
bool ingest::with_storage_retry(const char* what, F&& f) {
    auto pause = std::chrono::milliseconds(50);
    for (;;) {
        try {
            f();
            if (commits_.health().journal(true)) spdlog::info("storage: journal writable again");
            return true;
        } catch (const std::exception& e) {
            metrics_.commit_failures.fetch_add(1, std::memory_order_relaxed);
            if (commits_.health().journal(false))
                spdlog::error("storage: {} failed: {}; retrying until it succeeds", what, e.what());
            std::this_thread::sleep_for(pause);
            pause = std::min(pause * 2, std::chrono::milliseconds(2000));
            if (!stopping_) continue;
        }
        // Shutting down with storage broken: leave without acknowledging; the broker keeps it.
        spdlog::critical("storage: still failing at shutdown; exiting without acknowledging");
        std::_Exit(3);
    }
}

void ingest::handle_reading(const topic_parts& topic, const delivery& d) {
    auto parsed = parse_payload(topic, d.payload, now_ms(), limits_);
    // QoS 0 is never redelivered, so it needs no identity.
    const std::uint64_t key = d.qos > 0 ? delivery_key(d.packet_id, d.topic, d.payload) : 0;
    if (d.duplicate && commits_.redelivered(key)) {
        // Journaled before a crash kept its acknowledgement from the broker: stored already.
        metrics_.readings_duplicate.fetch_add(parsed.readings.size(), std::memory_order_relaxed);
        return;
    }
    if (!parsed.ok()) {
        reject(topic.sensor, *parsed.error);
        return;
    }
    if (d.retained && !identifies_itself(parsed)) {
        reject(topic.sensor, {reject_reason::retained_replay,
                              "retained message sent for a new subscription without seq and ts: it may "
                              "be old, and stored already"});
        return;
    }
    // Readings of new series beyond ingest.max_series are dropped; the rest of the message is kept.
    const std::size_t offered = parsed.readings.size();
    std::erase_if(parsed.readings, [&](const reading& r) { return !series_.admit(r.sensor, r.metric); });
    if (parsed.readings.size() != offered) {
        reject(topic.sensor, {reject_reason::series_limit,
                              std::to_string(offered - parsed.readings.size()) + " reading(s) of new series while " +
                                  std::to_string(series_.max()) + " series exist (ingest.max_series)"});
        if (parsed.readings.empty()) return;
    }
    with_storage_retry("journal write", [&] { commits_.submit(parsed.readings, key); });
}

void ingest::handle_status(const topic_parts& topic, std::string_view payload) {
    metrics_.status_messages.fetch_add(1, std::memory_order_relaxed);
    const auto online = parse_status(payload);
    if (!online) {
        reject(topic.sensor, {reject_reason::bad_status, "status must be 'online' or 'offline'"});
        return;
    }
    commits_.submit_status(topic.sensor, *online, now_ms());
}

void ingest::reject(std::string_view sensor, const rejection& why) {
    metrics_.reject(why.reason);
    std::string key = std::string(sensor) + '\0' + std::string(to_string(why.reason));
    if (logged_rejects_.size() >= max_logged_rejects || !logged_rejects_.insert(std::move(key)).second)
        return;
    spdlog::warn("ingest: rejected a message from sensor '{}': {} ({}); further {} rejects from it are "
                 "counted in /metrics, not logged",
                 sensor.empty() ? "?" : sensor, to_string(why.reason), why.detail, to_string(why.reason));
}

}  // namespace telemetry::bridge
