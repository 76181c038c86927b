// Bridges on PostgreSQL (docs/api.md section 14): one replica serving what it ingests across a
// SIGKILL, and three replicas on one database and one MQTT shared subscription, each serving the
// whole committed stream under the same ids, so that a client resumes its cursor on any replica.
// A real Mosquitto, a real PostgreSQL cluster, the real broker-bridge, checked over HTTP and SSE.
#include "http_client.hpp"
#include "mqtt_publisher.hpp"
#include "pg_cluster.hpp"
#include "processes.hpp"
#include "sse_client.hpp"

#include <doctest/doctest.h>

#include <boost/json.hpp>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <thread>

using namespace telemetry::testing;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

struct stored {
    std::int64_t id;
    std::string sensor;
    std::int64_t seq;
    double value;
    bool operator==(const stored&) const = default;
};

// Everything the replica serves after id 0, in the order it serves it, through long polling with
// timeout=0 (paging with the cursor, as a client does).
std::vector<stored> everything(std::uint16_t port) {
    std::vector<stored> out;
    std::int64_t after = 0;
    for (;;) {
        const auto r = http_get(port, "/api/v1/updates?timeout=0&limit=10000&after=" + std::to_string(after));
        REQUIRE_MESSAGE(r.status == 200, r.status << " " << r.body);
        const auto doc = json::parse(r.body);
        const auto& rs = doc.at("readings").as_array();
        for (const auto& v : rs)
            out.push_back({v.at("id").as_int64(), std::string(v.at("sensor").as_string()), v.at("seq").as_int64(),
                           v.at("value").to_number<double>()});
        const std::int64_t cursor = cursor_id(doc.at("cursor").as_string());
        if (rs.empty() || cursor == after) return out;
        after = cursor;
    }
}

std::int64_t metric_value(std::uint16_t port, const std::string& name) {
    const auto r = http_get(port, "/metrics");
    const auto at = r.body.find("\n" + name + " ");
    if (at == std::string::npos) return -1;
    return std::stoll(r.body.substr(at + name.size() + 2));
}

// A configuration file for one replica on `url`; `more`: further sections.
std::filesystem::path replica_config(const std::filesystem::path& dir, const std::string& name,
                                     const std::string& url, bool shared, const std::string& more = {}) {
    const auto file = dir / (name + ".toml");
    std::ofstream f(file);
    f << "[mqtt]\nclient_id = \"" << name << "\"\n";
    if (shared) f << "shared_group = \"bridges\"\n";
    f << "[storage]\nengine = \"postgresql\"\nurl = \"" << url << "\"\nretention_days = 0\n" << more;
    return file;
}

// The series the replica lists (GET /api/v1/sensors).
json::array series_list(std::uint16_t port) {
    const auto r = http_get(port, "/api/v1/sensors");
    REQUIRE_MESSAGE(r.status == 200, r.status << " " << r.body);
    return json::parse(r.body).at("series").as_array();
}

// Publishes readings (sensor s<i % sensors>, seq per sensor) with QoS 1.
void publish(publisher& p, int from, int to, int sensors) {
    for (int i = from; i < to; ++i)
        p.pub("sensors/s" + std::to_string(i % sensors) + "/temperature",
              "{\"value\": " + std::to_string(i) + ", \"seq\": " + std::to_string(i / sensors) + "}");
}

// Ids strictly increasing, each (sensor, seq) once, and exactly the n readings published.
void check_complete(const std::vector<stored>& rs, int n, int sensors) {
    std::set<std::pair<std::string, std::int64_t>> seen;
    std::int64_t last = 0;
    bool increasing = true;
    for (const auto& r : rs) {
        increasing = increasing && r.id > last;
        last = r.id;
        seen.insert({r.sensor, r.seq});
    }
    CHECK_MESSAGE(increasing, "ids strictly increase");
    CHECK_MESSAGE(rs.size() == static_cast<std::size_t>(n), rs.size() << " readings served, " << n << " published");
    CHECK(seen.size() == static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i)
        if (!seen.count({"s" + std::to_string(i % sensors), i / sensors})) {
            FAIL_CHECK("reading " << i << " missing");
            break;
        }
}

}  // namespace

TEST_CASE("replicas - a bridge on PostgreSQL serves what it ingests and keeps it across a SIGKILL") {
    temp_dir dir;
    broker mqtt(dir / "broker");
    const std::string url = shared_pg_cluster().create_database();
    const auto conf = replica_config(dir.path(), "solo", url, false);
    bridge b(dir / "solo", mqtt.url(), {"--config", conf.string()});
    REQUIRE(b.wait_ready());
    CHECK(b.process().err().find("storage: PostgreSQL postgresql://") != std::string::npos);

    constexpr int sensors = 3, first = 600, total = 1200;
    publisher p(mqtt.url(), "sensor-solo");
    publish(p, 0, first, sensors);
    REQUIRE(eventually([&] { return everything(b.port()).size() == first; }));

    // History, latest and aggregates come from PostgreSQL too.
    const auto latest = json::parse(http_get(b.port(), "/api/v1/sensors/s0/temperature/latest").body);
    CHECK(latest.at("seq").as_int64() == (first - 1) / sensors);
    const auto hist = json::parse(http_get(b.port(), "/api/v1/sensors/s1/temperature/readings?limit=5").body);
    CHECK(hist.at("readings").as_array().size() == 5);
    const auto agg = json::parse(http_get(b.port(), "/api/v1/sensors/s2/temperature/aggregate?bucket=1h").body);
    std::int64_t counted = 0;
    for (const auto& bk : agg.at("buckets").as_array()) counted += bk.at("count").as_int64();
    CHECK(counted == first / sensors);

    // Killed while readings arrive: what the broker had acknowledged to the bridge is in its
    // journal and reaches PostgreSQL once after the restart; the rest waits in the session.
    std::thread more([&] {
        publisher q(mqtt.url(), "sensor-solo-2");
        publish(q, first, total, sensors);
    });
    std::this_thread::sleep_for(50ms);
    b.kill();
    more.join();
    b.start();
    REQUIRE(b.wait_ready());
    REQUIRE(eventually([&] { return everything(b.port()).size() >= total; }, 30s));
    std::this_thread::sleep_for(300ms);  // a duplicate would show up now
    check_complete(everything(b.port()), total, sensors);
    CHECK(shared_pg_cluster().psql(url.substr(url.rfind('/') + 1), "SELECT count(*) FROM readings") ==
          std::to_string(total) + "\n");
}

TEST_CASE("replicas - three replicas on a shared subscription serve the same stream, a cursor resumes on any") {
    temp_dir dir;
    broker mqtt(dir / "broker");
    const std::string url = shared_pg_cluster().create_database();
    std::vector<std::unique_ptr<bridge>> replicas;
    for (int i = 0; i < 3; ++i) {
        const std::string name = "replica-" + std::to_string(i);
        replicas.push_back(std::make_unique<bridge>(dir / name, mqtt.url(),
                                                    std::vector<std::string>{"--config",
                                                                             replica_config(dir.path(), name, url, true).string()}));
    }
    for (auto& r : replicas) REQUIRE(r->wait_ready());

    // A stream on replica 0 from the start, to be resumed on replica 1 halfway.
    sse_client first_half(replicas[0]->port(), "/api/v1/stream?after=0");
    REQUIRE(first_half.status() == 200);

    constexpr int sensors = 4, n = 3000;
    {
        publisher p(mqtt.url(), "sensor-fleet");
        publish(p, 0, n / 2, sensors);
        // One replica killed and started again (same client id) while readings arrive: the broker
        // keeps its share queued in its session.
        replicas[2]->kill();
        publish(p, n / 2, n, sensors);
        replicas[2]->start();
    }
    REQUIRE(replicas[2]->wait_ready());
    for (auto& r : replicas)
        REQUIRE_MESSAGE(eventually([&] { return everything(r->port()).size() >= n; }, 30s),
                        "replica on port " << r->port() << " serves " << everything(r->port()).size());
    std::this_thread::sleep_for(300ms);

    const auto on0 = everything(replicas[0]->port());
    check_complete(on0, n, sensors);
    for (int i = 1; i < 3; ++i) CHECK_MESSAGE(everything(replicas[i]->port()) == on0, "replica " << i << " serves the same");

    // The broker shared the work: every replica stored some of it.
    std::int64_t sum = 0;
    for (auto& r : replicas) {
        const auto stored_here = metric_value(r->port(), "telemetry_readings_stored_total");
        CHECK_MESSAGE(stored_here > 0, "a replica stored " << stored_here);
        sum += std::max<std::int64_t>(0, stored_here);
    }
    CHECK(sum <= n);  // replica 2's count restarted with it

    // Each sensor's seq runs without a gap, but its readings came through three replicas and
    // committed in any order: no replica reports that reordering as readings lost upstream.
    for (auto& r : replicas) {
        CHECK(metric_value(r->port(), "telemetry_readings_seq_gaps_total") == 0);
        for (const auto& s : series_list(r->port())) CHECK_MESSAGE(s.at("seq_gaps").is_null(), s);
    }

    // SSE: half of the stream on replica 0, the rest resumed on replica 1 with Last-Event-ID.
    std::vector<std::int64_t> ids;
    while (ids.size() < n / 2) {
        auto ev = first_half.next();
        REQUIRE(ev);
        if (ev->event == "reading") ids.push_back(std::stoll(ev->id));
    }
    // The cursor names the shared database's epoch (docs/api.md 2.1): valid on every replica,
    // so the other replica resumes it without a reset.
    REQUIRE(first_half.last_event_id().find('@') != std::string::npos);
    sse_client rest(replicas[1]->port(), "/api/v1/stream", first_half.last_event_id());
    REQUIRE(rest.status() == 200);
    while (ids.size() < static_cast<std::size_t>(n)) {
        auto ev = rest.next();
        REQUIRE_MESSAGE(ev, "stream resumed on replica 1 ended after " << ids.size());
        CHECK_MESSAGE(ev->event != "reset", "no reset on another replica: " << ev->data);
        if (ev->event == "reading") ids.push_back(std::stoll(ev->id));
    }
    std::vector<std::int64_t> want;
    for (const auto& r : on0) want.push_back(r.id);
    CHECK_MESSAGE(ids == want, "the stream resumed on another replica has no gap and no duplicate");

    // Live: a reading published now reaches a stream on every replica.
    std::vector<std::unique_ptr<sse_client>> live;
    for (auto& r : replicas) live.push_back(std::make_unique<sse_client>(r->port(), "/api/v1/stream"));
    {
        publisher p(mqtt.url(), "sensor-late");
        p.pub("sensors/late/temperature", "{\"value\": 7, \"seq\": 1}");
    }
    for (auto& s : live) {
        std::optional<sse_event> ev;
        do ev = s->next(); while (ev && ev->event != "reading");
        REQUIRE(ev);
        CHECK(ev->data.find("\"sensor\":\"late\"") != std::string::npos);
    }
}

TEST_CASE("replicas - ingest.max_series counts the series every replica stored") {
    temp_dir dir;
    broker mqtt(dir / "broker");
    const std::string url = shared_pg_cluster().create_database();
    std::vector<std::unique_ptr<bridge>> replicas;
    for (int i = 0; i < 2; ++i) {
        const std::string name = "replica-" + std::to_string(i);
        const auto file = replica_config(dir.path(), name, url, true, "[ingest]\nmax_series = 3\n");
        replicas.push_back(std::make_unique<bridge>(dir / name, mqtt.url(), std::vector<std::string>{"--config", file.string()}));
    }
    for (auto& r : replicas) REQUIRE(r->wait_ready());

    publisher p(mqtt.url(), "sensor-fleet");
    // Three series, shared between the replicas: each stored some of them.
    for (int i = 0; i < 3; ++i) p.pub("sensors/s" + std::to_string(i) + "/temperature", "{\"value\": 1, \"seq\": 1}");
    for (auto& r : replicas)
        REQUIRE_MESSAGE(eventually([&] { return series_list(r->port()).size() == 3; }, 30s),
                        "replica on port " << r->port() << " lists " << series_list(r->port()).size());
    // The database holds max_series series: every replica rejects new ones, whichever stored what.
    for (int i = 3; i < 9; ++i) p.pub("sensors/s" + std::to_string(i) + "/temperature", "{\"value\": 2, \"seq\": 2}");
    // Known series still pass: a last reading of s0, served by every replica.
    p.pub("sensors/s0/temperature", "{\"value\": 3, \"seq\": 3}");
    for (auto& r : replicas)
        REQUIRE(eventually([&] {
            const auto rs = everything(r->port());
            return std::any_of(rs.begin(), rs.end(), [](const stored& x) { return x.value == 3; });
        }, 30s));
    const auto rejected = [&] {
        std::int64_t sum = 0;
        for (auto& r : replicas)
            sum += std::max<std::int64_t>(0, metric_value(r->port(), "telemetry_ingest_rejects_total{reason=\"series_limit\"}"));
        return sum;
    };
    CHECK_MESSAGE(eventually([&] { return rejected() == 6; }, 30s), rejected() << " of 6 new series rejected");
    for (auto& r : replicas) CHECK(series_list(r->port()).size() == 3);
    CHECK(shared_pg_cluster().psql(url.substr(url.rfind('/') + 1),
                                   "SELECT count(DISTINCT series_id) FROM readings") == "3\n");
}
