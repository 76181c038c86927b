// The republisher's out connection (broker-bridge/republish/out_connection) against a real
// Mosquitto: URLs, publishing with acknowledgements, a broker that goes away, and a socket whose
// descriptor is above FD_SETSIZE (a bridge with thousands of streams has such descriptors;
// libmosquitto's own select() loop refuses them, which is why the connection has its own loop).
#include "republish/out_connection.hpp"
#include "temp_dir.hpp"
#include "integration/processes.hpp"

#include <boost/asio/io_context.hpp>

#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <unistd.h>

#include <vector>

using namespace telemetry::bridge;
using namespace std::chrono_literals;

TEST_CASE("out connection - urls") {
    const auto a = parse_out_url("tcp://127.0.0.1:1884");
    REQUIRE(a);
    CHECK(a->host == "127.0.0.1");
    CHECK(a->port == 1884);
    CHECK_FALSE(a->tls);
    CHECK(parse_out_url("mqtts://broker.example")->port == 8883);
    CHECK(parse_out_url("mqtts://broker.example")->tls);
    CHECK(parse_out_url("mqtt://h")->port == 1883);
    CHECK(parse_out_url("ssl://[::1]:9883")->host == "::1");
    CHECK(parse_out_url("ssl://[::1]:9883")->port == 9883);
    CHECK_FALSE(parse_out_url("ws://h:9001"));
    CHECK_FALSE(parse_out_url("tcp://"));
    CHECK_FALSE(parse_out_url("tcp://h:0"));
    CHECK_FALSE(parse_out_url("tcp://h:70000"));
    CHECK_FALSE(parse_out_url("tcp://h:12x"));
}

namespace {

struct run {
    boost::asio::io_context io;
    std::vector<std::string> events;
    std::vector<int> acked;
    int receive_maximum = 0;
    std::unique_ptr<out_connection> conn;

    explicit run(const std::string& url) {
        telemetry::bridge::mqtt_config m;
        m.url = url;
        m.client_id = "out-connection-test";
        out_connection::events e;
        e.connected = [this](int rm) {
            receive_maximum = rm;
            events.push_back("connected");
        };
        e.closed = [this](const std::string& why, bool was) { events.push_back((was ? "lost: " : "failed: ") + why); };
        e.acknowledged = [this](const std::vector<out_connection::acked>& a) {
            for (const auto& x : a) {
                CHECK(x.reason_code < 0x80);
                acked.push_back(x.mid);
            }
        };
        conn = std::make_unique<out_connection>(io, m, 100, std::move(e));
    }
    // Runs the io_context until pred() holds or 10 s pass.
    template <class P>
    bool until(P pred) {
        const auto end = std::chrono::steady_clock::now() + 10s;
        while (!pred() && std::chrono::steady_clock::now() < end) {
            io.restart();
            io.run_for(20ms);
        }
        return pred();
    }
};

// Publishes n messages once connected; returns their message ids.
std::vector<int> publish(run& r, int n) {
    std::vector<int> mids;
    const std::string epoch = "0a1b2c3d";
    for (int i = 1; i <= n; ++i) {
        std::string error;
        const auto mid = r.conn->publish("out/s/t", "{\"id\":" + std::to_string(i) + "}", false, i, epoch, error);
        INFO(error);
        REQUIRE(mid);
        mids.push_back(*mid);
    }
    return mids;
}

}  // namespace

TEST_CASE("out connection - publishes at QoS 1 and hears every PUBACK, then loses a stopped broker") {
    telemetry::testing::temp_dir dir;
    telemetry::testing::broker b(dir.path());
    run r(b.url());
    r.conn->connect();
    REQUIRE(r.until([&] { return !r.events.empty(); }));
    REQUIRE(r.events.front() == "connected");
    CHECK(r.receive_maximum > 0);
    const auto mids = publish(r, 500);
    REQUIRE(r.until([&] { return r.acked.size() == mids.size(); }));
    CHECK(r.acked == mids);  // in order, each once
    b.stop();
    REQUIRE(r.until([&] { return r.events.size() == 2; }));
    CHECK(r.events[1].starts_with("lost: "));
    std::string error;
    CHECK_FALSE(r.conn->publish("out/s/t", "{}", false, 1, "0a1b2c3d", error));
}

TEST_CASE("out connection - a refused connection is reported, not retried by itself") {
    const std::uint16_t port = telemetry::testing::free_port();  // nobody listens there
    run r("tcp://127.0.0.1:" + std::to_string(port));
    r.conn->connect();
    REQUIRE(r.until([&] { return !r.events.empty(); }));
    CHECK(r.events.front().starts_with("failed: "));
    r.io.restart();
    r.io.run_for(300ms);
    CHECK(r.events.size() == 1);
}

TEST_CASE("out connection - works when its socket's descriptor is above FD_SETSIZE") {
    rlimit lim{};
    REQUIRE(getrlimit(RLIMIT_NOFILE, &lim) == 0);
    if (lim.rlim_cur < 2 * FD_SETSIZE && lim.rlim_max >= 2 * FD_SETSIZE) {
        lim.rlim_cur = 2 * FD_SETSIZE;
        REQUIRE(setrlimit(RLIMIT_NOFILE, &lim) == 0);
    }
    if (lim.rlim_cur < 2 * FD_SETSIZE) {
        MESSAGE("RLIMIT_NOFILE is too low to test descriptors above FD_SETSIZE");
        return;
    }
    telemetry::testing::temp_dir dir;
    telemetry::testing::broker b(dir.path());
    std::vector<int> filler;  // every descriptor below FD_SETSIZE taken
    for (int fd = open("/dev/null", O_RDONLY); fd >= 0 && fd < FD_SETSIZE + 8; fd = open("/dev/null", O_RDONLY))
        filler.push_back(fd);
    run r(b.url());
    r.conn->connect();
    const bool done = r.until([&] { return !r.events.empty(); });
    for (int fd : filler) close(fd);
    REQUIRE(done);
    REQUIRE(r.events.front() == "connected");
    const auto mids = publish(r, 50);
    REQUIRE(r.until([&] { return r.acked.size() == mids.size(); }));
}
