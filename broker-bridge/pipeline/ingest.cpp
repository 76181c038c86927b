// MQTT ingest: owns the Paho client, commits every reading before it is acknowledged, then hands
// committed readings to the hub.
#include "pipeline/ingest.hpp"

#include "pipeline/committer.hpp"
#include "database.hpp"
#include "core/metrics.hpp"

#include <spdlog/spdlog.h>

#include <chrono>

namespace telemetry::bridge {
namespace {

constexpr std::size_t max_logged_rejects = 10'000;

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch()).count();
}

mqtt::connect_options make_connect_options(const mqtt_config& c) {
    mqtt::connect_options o;
    // Order matters in Paho C++ 1.2.0: set_mqtt_version resets clean-session flags, and properties
    // passed through the builder are lost on copy, so set them on the final object (fixed
    // upstream only in 1.3.0; with the builder a reconnect showed session_present=0).
    o.set_mqtt_version(MQTTVERSION_5);
    o.set_clean_start(false);
    o.set_keep_alive_interval(c.keepalive);
    o.set_connect_timeout(std::chrono::seconds(10));
    o.set_automatic_reconnect(c.reconnect_min, c.reconnect_max);
    if (!c.username.empty()) o.set_user_name(c.username);
    if (!c.password.empty()) o.set_password(c.password);
    mqtt::properties props;
    props.add(mqtt::property(mqtt::property::SESSION_EXPIRY_INTERVAL, c.session_expiry_s));
    o.set_properties(props);
    return o;
}

}  // namespace

ingest::ingest(const mqtt_config& mqtt, const ingest_config& limits, committer& commits, metrics& m)
    : cfg_(mqtt),
      limits_{limits.max_payload_bytes, limits.max_senml_records},
      filter_(mqtt.topic_prefix + "/+/+"),
      commits_(commits),
      metrics_(m),
      client_(mqtt.url, mqtt.client_id, mqtt::create_options(MQTTVERSION_5)),
      connect_opts_(make_connect_options(mqtt)) {
    client_.set_message_callback([this](mqtt::const_message_ptr msg) { on_message(msg); });
    client_.set_connected_handler([this](const std::string&) { on_connected(); });
    client_.set_connection_lost_handler([this](const std::string& cause) { on_connection_lost(cause); });
}

ingest::~ingest() { stop(); }

void ingest::start() { connector_ = std::thread([this] { connect_loop(); }); }

// The first connection is ours to retry: Paho's automatic reconnect only covers connections lost
// after a first success. Runs on its own thread, never on Paho's, so waiting on a token is safe.
void ingest::connect_loop() {
    auto backoff = cfg_.reconnect_min;
    while (!stopping_) {
        try {
            auto tok = client_.connect(connect_opts_);
            if (tok->wait_for(std::chrono::seconds(15))) return;  // on_connected() subscribes
            spdlog::warn("mqtt: no answer from {} yet", cfg_.url);
        } catch (const mqtt::exception& e) {
            spdlog::warn("mqtt: cannot connect to {}: {}; retrying in {} s", cfg_.url, e.what(),
                         backoff.count());
        }
        std::unique_lock lock(stop_mutex_);
        if (stop_cv_.wait_for(lock, backoff, [this] { return stopping_.load(); })) return;
        backoff = std::min(backoff * 2, cfg_.reconnect_max);
    }
}

void ingest::on_connected() {
    metrics_.mqtt_connected = 1;
    spdlog::info("mqtt: connected to {}; subscribing to {} at QoS 1", cfg_.url, filter_);
    // Subscribing again on a resumed session is harmless and covers a session the broker lost.
    try {
        client_.subscribe(filter_, 1, nullptr, sub_listener_);
    } catch (const std::exception& e) {
        spdlog::error("mqtt: subscribe failed: {}", e.what());
    }
}

void ingest::subscribe_listener::on_success(const mqtt::token&) {
    owner_.subscribed_ = true;
    owner_.metrics_.mqtt_subscribed = 1;
    spdlog::info("mqtt: subscribed to {}", owner_.filter_);
}

void ingest::subscribe_listener::on_failure(const mqtt::token& tok) {
    spdlog::error("mqtt: subscription to {} refused (reason {})", owner_.filter_,
                  static_cast<int>(tok.get_reason_code()));
}

void ingest::on_connection_lost(const std::string& cause) {
    subscribed_ = false;
    metrics_.mqtt_connected = 0;
    metrics_.mqtt_subscribed = 0;
    if (!stopping_) spdlog::warn("mqtt: connection lost ({}); reconnecting", cause.empty() ? "no reason given" : cause);
}

void ingest::stop() {
    {
        std::lock_guard lock(stop_mutex_);
        if (stopping_.exchange(true)) return;
    }
    stop_cv_.notify_all();
    if (connector_.joinable()) connector_.join();
    try {
        if (client_.is_connected()) client_.disconnect()->wait_for(std::chrono::seconds(5));
    } catch (const std::exception& e) {
        spdlog::warn("mqtt: disconnect: {}", e.what());
    }
    // Fence: a callback still running finishes its commit; none starts touching storage after.
    std::lock_guard lock(callback_mutex_);
    closed_ = true;
    subscribed_ = false;
}

// Runs on Paho's receive thread; Paho acknowledges the message when this returns. Nothing may
// escape (the C++ wrapper does not catch) and nothing may wait on a token (deadlock).
void ingest::on_message(const mqtt::const_message_ptr& msg) noexcept {
    try {
        std::lock_guard lock(callback_mutex_);
        if (closed_) return;
        metrics_.messages_received.fetch_add(1, std::memory_order_relaxed);
        const auto topic = parse_topic(cfg_.topic_prefix, msg->get_topic());
        if (!topic) {
            reject("", {reject_reason::bad_topic, "topic '" + msg->get_topic() + "' is not " +
                                                     cfg_.topic_prefix + "/{sensor}/{metric}"});
            return;
        }
        const auto& payload = msg->get_payload_ref();
        if (topic->metric == "status")
            handle_status(*topic, std::string_view(payload.data(), payload.size()));
        else
            handle_reading(*topic, std::string_view(payload.data(), payload.size()));
    } catch (const std::exception& e) {
        spdlog::error("mqtt: message on {} not handled: {}", msg->get_topic(), e.what());
    } catch (...) {
        spdlog::error("mqtt: message on {} not handled", msg->get_topic());
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

void ingest::handle_reading(const topic_parts& topic, std::string_view payload) {
    auto parsed = parse_payload(topic, payload, now_ms(), limits_);
    if (!parsed.ok()) {
        reject(topic.sensor, *parsed.error);
        return;
    }
    with_storage_retry("journal write", [&] { commits_.submit(parsed.readings); });
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
