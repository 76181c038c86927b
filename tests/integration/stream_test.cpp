// End-to-end tests of Server-Sent Events on /api/v1/stream: replay, live delivery, resume with
// Last-Event-ID under concurrent publishing, replay from storage, reset, presence, shutdown.
// The contract they check: docs/api.md sections 4 (SSE), 6 (resets) and 7 (slow clients, conflation).
#include "http_client.hpp"
#include "mqtt_publisher.hpp"
#include "processes.hpp"
#include "sse_client.hpp"

#include <doctest/doctest.h>

#include <boost/json.hpp>

#include <atomic>
#include <csignal>
#include <fstream>
#include <map>
#include <set>
#include <thread>

using namespace telemetry::testing;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {


// Writes `toml` as the bridge's configuration file and returns the arguments that name it.
std::vector<std::string> with_config(const temp_dir& dir, const std::string& toml) {
    std::ofstream(dir / "bridge.toml") << toml;
    return {"--config", (dir / "bridge.toml").string()};
}

// Mosquitto, a bridge configured by `toml` and ready, and a publisher: for the retention tests.
struct retention_system {
    temp_dir dir;
    broker mosq{dir / "mosquitto"};
    bridge br;
    publisher p;
    retention_system(const std::string& toml, const std::string& client_id)
        : br(dir / "bridge", mosq.url(), with_config(dir, toml)), p(mosq.url(), client_id) {
        REQUIRE(br.wait_ready());
    }
};

// Retention runs on its own thread from start-up, while the bridge already serves: true once its
// pass has deleted readings after the cursor of `query` (a long poll then carries a reset).
bool retention_applied(std::uint16_t port, const std::string& query) {
    return eventually([&] {
        const auto r = http_get(port, "/api/v1/updates?timeout=0&" + query);
        return r.status == 200 && json::parse(r.body).as_object().contains("reset");
    });
}

std::int64_t newest_id(std::uint16_t port) {
    const auto r = http_get(port, "/api/v1/updates?timeout=0");
    return r.status == 200 ? cursor_id(json::parse(r.body).at("cursor").as_string()) : -1;
}

// One SenML message of `n` temperature readings: many readings per MQTT message, to fill socket
// buffers quickly.
std::string senml_temperatures(int n) {
    std::string senml = "[";
    for (int i = 0; i < n; ++i) {
        if (i) senml += ',';
        senml += "{\"n\":\"temperature\",\"v\":";
        senml += std::to_string(i % 40);
        senml += '}';
    }
    senml += ']';
    return senml;
}

// The readings of the next `n` reading events (skipping retry/status), or fewer on timeout.
std::vector<json::object> take_readings(sse_client& c, std::size_t n, std::chrono::milliseconds timeout = 10s) {
    std::vector<json::object> out;
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (out.size() < n && std::chrono::steady_clock::now() < end) {
        auto ev = c.next(std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now()));
        if (!ev) break;
        if (ev->event != "reading") continue;
        auto r = json::parse(ev->data).as_object();
        // The event's id is the reading's cursor: its id and the database's epoch (api.md 2.1).
        CHECK(ev->id.rfind(std::to_string(r.at("id").as_int64()) + "@", 0) == 0);
        CHECK(ev->id.size() == std::to_string(r.at("id").as_int64()).size() + 9);
        out.push_back(std::move(r));
    }
    return out;
}

}  // namespace

TEST_CASE("sse - replays after an id then continues live in id order") {
    temp_dir dir;
    broker mosq(dir / "mosquitto");
    bridge br(dir / "bridge", mosq.url());
    REQUIRE(br.wait_ready());
    publisher p(mosq.url(), "t-sse1");
    for (int i = 0; i < 5; ++i) p.pub("sensors/a/temperature", std::to_string(20 + i));
    p.pub("sensors/a/humidity", "40");
    REQUIRE(eventually([&] { return newest_id(br.port()) == 6; }));

    sse_client c(br.port(), "/api/v1/stream?after=0&topic=sensors/%2B/temperature");
    REQUIRE(c.status() == 200);
    CHECK(c.header_block().find("text/event-stream") != std::string::npos);
    const auto first = c.next();
    REQUIRE(first);
    CHECK(first->event == "retry");  // the retry hint comes first
    auto replay = take_readings(c, 5);
    REQUIRE(replay.size() == 5);
    for (std::size_t i = 0; i < 5; ++i) CHECK(replay[i].at("id").as_int64() == static_cast<std::int64_t>(i + 1));

    p.pub("sensors/b/humidity", "41");       // filtered out
    p.pub("sensors/b/temperature", "22.5");  // delivered live
    p.pub("sensors/b/status", "offline");    // presence of a sensor the filter can match
    auto live = take_readings(c, 1);
    REQUIRE(live.size() == 1);
    CHECK(live[0].at("sensor").as_string() == "b");
    CHECK(live[0].at("id").as_int64() == 8);
    std::optional<sse_event> status;
    for (int i = 0; i < 5 && !status; ++i) {
        auto ev = c.next(5s);
        if (ev && ev->event == "status") status = ev;
    }
    REQUIRE(status);
    CHECK(json::parse(status->data) == json::parse(R"({"sensor":"b","online":false})"));

    // Without after or Last-Event-ID the stream starts live: nothing old is replayed.
    sse_client fresh(br.port(), "/api/v1/stream");
    REQUIRE(fresh.next());  // retry
    p.pub("sensors/c/temperature", "23");
    auto only_new = take_readings(fresh, 1);
    REQUIRE(only_new.size() == 1);
    CHECK(only_new[0].at("sensor").as_string() == "c");
    CHECK(http_get(br.port(), "/api/v1/stream?topic=a/%23/b").status == 400);
    CHECK(http_get(br.port(), "/api/v1/stream", {{"Last-Event-ID", "x"}}).status == 400);
}

TEST_CASE("sse - resuming with Last-Event-ID under concurrent publishing misses nothing and repeats nothing") {
    temp_dir dir;
    broker mosq(dir / "mosquitto");
    // A small window forces some resumes to replay from storage, others from memory.
    std::ofstream(dir / "bridge.toml") << "[hub]\nwindow = 64\n";
    bridge br(dir / "bridge", mosq.url(), {"--config", (dir / "bridge.toml").string()});
    REQUIRE(br.wait_ready());
    constexpr int total = 3000;
    std::atomic<bool> done{false};
    std::thread sensor([&] {
        publisher p(mosq.url(), "t-sse2");
        for (int i = 0; i < total; ++i) {
            p.pub("sensors/r" + std::to_string(i % 3) + "/temperature", std::to_string(i));
            if (i % 10 == 0) std::this_thread::sleep_for(5ms);
        }
        done = true;
    });
    std::vector<std::int64_t> ids;
    std::optional<std::string> last;
    int reconnects = 0;
    while (ids.size() < static_cast<std::size_t>(total)) {
        sse_client c(br.port(), "/api/v1/stream?after=0", last);
        REQUIRE(c.status() == 200);
        // Read a random-ish number of events, then drop the connection like a flaky network.
        const std::size_t want = std::min<std::size_t>(150 + static_cast<std::size_t>(reconnects * 37 % 200),
                                                       static_cast<std::size_t>(total) - ids.size());
        auto got = take_readings(c, want, 20s);
        for (const auto& r : got) ids.push_back(r.at("id").as_int64());
        if (!c.last_event_id().empty()) last = c.last_event_id();
        ++reconnects;
        if (got.empty() && done) break;
        if (reconnects > 200) break;
    }
    sensor.join();
    MESSAGE(reconnects << " connections");
    CHECK(reconnects > 5);
    REQUIRE(ids.size() == static_cast<std::size_t>(total));
    for (std::size_t i = 0; i < ids.size(); ++i) REQUIRE(ids[i] == static_cast<std::int64_t>(i + 1));
}

TEST_CASE("sse - a cursor older than retention starts with a reset event and long polling says so too") {
    // Readings up to 60 days old are accepted, and deleted by the next retention pass (30 days).
    retention_system s("[ingest]\nmax_ts_past_s = 5184000\n", "t-sse3");
    auto& br = s.br;
    auto& p = s.p;
    const auto now = now_ms();
    const auto old_ts = now - 40LL * 86'400'000;
    for (int i = 0; i < 5; ++i)
        p.pub("sensors/o/temperature", "{\"value\": 1, \"ts\": " + std::to_string(old_ts + i) + "}");
    p.pub("sensors/o/temperature", "{\"value\": 2, \"ts\": " + std::to_string(now) + "}");
    REQUIRE(eventually([&] { return newest_id(br.port()) == 6; }));
    // Retention (30 days) runs at start-up: restart to apply it.
    CHECK(br.stop() == 0);
    br.start();
    REQUIRE(br.wait_ready());
    REQUIRE(retention_applied(br.port(), "after=2"));
    sse_client c(br.port(), "/api/v1/stream?after=2");
    std::optional<sse_event> ev;
    do {
        ev = c.next();
    } while (ev && ev->event == "retry");
    REQUIRE(ev);
    CHECK(ev->event == "reset");
    const auto reset = json::parse(ev->data);
    CHECK(reset.at("oldest_id").as_int64() == 6);
    auto after_reset = take_readings(c, 1);
    REQUIRE(after_reset.size() == 1);
    CHECK(after_reset[0].at("id").as_int64() == 6);

    // Long polling says the same, as a field beside the readings.
    const auto poll = http_get(br.port(), "/api/v1/updates?after=2&timeout=1");
    REQUIRE(poll.status == 200);
    const auto body = json::parse(poll.body);
    CHECK(body.at("reset").at("oldest_id").as_int64() == 6);
    REQUIRE(body.at("readings").as_array().size() == 1);
    CHECK(body.at("readings").at(0).at("id").as_int64() == 6);
    // A cursor at or after the deletions gets no reset.
    CHECK(!json::parse(http_get(br.port(), "/api/v1/updates?after=5&timeout=0").body).as_object().contains("reset"));
}

TEST_CASE("sse - a reset goes only to clients that select a series retention deleted readings of after their cursor") {
    // One day of retention: a late reading dated just inside that day is accepted, gets a recent
    // id, and is deleted by the next retention pass a few seconds later.
    retention_system s("[storage]\nretention_days = 1\n", "t-sse-reset");
    auto& br = s.br;
    auto& p = s.p;
    p.pub("sensors/y/temperature", "20");  // 1
    p.pub("sensors/y/temperature", "21");  // 2
    p.pub("sensors/x/temperature", "{\"value\": 5, \"ts\": " + std::to_string(now_ms() - 86'400'000 + 2'000) + "}");  // 3
    p.pub("sensors/y/temperature", "22");  // 4
    p.pub("sensors/x/temperature", "6");   // 5
    REQUIRE(eventually([&] { return newest_id(br.port()) == 5; }));
    std::this_thread::sleep_for(3s);  // reading 3 is now older than a day
    // Retention runs at start-up: restart to apply it.
    CHECK(br.stop() == 0);
    br.start();
    REQUIRE(br.wait_ready());
    REQUIRE(retention_applied(br.port(), "after=2"));
    REQUIRE(json::parse(http_get(br.port(), "/api/v1/sensors/x/temperature/readings").body).at("readings").as_array().size() == 1);

    // The first event after the retry hint, over SSE.
    const auto first_event = [&](const std::string& target) {
        sse_client c(br.port(), target);
        std::optional<sse_event> ev;
        do {
            ev = c.next();
        } while (ev && ev->event == "retry");
        REQUIRE(ev);
        return *ev;
    };
    // Following y only: nothing of y was deleted, so no reset, just the readings after 2.
    const auto y = first_event("/api/v1/stream?after=2&topic=sensors/y/%23");
    CHECK(y.event == "reading");
    CHECK(cursor_id(y.id) == 4);
    // Following x, or everything: reading 3 is gone.
    const auto x = first_event("/api/v1/stream?after=2&topic=sensors/x/%23");
    REQUIRE(x.event == "reset");
    CHECK(json::parse(x.data) == json::parse(R"({"reason":"retention","after":2,"oldest_id":1})"));
    CHECK(first_event("/api/v1/stream?after=2").event == "reset");
    // After the deleted reading: nothing missed.
    const auto later = first_event("/api/v1/stream?after=3");
    CHECK(later.event == "reading");
    CHECK(cursor_id(later.id) == 4);

    // Long polling decides the same way.
    const auto poll = [&](const std::string& query) {
        const auto r = http_get(br.port(), "/api/v1/updates?timeout=0&" + query);
        REQUIRE(r.status == 200);
        return json::parse(r.body).as_object();
    };
    CHECK(!poll("after=2&topic=sensors/y/%23").contains("reset"));
    CHECK(poll("after=2&topic=sensors/x/%23").contains("reset"));
    CHECK(poll("after=2").contains("reset"));
    CHECK(!poll("after=3").contains("reset"));
}

TEST_CASE("sse - a stalled client is disconnected while a healthy one keeps receiving everything") {
    temp_dir dir;
    broker mosq(dir / "mosquitto");
    std::ofstream(dir / "bridge.toml") << "[stream]\nmax_queue_bytes = 524288\nmax_queue_events = 10000\n";
    bridge br(dir / "bridge", mosq.url(), {"--config", (dir / "bridge.toml").string()});
    REQUIRE(br.wait_ready());
    sse_client stalled(br.port(), "/api/v1/stream?after=0", std::nullopt, 4096);
    auto healthy = std::make_unique<sse_client>(br.port(), "/api/v1/stream?after=0");
    REQUIRE(stalled.status() == 200);
    REQUIRE(healthy->status() == 200);
    // SenML batches of 400 readings per MQTT message, enough to fill every socket buffer.
    constexpr int messages = 150, per_message = 400, total = messages * per_message;
    std::thread sensor([&] {
        publisher p(mosq.url(), "t-sse4");
        for (int m = 0; m < messages; ++m) {
            p.pub("sensors/s" + std::to_string(m % 4) + "/temperature", senml_temperatures(per_message));
        }
    });
    // A reader that keeps up gets everything. On a loaded machine even it may fall a queue behind
    // now and then; like a browser it then resumes with Last-Event-ID, and still misses nothing.
    std::vector<json::object> got;
    int healthy_resumes = 0;
    const auto until = std::chrono::steady_clock::now() + 90s;
    while (got.size() < static_cast<std::size_t>(total) && std::chrono::steady_clock::now() < until) {
        auto more = take_readings(*healthy, total - got.size(), 30s);
        got.insert(got.end(), more.begin(), more.end());
        if (healthy->closed()) {
            ++healthy_resumes;
            healthy = std::make_unique<sse_client>(br.port(), "/api/v1/stream", healthy->last_event_id());
        }
    }
    sensor.join();
    if (got.size() != static_cast<std::size_t>(total)) MESSAGE(read_file(dir / "bridge" / "bridge.err"));
    REQUIRE(got.size() == static_cast<std::size_t>(total));
    for (std::size_t i = 0; i < got.size(); ++i) REQUIRE(got[i].at("id").as_int64() == static_cast<std::int64_t>(i + 1));
    const auto m = http_get(br.port(), "/metrics").body;
    CHECK(m.find("telemetry_stream_slow_disconnects_total " + std::to_string(1 + healthy_resumes)) != std::string::npos);
    // The stalled client finds its stream closed after what it had buffered...
    std::vector<json::object> early = take_readings(stalled, total, 30s);
    CHECK(stalled.closed());
    CHECK(early.size() < static_cast<std::size_t>(total));
    // ...and resumes from its last id, losing nothing.
    sse_client resumed(br.port(), "/api/v1/stream", stalled.last_event_id());
    auto rest = take_readings(resumed, total - early.size(), 30s);
    CHECK(early.size() + rest.size() == static_cast<std::size_t>(total));
    if (!rest.empty()) CHECK(rest.front().at("id").as_int64() == static_cast<std::int64_t>(early.size() + 1));
}

TEST_CASE("sse - policy=conflate keeps a stalled client connected with the newest reading per series") {
    temp_dir dir;
    broker mosq(dir / "mosquitto");
    std::ofstream(dir / "bridge.toml") << "[stream]\nmax_queue_bytes = 524288\nmax_queue_events = 10000\n";
    bridge br(dir / "bridge", mosq.url(), {"--config", (dir / "bridge.toml").string()});
    REQUIRE(br.wait_ready());
    sse_client stalled(br.port(), "/api/v1/stream?policy=conflate", std::nullopt, 4096);
    REQUIRE(stalled.status() == 200);
    REQUIRE(stalled.next());  // retry hint: the stream is live from here
    constexpr int messages = 160, per_message = 400, total = messages * per_message;  // 4 series alike
    {
        publisher p(mosq.url(), "t-sse-conflate");
        for (int m = 0; m < messages; ++m) {
            p.pub("sensors/s" + std::to_string(m % 4) + "/temperature", senml_temperatures(per_message));
        }
    }
    // Wait until all are committed, then read what the stalled client was sent.
    for (int i = 0; i < 600 && newest_id(br.port()) < total; ++i) std::this_thread::sleep_for(50ms);
    REQUIRE(newest_id(br.port()) == total);
    std::map<std::string, std::int64_t> accounted, newest;
    std::int64_t sum = 0, last = 0, skipped_any = 0;
    bool ordered = true;
    const auto end = std::chrono::steady_clock::now() + 60s;
    while (sum < total && std::chrono::steady_clock::now() < end) {
        auto got = take_readings(stalled, 1, 10s);
        if (got.empty()) break;
        const auto& r = got.front();
        const std::int64_t id = r.at("id").as_int64();
        ordered = ordered && id > last;
        last = id;
        const std::int64_t skipped = r.contains("skipped") ? r.at("skipped").as_int64() : 0;
        skipped_any += skipped;
        const std::string sensor(r.at("sensor").as_string());
        accounted[sensor] += 1 + skipped;
        newest[sensor] = id;
        sum += 1 + skipped;
    }
    CHECK(ordered);
    CHECK_FALSE(stalled.closed());
    // Every reading is either sent or counted as skipped, series by series...
    CHECK(sum == total);
    const std::vector<std::string> sensors{"s0", "s1", "s2", "s3"};
    for (const auto& s : sensors) CHECK(accounted[s] == total / 4);
    CHECK(skipped_any > 0);
    // ...and the last one sent of each series is its newest.
    for (const auto& s : sensors) {
        const auto l = http_get(br.port(), "/api/v1/sensors/" + s + "/temperature/latest");
        REQUIRE(l.status == 200);
        CHECK(newest[s] == json::parse(l.body).at("id").as_int64());
    }
    const auto m = http_get(br.port(), "/metrics").body;
    CHECK(m.find("telemetry_stream_slow_disconnects_total 0") != std::string::npos);
    CHECK(m.find("telemetry_stream_readings_conflated_total " + std::to_string(skipped_any)) != std::string::npos);
    CHECK(http_get(br.port(), "/api/v1/stream?policy=some").status == 400);
}

TEST_CASE("sse - a send-queue bound smaller than a replay chunk still resumes far behind") {
    temp_dir dir;
    broker mosq(dir / "mosquitto");
    std::ofstream(dir / "bridge.toml") << "[stream]\nmax_queue_events = 30\n[hub]\nwindow = 100\n";
    bridge br(dir / "bridge", mosq.url(), {"--config", (dir / "bridge.toml").string()});
    REQUIRE(br.wait_ready());
    constexpr int total = 3000;
    {
        publisher p(mosq.url(), "t-sse-small-queue");
        const std::string senml = senml_temperatures(500);
        for (int m = 0; m < total / 500; ++m) p.pub("sensors/q" + std::to_string(m % 2) + "/temperature", senml);
    }
    for (int i = 0; i < 400 && newest_id(br.port()) < total; ++i) std::this_thread::sleep_for(50ms);
    REQUIRE(newest_id(br.port()) == total);
    // From storage (older than the window) and then from memory, in chunks that fit the bound.
    sse_client c(br.port(), "/api/v1/stream?after=0");
    auto got = take_readings(c, total, 60s);
    REQUIRE(got.size() == static_cast<std::size_t>(total));
    for (std::size_t i = 0; i < got.size(); ++i) REQUIRE(got[i].at("id").as_int64() == static_cast<std::int64_t>(i + 1));
    CHECK(http_get(br.port(), "/metrics").body.find("telemetry_stream_slow_disconnects_total 0") != std::string::npos);
}

TEST_CASE("sse - shutdown closes streams with a retry hint and SIGTERM exits 0") {
    temp_dir dir;
    broker mosq(dir / "mosquitto");
    bridge br(dir / "bridge", mosq.url());
    REQUIRE(br.wait_ready());
    sse_client c(br.port(), "/api/v1/stream");
    REQUIRE(c.next());  // retry hint
    br.process().signal(SIGTERM);
    auto ev = c.next(10s);
    REQUIRE(ev);
    CHECK(ev->retry.has_value());
    CHECK(!c.next(10s));
    CHECK(c.closed());
    CHECK(br.process().wait(20s) == std::optional<int>(0));
}

// docs/api.md section 4: a stream receives the presence of the sensors its filters can match, and
// nothing of the others, even when a whole fleet comes online at once.
TEST_CASE("sse - presence follows the stream's filters, also when a fleet comes online") {
    temp_dir dir;
    broker mosq(dir / "mosquitto");
    bridge br(dir / "bridge", mosq.url());
    REQUIRE(br.wait_ready());
    publisher p(mosq.url(), "t-sse-presence");
    sse_client narrow(br.port(), "/api/v1/stream?topic=sensors/s7/temperature");
    sse_client wide(br.port(), "/api/v1/stream?topic=sensors/%2B/temperature");
    REQUIRE(narrow.next());  // retry
    REQUIRE(wide.next());
    constexpr int fleet = 300;
    for (int i = 0; i < fleet; ++i) p.pub("sensors/s" + std::to_string(i) + "/status", "online");
    for (int i = 0; i < fleet; ++i) p.pub("sensors/s" + std::to_string(i) + "/temperature", "20");
    p.pub("sensors/s7/temperature", "21");

    std::vector<std::string> narrow_status;
    int narrow_readings = 0;
    // A commit's statuses follow its readings: read on until both are complete.
    while (narrow_readings < 2 || narrow_status.empty()) {
        auto ev = narrow.next(10s);
        REQUIRE(ev);
        if (ev->event == "status") narrow_status.push_back(ev->data);
        if (ev->event == "reading") {
            CHECK(json::parse(ev->data).at("sensor").as_string() == "s7");
            ++narrow_readings;
        }
    }
    REQUIRE(narrow_status.size() == 1);
    CHECK(json::parse(narrow_status[0]) == json::parse(R"({"sensor":"s7","online":true})"));

    std::set<std::string> wide_status;
    int wide_readings = 0;
    while (wide_readings < fleet + 1 || wide_status.size() < static_cast<std::size_t>(fleet)) {
        auto ev = wide.next(10s);
        REQUIRE(ev);  // every sensor's presence comes, each at least once, and every reading
        if (ev->event == "status") wide_status.insert(std::string(json::parse(ev->data).at("sensor").as_string()));
        if (ev->event == "reading") ++wide_readings;
    }
    CHECK(wide_readings == fleet + 1);  // no reading twice
}
