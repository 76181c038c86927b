// MQTT ingest: owns the Paho client, commits every reading before it is acknowledged, then hands
// committed readings to the hub.
#pragma once

#include "core/config.hpp"
#include "core/payload.hpp"

#include <mqtt/async_client.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>

namespace telemetry::bridge {

class committer;
class metrics;

// Delivery guarantee: Paho C sends the PUBACK of a QoS 1 message only after the message callback
// returns, so on_message() makes the readings durable (the committer's journal) inside the
// callback (Paho C 1.3.10 and later; the consumer-queue API acknowledges before we commit). A crash at any instant before that leaves the message unacknowledged and
// the broker redelivers it to our persistent session; after it, the journal has it.
//
// Thread safety: callbacks run on Paho's single receive thread; start() and stop() are called from
// the main thread. The committer is fed only inside on_message() (and after stop(), by nobody).
class ingest {
public:
    ingest(const mqtt_config& mqtt, const ingest_config& limits, committer& commits, metrics& m);
    ~ingest();
    ingest(const ingest&) = delete;
    ingest& operator=(const ingest&) = delete;

    // Starts connecting in the background (retrying with backoff until the broker answers).
    void start();
    // Disconnects, waits for a message callback in progress to finish its commit, and guarantees
    // that no callback touches the writer afterwards.
    void stop();
    bool subscribed() const noexcept { return subscribed_.load(); }

private:
    class subscribe_listener : public mqtt::iaction_listener {
    public:
        explicit subscribe_listener(ingest& owner) : owner_(owner) {}
        void on_success(const mqtt::token& tok) override;
        void on_failure(const mqtt::token& tok) override;
    private:
        ingest& owner_;
    };

    void connect_loop();
    void on_connected();
    void on_connection_lost(const std::string& cause);
    void on_message(const mqtt::const_message_ptr& msg) noexcept;
    void handle_reading(const topic_parts& topic, std::string_view payload);
    void handle_status(const topic_parts& topic, std::string_view payload);
    void reject(std::string_view sensor, const rejection& why);
    template <typename F>
    bool with_storage_retry(const char* what, F&& f);

    const mqtt_config cfg_;
    const payload_limits limits_;
    const std::string filter_;
    committer& commits_;
    metrics& metrics_;

    mqtt::async_client client_;
    mqtt::connect_options connect_opts_;
    subscribe_listener sub_listener_{*this};

    std::atomic<bool> subscribed_{false};
    std::atomic<bool> stopping_{false};
    std::mutex callback_mutex_;  // held by on_message() while it runs; stop() takes it to fence
    bool closed_ = false;        // guarded by callback_mutex_
    std::unordered_set<std::string> logged_rejects_;  // receive thread only

    std::mutex stop_mutex_;
    std::condition_variable stop_cv_;
    std::thread connector_;
};

}  // namespace telemetry::bridge
