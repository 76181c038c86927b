// MQTT ingest: owns the MQTT client, makes every reading durable before it is acknowledged,
// recognises redeliveries, and hands readings to the committer.
#pragma once

#include "pipeline/series_cap.hpp"
#include "core/config.hpp"
#include "core/payload.hpp"

#include <MQTTAsync.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>

namespace telemetry::bridge {

class committer;
class metrics;

// Delivery guarantee: Paho C sends the PUBACK of a QoS 1 message only after the message callback
// returns, so on_message() makes the readings durable (the committer's journal) inside the
// callback (Paho C 1.3.10 and later; a consumer queue would acknowledge before we commit). A
// crash at any instant before that leaves the message unacknowledged and the broker redelivers
// it to our persistent session; after it, the journal has it.
//
// Redeliveries (docs/api.md section 1.5): a message the broker sends again after a crash carries
// the DUP flag and its first delivery's packet identifier, topic and payload. Those make its
// identity (delivery_key), which the journal records with its readings; a DUP message whose
// identity the journal holds is acknowledged and not stored again, whatever its payload form.
// The broker never has more than `receive_maximum` messages unacknowledged, far fewer than the
// identities the journal keeps, so the first delivery of any redelivery is among them. Retained
// messages are asked for only on a new subscription (MQTT 5 retain handling 1), so a resumed
// session does not get them again; those that do come (a new session) are stored only when their
// `seq` and `ts` identify them. Presence keeps its own subscription that always gets the retained
// status, which restores a change lost in a crash; a status topic matches both subscriptions, and
// the MQTT 5 subscription identifier tells the copies apart (Mosquitto sends one per subscription).
//
// Why Paho C and not its C++ wrapper: the wrapper (1.2) keeps the packet identifier private.
//
// Thread safety: callbacks run on Paho's single receive thread; start() and stop() are called from
// the main thread. The committer is fed only inside on_message() (and after stop(), by nobody).
class ingest {
public:
    // `series`: the cap on series (ingest.max_series), shared with the store tailer.
    ingest(const mqtt_config& mqtt, const ingest_config& limits, committer& commits, series_cap& series,
           metrics& m);
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
    // One PUBLISH as it arrived.
    struct delivery {
        std::string_view topic;
        std::string_view payload;
        int qos = 0;
        int packet_id = 0;
        bool duplicate = false;  // DUP: sent before, not acknowledged
        bool retained = false;   // from the broker's retained store, i.e. for a new subscription
        bool for_status = false; // came through the presence subscription
    };
    enum class attempt { none, pending, succeeded, failed };

    // Paho C callbacks; the context is the ingest.
    static int message_arrived(void* context, char* topic, int topic_len, MQTTAsync_message* m);
    static void connected(void* context, char* cause);
    static void connection_lost(void* context, char* cause);
    static void connect_succeeded(void* context, MQTTAsync_successData5* response);
    static void connect_failed(void* context, MQTTAsync_failureData5* response);
    static void readings_subscribed(void* context, MQTTAsync_successData5* response);
    static void status_subscribed(void* context, MQTTAsync_successData5* response);
    static void subscribe_failed(void* context, MQTTAsync_failureData5* response);
    static void disconnect_done(void* context, MQTTAsync_successData5* response);
    static void disconnect_failed(void* context, MQTTAsync_failureData5* response);
    static int tls_error(const char* text, std::size_t len, void* context);

    void connect_loop();
    bool connect_once(std::string& why);
    void finish_attempt(attempt outcome, std::string why = {});
    void subscribe();
    void subscribe_one(const std::string& filter, int id, unsigned char retain_handling,
                       MQTTAsync_onSuccess5* on_success);
    void subscription_acked(int id, int reason);
    void on_message(const delivery& d) noexcept;
    void handle_reading(const topic_parts& topic, const delivery& d);
    void handle_status(const topic_parts& topic, std::string_view payload);
    void reject(std::string_view sensor, const rejection& why);
    template <typename F>
    bool with_storage_retry(const char* what, F&& f);

    const mqtt_config cfg_;
    const payload_limits limits_;
    std::string readings_filter_;  // <prefix>/+/+
    std::string status_filter_;    // <prefix>/+/status
    committer& commits_;
    metrics& metrics_;

    MQTTAsync client_ = nullptr;

    std::atomic<bool> subscribed_{false};
    std::atomic<unsigned> subscriptions_acked_{0};  // a bit per subscription, this connection
    std::atomic<bool> stopping_{false};
    std::mutex callback_mutex_;  // held by on_message() while it runs; stop() takes it to fence
    bool closed_ = false;        // guarded by callback_mutex_
    std::unordered_set<std::string> logged_rejects_;  // receive thread only
    series_cap& series_;

    std::mutex stop_mutex_;             // guards attempt_ and attempt_error_ too
    std::condition_variable stop_cv_;   // stopping, or a connect / disconnect attempt finished
    attempt attempt_ = attempt::none;
    std::string attempt_error_;
    std::string tls_error_;  // OpenSSL's words for the last TLS failure, this attempt
    std::thread connector_;
};

}  // namespace telemetry::bridge
