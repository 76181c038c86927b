// The broker's own ceiling for the ingest benchmark: a QoS 1 subscriber built exactly like the
// bridge's ingest (Paho C++ async client, MQTT v5, persistent session, message callback) that
// discards every message instead of committing it.
#include <CLI/CLI.hpp>
#include <mqtt/async_client.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

int main(int argc, char** argv) {
    CLI::App app{"discard-subscriber: drains a QoS 1 persistent session and reports the rate"};
    std::string url = "tcp://127.0.0.1:1883", client_id = "bench-discard", filter = "sensors/+/+";
    bool register_only = false;
    long expect = 0;
    int timeout_s = 300;
    app.add_option("--mqtt", url, "broker URL");
    app.add_option("--client-id", client_id, "client id (names the persistent session)");
    app.add_option("--topic", filter, "subscription filter");
    app.add_flag("--register", register_only, "connect, subscribe, disconnect: create the session");
    app.add_option("--expect", expect, "messages to receive before reporting");
    app.add_option("--timeout", timeout_s, "give up after this many seconds");
    CLI11_PARSE(app, argc, argv);

    mqtt::async_client client(url, client_id, mqtt::create_options(MQTTVERSION_5));
    mqtt::connect_options opts;
    opts.set_mqtt_version(MQTTVERSION_5);  // before clean-start: it resets the clean flags
    opts.set_clean_start(false);
    opts.set_keep_alive_interval(std::chrono::seconds(30));
    mqtt::properties props;
    props.add(mqtt::property(mqtt::property::SESSION_EXPIRY_INTERVAL, 3600));
    opts.set_properties(props);  // on the final object: the builder loses them in Paho C++ 1.2.0

    std::atomic<long> received{0};
    std::chrono::steady_clock::time_point first, last;
    std::mutex m;
    std::condition_variable cv;
    client.set_message_callback([&](mqtt::const_message_ptr) {
        const long n = received.fetch_add(1) + 1;
        if (n == 1) first = std::chrono::steady_clock::now();
        if (n == expect) {
            last = std::chrono::steady_clock::now();
            std::lock_guard lock(m);
            cv.notify_all();
        }
    });
    client.connect(opts)->wait();
    client.subscribe(filter, 1)->wait();
    if (register_only) {
        client.disconnect()->wait();
        return 0;
    }
    {
        std::unique_lock lock(m);
        cv.wait_for(lock, std::chrono::seconds(timeout_s), [&] { return received.load() >= expect; });
    }
    const long n = received.load();
    client.disconnect()->wait();
    if (n < expect) {
        std::printf("received=%ld expected=%ld timeout\n", n, expect);
        return 1;
    }
    const double s = std::chrono::duration<double>(last - first).count();
    std::printf("received=%ld first_to_last_s=%.3f rate_hz=%.0f\n", n, s, (n - 1) / s);
    return 0;
}
