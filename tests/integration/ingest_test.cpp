// End-to-end tests of what ingest promises (docs/api.md section 1): nothing lost, nothing stored
// twice across crashes, restarts and retained messages, whatever the payload form; times outside
// the accepted window rejected; gaps in `seq` counted. A real Mosquitto, the real broker-bridge,
// checked over HTTP and in the SQLite file itself.
#include "http_client.hpp"
#include "mqtt_publisher.hpp"
#include "processes.hpp"
#include "tcp_proxy.hpp"

#include <doctest/doctest.h>

#include <boost/json.hpp>

#include <sqlite3.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <thread>

using namespace telemetry::testing;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

json::value get_json(std::uint16_t port, const std::string& target) {
    const auto r = http_get(port, target);
    REQUIRE_MESSAGE(r.status == 200, target << " -> " << r.status << " " << r.body);
    return json::parse(r.body);
}

// The series' entry in /api/v1/sensors, or null.
json::value series_of(std::uint16_t port, const std::string& sensor) {
    const json::value doc = get_json(port, "/api/v1/sensors");
    for (const auto& s : doc.at("series").as_array())
        if (s.at("sensor").as_string() == sensor) return s;
    return nullptr;
}

std::int64_t count_of(std::uint16_t port, const std::string& sensor) {
    const auto s = series_of(port, sensor);
    return s.is_null() ? 0 : s.at("count").as_int64();
}

std::int64_t metric_value(std::uint16_t port, const std::string& line_prefix) {
    const auto r = http_get(port, "/metrics");
    const auto at = r.body.find("\n" + line_prefix + " ");
    if (at == std::string::npos) return -1;
    return std::stoll(r.body.substr(at + line_prefix.size() + 2));
}

// The bridge's SQLite file, read-only, for what HTTP does not show.
class database {
public:
    explicit database(const std::filesystem::path& file) {
        if (sqlite3_open_v2(file.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK)
            throw std::runtime_error("cannot open " + file.string());
    }
    ~database() { sqlite3_close(db_); }
    database(const database&) = delete;
    database& operator=(const database&) = delete;
    // Every row of the first column as text.
    std::vector<std::string> column(const std::string& sql) {
        sqlite3_stmt* st = nullptr;
        if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK)
            throw std::runtime_error(sqlite3_errmsg(db_));
        std::vector<std::string> out;
        while (sqlite3_step(st) == SQLITE_ROW) {
            const auto* t = sqlite3_column_text(st, 0);
            out.emplace_back(t ? reinterpret_cast<const char*>(t) : "");
        }
        sqlite3_finalize(st);
        return out;
    }

private:
    sqlite3* db_ = nullptr;
};

struct system_under_test {
    temp_dir dir;
    broker mosq{dir / "mosquitto"};
    std::unique_ptr<bridge> br;
    explicit system_under_test(const std::string& bridge_toml = "") {
        std::ofstream(dir / "bridge.toml") << bridge_toml;
        br = std::make_unique<bridge>(dir / "bridge", mosq.url(),
                                      std::vector<std::string>{"--config", (dir / "bridge.toml").string()});
        REQUIRE(br->wait_ready());
    }
};

// One payload form per series; the n-th message of a series carries the value n.
struct form {
    std::string sensor;
    bool retained;
    std::string (*payload)(int n, std::int64_t base_ts);
};
const form forms[] = {
    {"f-json", false, [](int n, std::int64_t t) {
         return "{\"value\": " + std::to_string(n) + ", \"seq\": " + std::to_string(n) + ", \"ts\": " +
                std::to_string(t + n) + "}";
     }},
    {"f-seq", false, [](int n, std::int64_t) {
         return "{\"value\": " + std::to_string(n) + ", \"seq\": " + std::to_string(n) + "}";
     }},
    {"f-object", false, [](int n, std::int64_t) { return "{\"value\": " + std::to_string(n) + "}"; }},
    {"f-number", false, [](int n, std::int64_t) { return std::to_string(n); }},
    {"f-senml", false, [](int n, std::int64_t) { return "[{\"v\": " + std::to_string(n) + "}]"; }},
    {"f-retained", true, [](int n, std::int64_t) { return std::to_string(n); }},
};

}  // namespace

TEST_CASE("ingest - SIGKILLs while every payload form is published at QoS 1 store each reading exactly once") {
    temp_dir dir;
    broker mosq(dir / "mosquitto");
    // The bridge reaches the broker through a proxy that can hold its acknowledgements back, so
    // that a kill loses the PUBACKs of readings already journaled: the broker redelivers those.
    tcp_proxy proxy(mosq.port());
    bridge br(dir / "bridge", proxy.url());
    REQUIRE(br.wait_ready());
    std::atomic<bool> stop{false};
    std::atomic<int> published{0};  // messages, all series together
    std::map<std::string, int> per_series;
    const std::int64_t base_ts = now_ms() - 3'600'000;
    std::thread sensor([&] {
        publisher p(mosq.url(), "t-forms");
        for (int k = 0; !stop; ++k) {
            const auto& f = forms[static_cast<std::size_t>(k) % std::size(forms)];
            const int n = per_series[f.sensor]++;
            p.pub("sensors/" + f.sensor + "/temperature", f.payload(n, base_ts), 1, f.retained);
            published = k + 1;
            if (k % 3 == 0) std::this_thread::sleep_for(1ms);  // about 2000 messages a second at most
        }
    });
    // Five SIGKILLs while readings flow, each at a different moment after the bridge is ready;
    // before three of them the bridge's acknowledgements are held back for a while.
    std::mt19937 rng(11);
    std::int64_t recognised = 0;  // redelivered readings the bridge recognised
    for (int kill = 0; kill < 5; ++kill) {
        std::this_thread::sleep_for(std::chrono::milliseconds(300 + rng() % 500));
        const bool lose_acks = kill % 2 == 0;
        if (lose_acks) {
            proxy.hold(true);
            std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 200));
        }
        recognised += std::max<std::int64_t>(0, metric_value(br.port(), "telemetry_readings_duplicate_total"));
        br.kill();
        proxy.hold(false);
        std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 200));
        br.start();
        REQUIRE(br.wait_ready());
    }
    std::this_thread::sleep_for(500ms);
    stop = true;
    sensor.join();
    const int total = published;
    REQUIRE(total > 1000);
    const auto port = br.port();
    const bool arrived = eventually([&] {
        for (const auto& f : forms)
            if (count_of(port, f.sensor) < per_series[f.sensor]) return false;
        return true;
    }, 60s);
    REQUIRE_MESSAGE(arrived, "bridge log:\n" << read_file(dir / "bridge" / "bridge.err"));
    std::this_thread::sleep_for(500ms);  // a redelivery stored twice would show up by now
    recognised += std::max<std::int64_t>(0, metric_value(port, "telemetry_readings_duplicate_total"));
    MESSAGE(total << " messages, 5 kills, " << recognised << " redelivered readings recognised");
    CHECK(recognised > 0);  // the kills did lose acknowledgements of journaled readings

    // Resuming from 0 yields every reading once, ids strictly increasing.
    std::int64_t cursor = 0, seen = 0;
    for (;;) {
        const auto page = get_json(port, "/api/v1/updates?after=" + std::to_string(cursor) + "&limit=10000&timeout=0");
        const auto& rs = page.at("readings").as_array();
        for (const auto& r : rs) {
            REQUIRE(r.at("id").as_int64() > cursor);
            cursor = r.at("id").as_int64();
            ++seen;
        }
        if (rs.empty()) break;
    }
    CHECK(seen == total);

    REQUIRE(br.stop() == 0);
    database db(br.db());
    CHECK(db.column("PRAGMA integrity_check") == std::vector<std::string>{"ok"});
    for (const auto& f : forms) {
        // Each value 0..n-1 exactly once, and in id order: the order they were published in.
        const auto values = db.column(
            "SELECT CAST(r.value AS INTEGER) FROM readings r JOIN series s USING(series_id) WHERE s.sensor = '" +
            f.sensor + "' ORDER BY r.id");
        const int n = per_series[f.sensor];
        CHECK_MESSAGE(values.size() == static_cast<std::size_t>(n), f.sensor << ": " << values.size() << " stored of " << n);
        bool in_order = values.size() == static_cast<std::size_t>(n);
        for (std::size_t i = 0; in_order && i < values.size(); ++i) in_order = values[i] == std::to_string(i);
        CHECK_MESSAGE(in_order, f.sensor << ": each value once, in publishing order");
    }
}

TEST_CASE("ingest - retained readings are not stored again by a restart nor re-dated by a new session") {
    system_under_test s;
    publisher p(s.mosq.url(), "t-retained");
    const std::int64_t measured = now_ms() - 60'000;
    p.pub("sensors/rt-number/temperature", "21.5", 1, true);
    p.pub("sensors/rt-object/temperature", R"({"value": 22.5})", 1, true);
    p.pub("sensors/rt-identified/temperature",
          "{\"value\": 23.5, \"seq\": 7, \"ts\": " + std::to_string(measured) + "}", 1, true);
    REQUIRE(eventually([&] {
        return count_of(s.br->port(), "rt-number") == 1 && count_of(s.br->port(), "rt-object") == 1 &&
               count_of(s.br->port(), "rt-identified") == 1;
    }));
    const auto dated = get_json(s.br->port(), "/api/v1/sensors/rt-number/temperature/latest").at("ts").as_int64();

    // Restarts, clean and crashed: the session resumes and the broker does not resend them.
    CHECK(s.br->stop() == 0);
    s.br->start();
    REQUIRE(s.br->wait_ready());
    s.br->kill();
    s.br->start();
    REQUIRE(s.br->wait_ready());
    p.pub("sensors/rt-marker/temperature", "1");  // once this is stored, anything resent would be too
    REQUIRE(eventually([&] { return count_of(s.br->port(), "rt-marker") == 1; }));
    for (const char* sensor : {"rt-number", "rt-object", "rt-identified"})
        CHECK_MESSAGE(count_of(s.br->port(), sensor) == 1, sensor);
    // A dead sensor does not look fresh because the bridge restarted.
    CHECK(get_json(s.br->port(), "/api/v1/sensors/rt-number/temperature/latest").at("ts").as_int64() == dated);

    // A bridge with a new session (another client id, another database) gets the retained
    // messages: only the one whose seq and ts say which reading it is, and when, is stored.
    std::ofstream(s.dir / "other.toml") << "[mqtt]\nclient_id = \"other-bridge\"\n";
    bridge other(s.dir / "other", s.mosq.url(), {"--config", (s.dir / "other.toml").string()});
    REQUIRE(other.wait_ready());
    REQUIRE(eventually([&] { return count_of(other.port(), "rt-identified") == 1; }));
    CHECK(eventually([&] {
        return metric_value(other.port(), "telemetry_ingest_rejects_total{reason=\"retained_replay\"}") == 2;
    }));
    CHECK(count_of(other.port(), "rt-number") == 0);
    CHECK(count_of(other.port(), "rt-object") == 0);
    CHECK(get_json(other.port(), "/api/v1/sensors/rt-identified/temperature/latest").at("ts").as_int64() == measured);

    // Presence is retained too, and still comes with every subscription: a bridge that lost it
    // (here: its database) gets it back from the broker when it subscribes again.
    p.pub("sensors/rt-identified/status", "online", 1, true);
    REQUIRE(eventually([&] { return series_of(s.br->port(), "rt-identified").at("online") == json::value(true); }));
    CHECK(s.br->stop() == 0);
    for (const char* suffix : {"", "-wal", "-shm", ".ingest-journal"})
        std::filesystem::remove(s.br->db().string() + suffix);
    s.br->start();
    REQUIRE(s.br->wait_ready());
    p.pub("sensors/rt-identified/temperature", "24.5");
    REQUIRE(eventually([&] { return count_of(s.br->port(), "rt-identified") == 1; }));
    CHECK(series_of(s.br->port(), "rt-identified").at("online") == json::value(true));
}

TEST_CASE("ingest - a time too far from arrival is rejected as ts_out_of_range and pins nothing") {
    system_under_test s;  // defaults: 300 s ahead, and retention's 30 days back
    publisher p(s.mosq.url(), "t-window");
    const std::int64_t now = now_ms();
    const std::string topic = "sensors/clock/temperature";
    p.pub(topic, R"({"value": 1, "ts": 4102444800000})");  // 2100-01-01
    p.pub(topic, R"({"value": 2, "ts": "1970-01-02T00:00:00Z"})");
    p.pub(topic, "[{\"bt\": 4102444800, \"v\": 3}]");  // SenML, 2100
    p.pub(topic, "{\"value\": 4, \"ts\": " + std::to_string(now - 31LL * 86'400'000) + "}");
    p.pub(topic, "{\"value\": 5, \"ts\": " + std::to_string(now - 29LL * 86'400'000) + "}");  // late, accepted
    p.pub(topic, "{\"value\": 6, \"ts\": " + std::to_string(now + 200'000) + "}");  // a clock a bit ahead
    REQUIRE(eventually([&] { return count_of(s.br->port(), "clock") == 2; }));
    CHECK(eventually([&] {
        return metric_value(s.br->port(), "telemetry_ingest_rejects_total{reason=\"ts_out_of_range\"}") == 4;
    }));
    CHECK(metric_value(s.br->port(), "telemetry_ingest_rejects_total{reason=\"bad_timestamp\"}") == 0);
    const auto latest = get_json(s.br->port(), "/api/v1/sensors/clock/temperature/latest");
    CHECK(latest.at("value").to_number<double>() == 6);
    // Once the clock is right again, its readings are the latest.
    p.pub(topic, "{\"value\": 7, \"ts\": " + std::to_string(now + 250'000) + "}");
    REQUIRE(eventually([&] { return count_of(s.br->port(), "clock") == 3; }));
    CHECK(get_json(s.br->port(), "/api/v1/sensors/clock/temperature/latest").at("value").to_number<double>() == 7);
    CHECK(read_file(s.dir / "bridge" / "bridge.err").find("ts_out_of_range") != std::string::npos);
}

TEST_CASE("ingest - gaps in seq are counted per series, in the metrics and in the log") {
    system_under_test s;
    publisher p(s.mosq.url(), "t-gaps");
    const std::string topic = "sensors/gappy/temperature";
    // 3 and 4 lost; a restart of the sensor (back to 0); 3 lost; a late 3 (ignored); 5..9 lost.
    const std::int64_t t0 = now_ms() - 60'000;
    int i = 0;
    for (int seq : {1, 2, 5, 6, 0, 1, 2, 4, 3, 10})
        p.pub(topic, "{\"value\": 1, \"seq\": " + std::to_string(seq) + ", \"ts\": " + std::to_string(t0 + 1000 * i++) + "}");
    for (int k = 0; k < 3; ++k) p.pub("sensors/plain/temperature", "{\"value\": 1}");
    REQUIRE_MESSAGE(eventually([&] { return count_of(s.br->port(), "gappy") == 10 && count_of(s.br->port(), "plain") == 3; }),
                    http_get(s.br->port(), "/api/v1/sensors").body << "\n" << read_file(s.dir / "bridge" / "bridge.err"));
    CHECK(series_of(s.br->port(), "gappy").at("seq_gaps").as_int64() == 8);
    CHECK(series_of(s.br->port(), "plain").at("seq_gaps").as_int64() == 0);
    CHECK(metric_value(s.br->port(), "telemetry_readings_seq_gaps_total") == 8);
    const std::string log = read_file(s.dir / "bridge" / "bridge.err");
    CHECK(log.find("gappy/temperature: seq jumped from 2 to 5: 2 readings missing") != std::string::npos);
    CHECK(log.find("seq jumped from 4 to 10: 5 readings missing") != std::string::npos);

    // Counted since the bridge started, from the last stored seq: 11 is missing.
    CHECK(s.br->stop() == 0);
    s.br->start();
    REQUIRE(s.br->wait_ready());
    CHECK(series_of(s.br->port(), "gappy").at("seq_gaps").as_int64() == 0);
    p.pub(topic, "{\"value\": 1, \"seq\": 12, \"ts\": " + std::to_string(t0 + 1000 * i) + "}");
    REQUIRE(eventually([&] { return count_of(s.br->port(), "gappy") == 11; }));
    CHECK(series_of(s.br->port(), "gappy").at("seq_gaps").as_int64() == 1);
    CHECK(metric_value(s.br->port(), "telemetry_readings_seq_gaps_total") == 1);
}

TEST_CASE("ingest - after a broker restart the bridge reconnects to its session and misses nothing") {
    system_under_test s;
    s.mosq.stop();
    REQUIRE(eventually([&] { return http_get(s.br->port(), "/readyz").status == 503; }));
    s.mosq.start();
    {
        // Published before the bridge is back: the broker queues them for its session.
        publisher p(s.mosq.url(), "t-broker-restart");
        for (int i = 0; i < 5; ++i) p.pub("sensors/back/temperature", std::to_string(i));
    }
    REQUIRE(s.br->wait_ready(60s));
    CHECK(eventually([&] { return count_of(s.br->port(), "back") == 5; }));
    publisher p(s.mosq.url(), "t-broker-restart");
    p.pub("sensors/back/temperature", "5");
    CHECK(eventually([&] { return count_of(s.br->port(), "back") == 6; }));
    CHECK(metric_value(s.br->port(), "telemetry_mqtt_subscribed") == 1);
}

// ingest.sync (docs/api.md 1.5): one journal sync per QoS 1 message, counted before the bridge's
// callback returns (and so before its PUBACK; the committer test checks that order); none when
// off. A power cut cannot be simulated here: this checks the syncs happen and the readings stay.
TEST_CASE("ingest - with ingest.sync each message is synced to disk, and readings survive a SIGKILL") {
    for (const bool sync : {false, true}) {
        CAPTURE(sync);
        system_under_test s(sync ? "[ingest]\nsync = true\n" : "[ingest]\nsync = false\n");
        const std::int64_t at_start = metric_value(s.br->port(), "telemetry_journal_syncs_total");
        CHECK(at_start == (sync ? 1 : 0));  // creating the journal syncs it and its directory
        publisher p(s.mosq.url(), "t-sync");
        constexpr int messages = 40;
        for (int i = 1; i <= messages; ++i)
            p.pub("sensors/durable/temperature", "{\"value\": " + std::to_string(i) + ", \"seq\": " + std::to_string(i) + "}");
        REQUIRE(eventually([&] { return metric_value(s.br->port(), "telemetry_readings_stored_total") == messages; }));
        const std::int64_t syncs = metric_value(s.br->port(), "telemetry_journal_syncs_total");
        if (sync) CHECK(syncs >= at_start + messages);  // one per message (and per compaction)
        else CHECK(syncs == 0);
        const std::string log = read_file(s.dir / "bridge" / "bridge.err");
        CHECK((log.find("ingest: sync on") != std::string::npos) == sync);
        s.br->kill();
        s.br->start();
        REQUIRE(s.br->wait_ready());
        CHECK(count_of(s.br->port(), "durable") == messages);
    }
}
