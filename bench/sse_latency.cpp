// Streaming benchmark: N Server-Sent Events subscribers on one Asio thread, an MQTT publisher at a
// fixed rate, and the end-to-end latency from publish to receipt (the publish time travels in the
// reading's seq, in microseconds since the epoch).
#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <mqtt/async_client.h>

#include <algorithm>
#include <array>
#include <future>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

std::int64_t now_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch()).count();
}

struct stats {
    std::vector<std::int64_t> latencies;
    std::uint64_t received = 0;
    bool recording = false;
};

// One subscriber: reads the event stream and records the latency of every reading it gets.
class subscriber : public std::enable_shared_from_this<subscriber> {
public:
    subscriber(asio::io_context& ioc, stats& s) : socket_(ioc), stats_(s) {}
    void start(const tcp::endpoint& ep, const std::string& target) {
        request_ = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n";
        socket_.async_connect(ep, [self = shared_from_this()](boost::system::error_code ec) {
            if (ec) return;
            asio::async_write(self->socket_, asio::buffer(self->request_),
                              [self](boost::system::error_code e, std::size_t) {
                                  if (!e) self->read();
                              });
        });
    }

private:
    void read() {
        socket_.async_read_some(asio::buffer(buf_), [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
            if (ec) return;
            self->data_.append(self->buf_.data(), n);
            self->scan();
            self->read();
        });
    }
    void scan() {
        const std::int64_t t = now_us();
        std::size_t pos = 0;
        for (;;) {
            const auto at = data_.find("\"seq\":", pos);
            if (at == std::string::npos) break;
            const auto end = data_.find_first_of(",}", at + 6);
            if (end == std::string::npos) break;
            const std::int64_t sent = std::strtoll(data_.c_str() + at + 6, nullptr, 10);
            ++stats_.received;
            if (stats_.recording && sent > 0) stats_.latencies.push_back(t - sent);
            pos = end;
        }
        // Keep only an unfinished tail.
        const auto last = data_.rfind("\n\n");
        if (last != std::string::npos && last >= pos) data_.erase(0, last + 2);
        else if (pos > 0) data_.erase(0, pos);
    }

    tcp::socket socket_;
    stats& stats_;
    std::string request_;
    std::array<char, 16384> buf_{};
    std::string data_;
};

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"sse-latency: N SSE subscribers, a publisher at a fixed rate, publish-to-receipt latency"};
    int port = 0, subscribers = 100, idle = 0;
    double rate = 100, duration = 10;
    std::string mqtt_url = "tcp://127.0.0.1:1883";
    app.add_option("--port", port, "bridge HTTP port")->required();
    app.add_option("--mqtt", mqtt_url, "broker URL");
    app.add_option("--subscribers", subscribers, "concurrent SSE connections");
    app.add_option("--rate", rate, "readings published per second (0: as fast as the broker takes them)");
    app.add_option("--duration", duration, "seconds of publishing");
    app.add_option("--idle", idle, "only open this many idle connections and hold them for --duration");
    CLI11_PARSE(app, argc, argv);

    asio::io_context ioc;
    stats st;
    st.latencies.reserve(static_cast<std::size_t>(std::max(1.0, subscribers * rate * duration * 1.1)));
    const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port));
    const int n = idle > 0 ? idle : subscribers;
    for (int i = 0; i < n; ++i)
        std::make_shared<subscriber>(ioc, st)->start(ep, "/api/v1/stream?topic=sensors/ssebench/%2B");
    std::thread io([&] { ioc.run(); });
    std::this_thread::sleep_for(std::chrono::seconds(2));  // all connected and attached
    if (idle > 0) {
        std::printf("idle_connections=%d\n", n);
        std::fflush(stdout);
        std::this_thread::sleep_for(std::chrono::duration<double>(duration));
        ioc.stop();
        io.join();
        return 0;
    }

    mqtt::async_client pub(mqtt_url, "sse-latency-pub", mqtt::create_options(MQTTVERSION_3_1_1));
    mqtt::connect_options o;
    o.set_mqtt_version(MQTTVERSION_3_1_1);
    o.set_clean_session(true);
    pub.connect(o)->wait();
    asio::post(ioc, [&] { st.recording = true; });
    const auto start = std::chrono::steady_clock::now();
    std::uint64_t published = 0;
    const auto period = std::chrono::duration<double>(rate > 0 ? 1.0 / rate : 0.0);
    while (std::chrono::steady_clock::now() - start < std::chrono::duration<double>(duration)) {
        const std::string payload = "{\"value\":1,\"seq\":" + std::to_string(now_us()) + "}";
        pub.publish(mqtt::make_message("sensors/ssebench/temperature", payload, 0, false));
        ++published;
        if (rate > 0) std::this_thread::sleep_until(start + period * static_cast<double>(published));
    }
    const double pub_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::this_thread::sleep_for(std::chrono::seconds(3));  // let the last deliveries land
    std::promise<void> done;
    asio::post(ioc, [&] { st.recording = false; done.set_value(); });
    done.get_future().wait();
    ioc.stop();
    io.join();
    pub.disconnect()->wait();

    auto& l = st.latencies;
    std::sort(l.begin(), l.end());
    const auto pct = [&](double p) { return l.empty() ? 0.0 : l[static_cast<std::size_t>(p * (l.size() - 1))] / 1000.0; };
    std::printf("subscribers=%d published=%llu expected=%llu received=%zu deliveries_per_s=%.0f "
                "p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
                subscribers, static_cast<unsigned long long>(published),
                static_cast<unsigned long long>(published) * static_cast<unsigned long long>(subscribers), l.size(),
                static_cast<double>(l.size()) / pub_s, pct(0.5), pct(0.99), l.empty() ? 0.0 : l.back() / 1000.0);
    return 0;
}
