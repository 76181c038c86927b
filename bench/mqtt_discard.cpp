// mqtt-discard: the broker's own ceiling for bench/ingest.sh. A QoS 1 subscriber built the same
// way as the bridge's ingest (Paho C++ async_client, MQTT v5, clean_start=false with a session
// expiry set on the final connect_options, set_message_callback, subscription <prefix>/+/+ at
// QoS 1) whose callback only counts: Paho sends each PUBACK when the callback returns, exactly as
// for the bridge, so the difference between the two is the bridge's own work per reading.
//
//   mqtt-discard --mqtt URL --register            connect, subscribe, disconnect (creates the session)
//   mqtt-discard --mqtt URL --expect N            count until N messages, print the rate, exit
//   mqtt-discard --mqtt URL --idle S              count until S seconds pass without a message
//   --progress-ms M                                also print `progress <unix_s> <count>` every M ms
//
// Prints `received=N first_to_last_s=T rate_hz=R cpu_s=C` (rate = (N-1)/T, first to last message).
#include <CLI/CLI.hpp>
#include <mqtt/async_client.h>
#include <MQTTAsync.h>

#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <thread>

namespace {

using clock_type = std::chrono::steady_clock;

double cpu_seconds() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now().time_since_epoch()).count();
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"mqtt-discard: QoS 1 persistent-session subscriber that counts and discards"};
    std::string url = "tcp://127.0.0.1:1883";
    std::string client_id = "bench-mqtt-discard";
    std::string prefix = "sensors";
    bool register_only = false;
    long expect = 0;
    double idle_s = 0;
    int timeout_s = 300;
    int session_expiry_s = 3600;
    int progress_ms = 0;
    app.add_option("--mqtt", url, "broker URL")->capture_default_str();
    app.add_option("--client-id", client_id, "client id (names the persistent session)")->capture_default_str();
    app.add_option("--prefix", prefix, "topic prefix; subscribes <prefix>/+/+ at QoS 1")->capture_default_str();
    app.add_flag("--register", register_only, "connect, subscribe, disconnect: create the session");
    app.add_option("--expect", expect, "exit after this many messages");
    app.add_option("--idle", idle_s, "exit once a message came and none for this many seconds");
    app.add_option("--timeout", timeout_s, "give up after this many seconds")->capture_default_str();
    app.add_option("--session-expiry", session_expiry_s, "session expiry interval, seconds")->capture_default_str();
    app.add_option("--progress-ms", progress_ms, "print `progress <unix_s> <count>` lines this often");
    CLI11_PARSE(app, argc, argv);
    if (!register_only && expect <= 0 && idle_s <= 0) {
        std::fprintf(stderr, "mqtt-discard: give --register, --expect N or --idle S\n");
        return 2;
    }

    // As the bridge does (pipeline/ingest.cpp): Paho C otherwise formats a trace line into its
    // in-memory buffer for every packet. Without this the ceiling would be lower than it is.
    if (std::getenv("MQTT_C_CLIENT_TRACE") == nullptr) MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_ERROR);
    try {
        mqtt::async_client client(url, client_id, mqtt::create_options(MQTTVERSION_5));
        mqtt::connect_options opts;
        opts.set_mqtt_version(MQTTVERSION_5);  // first: it resets the clean-session/start flags
        opts.set_clean_start(false);
        opts.set_keep_alive_interval(std::chrono::seconds(30));
        opts.set_connect_timeout(std::chrono::seconds(10));
        mqtt::properties props;
        props.add(mqtt::property(mqtt::property::SESSION_EXPIRY_INTERVAL, session_expiry_s));
        opts.set_properties(props);  // on the final object: the 1.2.0 builder loses properties

        std::atomic<long> received{0};
        std::atomic<std::int64_t> first_ns{0}, last_ns{0};
        std::atomic<bool> done{false};
        client.set_message_callback([&](mqtt::const_message_ptr) {
            // As little as possible: a count and a timestamp. Never throws.
            const long n = received.fetch_add(1, std::memory_order_relaxed) + 1;
            const auto t = now_ns();
            if (n == 1) first_ns.store(t, std::memory_order_relaxed);
            last_ns.store(t, std::memory_order_relaxed);
            if (expect > 0 && n >= expect) done.store(true, std::memory_order_release);
        });

        const double cpu0 = cpu_seconds();
        auto tok = client.connect(opts);
        tok->wait();
        const bool session_present = tok->get_connect_response().is_session_present();
        if (register_only || !session_present) client.subscribe(prefix + "/+/+", 1)->wait();
        if (register_only) {
            client.disconnect()->wait();
            std::printf("registered client_id=%s filter=%s/+/+\n", client_id.c_str(), prefix.c_str());
            return 0;
        }
        if (!session_present)
            std::fprintf(stderr, "mqtt-discard: warning: no session present (run --register first?)\n");

        const auto deadline = clock_type::now() + std::chrono::seconds(timeout_s);
        bool timed_out = false;
        auto next_progress = clock_type::now();
        while (!done.load(std::memory_order_acquire)) {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
            if (progress_ms > 0 && clock_type::now() >= next_progress) {
                next_progress += std::chrono::milliseconds(progress_ms);
                const auto wall = std::chrono::duration<double>(
                    std::chrono::system_clock::now().time_since_epoch()).count();
                std::printf("progress %.3f %ld\n", wall, received.load());
                std::fflush(stdout);
            }
            if (idle_s > 0 && received.load() > 0 &&
                static_cast<double>(now_ns() - last_ns.load()) / 1e9 >= idle_s)
                break;
            if (clock_type::now() >= deadline) {
                timed_out = true;
                break;
            }
        }
        const double cpu1 = cpu_seconds();
        const long n = received.load();
        client.disconnect()->wait();
        const double s = static_cast<double>(last_ns.load() - first_ns.load()) / 1e9;
        const double rate = (n > 1 && s > 0) ? static_cast<double>(n - 1) / s : 0.0;
        std::printf("received=%ld first_to_last_s=%.3f rate_hz=%.0f cpu_s=%.2f%s\n", n, s, rate, cpu1 - cpu0,
                    timed_out ? " timeout" : "");
        return (timed_out && expect > 0) ? 1 : 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mqtt-discard: %s\n", e.what());
        return 1;
    }
}
