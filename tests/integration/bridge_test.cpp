// End-to-end tests: a real Mosquitto, the real broker-bridge and sensor-sim binaries, real sockets,
// checked the way a user would check them (over HTTP). The contract they check: docs/api.md
// sections 1 (ingest, presence), 2 (cursors), 3 (every HTTP path, conditional requests, errors)
// and 8.3 (limits).
#include "http_client.hpp"
#include "mqtt_publisher.hpp"
#include "processes.hpp"
#include "small_fs.hpp"

#include <doctest/doctest.h>

#include <boost/json.hpp>

#include <csignal>
#include <fstream>
#include <set>
#include <thread>

using namespace telemetry::testing;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {


// Recent sensor times: the bridge's retention (30 days by default) would delete older ones.
const std::int64_t t0_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch()).count() - 3'600'000;
std::string ts(std::int64_t offset_ms) { return std::to_string(t0_ms + offset_ms); }

json::value get_json(std::uint16_t port, const std::string& target) {
    const auto r = http_get(port, target);
    REQUIRE_MESSAGE(r.status == 200, target << " -> " << r.status << " " << r.body);
    return json::parse(r.body);
}

std::int64_t count_of(std::uint16_t port, const std::string& sensor, const std::string& metric) {
    const auto r = http_get(port, "/api/v1/sensors");
    if (r.status != 200) return -1;
    const json::value doc = json::parse(r.body);
    for (const auto& s : doc.at("series").as_array())
        if (s.at("sensor").as_string() == sensor && s.at("metric").as_string() == metric)
            return s.at("count").as_int64();
    return 0;
}

std::int64_t metric_value(std::uint16_t port, const std::string& line_prefix) {
    const auto r = http_get(port, "/metrics");
    const auto at = r.body.find("\n" + line_prefix + " ");
    if (at == std::string::npos) return -1;
    return std::stoll(r.body.substr(at + line_prefix.size() + 2));
}

// Every reading of a series, through the paginated history API.
std::vector<json::object> all_readings(std::uint16_t port, const std::string& series) {
    std::vector<json::object> out;
    std::string target = "/api/v1/sensors/" + series + "/readings?limit=10000";
    for (;;) {
        json::object page = get_json(port, target).as_object();
        for (auto& r : page.at("readings").as_array()) out.push_back(r.as_object());
        if (page.at("next").is_null()) break;
        target = "/api/v1/sensors/" + series + "/readings?limit=10000&cursor=" +
                 std::string(page.at("next").as_string());
    }
    return out;
}

struct system_under_test {
    temp_dir dir;
    broker mosq{dir / "mosquitto"};
    bridge br{dir / "bridge", mosq.url()};
    system_under_test() { REQUIRE(br.wait_ready()); }
};

}  // namespace

TEST_CASE("integration - simulator readings appear over HTTP with presence") {
    system_under_test s;
    child sim({sim_binary().string(), "--mqtt", s.mosq.url(), "--sensors", "3", "--rate", "5",
               "--duration", "3", "--seed", "7"},
              s.dir / "sim.out", s.dir / "sim.err");
    REQUIRE(eventually([&] {
        const auto r = http_get(s.br.port(), "/api/v1/sensors");
        if (r.status != 200) return false;
        const auto series = json::parse(r.body).at("series").as_array();
        if (series.size() != 3) return false;
        for (const auto& x : series)
            if (x.at("count").as_int64() < 5 || x.at("online") != json::value(true)) return false;
        return true;
    }));
    const auto list = get_json(s.br.port(), "/api/v1/sensors").at("series").as_array();
    const auto& first = list.at(0).as_object();
    CHECK(first.at("metric").as_string() == "temperature");
    CHECK(first.at("unit").as_string() == "Cel");
    // 5 Hz: the observed median interval is about 200 ms.
    const auto interval = first.at("interval_ms").as_int64();
    CHECK(interval >= 150);
    CHECK(interval <= 250);
    const auto latest = first.at("latest").as_object();
    CHECK(latest.at("value").is_number());
    CHECK(!latest.at("seq").is_null());
    const std::string series = std::string(first.at("sensor").as_string()) + "/temperature";
    const auto readings = all_readings(s.br.port(), series);
    CHECK(readings.size() >= 5);
    for (const auto& r : readings) {
        const double v = r.at("value").to_number<double>();
        CHECK(v > -30.0);
        CHECK(v < 50.0);
    }

    REQUIRE(sim.wait(20s) == std::optional<int>(0));
    CHECK(sim.out().find("sent=") != std::string::npos);
    // A clean stop publishes offline: every series shows it.
    CHECK(eventually([&] {
        const json::value doc = get_json(s.br.port(), "/api/v1/sensors");
        for (const auto& x : doc.at("series").as_array())
            if (x.at("online") != json::value(false)) return false;
        return true;
    }));
}

TEST_CASE("integration - sensor-sim --count publishes exactly that many readings, late rather than skipped") {
    system_under_test s;
    // Far faster than the broker takes QoS 1 through a window of 8: the plain schedule would skip.
    child sim({sim_binary().string(), "--mqtt", s.mosq.url(), "--sensors", "2", "--rate", "100000",
               "--count", "1500", "--buffer", "8", "--duration", "0", "--quiet", "--seed", "4"},
              s.dir / "sim.out", s.dir / "sim.err");
    REQUIRE(sim.wait(60s) == std::optional<int>(0));
    const auto out = sim.out();
    CHECK_MESSAGE(out.find("sent=3000 acked=3000 failed=0") != std::string::npos, out);
    CHECK_MESSAGE(out.find(" skipped=0 ") != std::string::npos, out);
    for (const char* id : {"sim-0000", "sim-0001"}) {
        const std::string series = std::string(id) + "/temperature";
        REQUIRE(eventually([&] { return count_of(s.br.port(), id, "temperature") == 1500; }));
        // Every slot published: seq rises by exactly one from reading to reading.
        const auto readings = all_readings(s.br.port(), series);
        REQUIRE(readings.size() == 1500);
        for (std::size_t i = 1; i < readings.size(); ++i)
            REQUIRE(readings[i].at("seq").as_int64() == readings[i - 1].at("seq").as_int64() + 1);
    }
}

TEST_CASE("integration - empty proxy variables in the environment do not keep MQTT from connecting") {
    // Set but empty, as container setups often leave them; the children inherit them.
    for (const char* v : {"http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"}) setenv(v, "", 1);
    system_under_test s;
    child sim({sim_binary().string(), "--mqtt", s.mosq.url(), "--sensors", "1", "--rate", "10",
               "--duration", "2", "--seed", "3"},
              s.dir / "sim.out", s.dir / "sim.err");
    CHECK(eventually([&] {
        const auto r = http_get(s.br.port(), "/api/v1/sensors");
        return r.status == 200 && json::parse(r.body).at("series").as_array().size() == 1;
    }));
}

TEST_CASE("integration - presence follows the last will of a killed simulator") {
    system_under_test s;
    child sim({sim_binary().string(), "--mqtt", s.mosq.url(), "--sensors", "1", "--rate", "5", "--seed", "3"},
              s.dir / "sim.out", s.dir / "sim.err");
    REQUIRE(eventually([&] {
        const auto series = get_json(s.br.port(), "/api/v1/sensors").at("series").as_array();
        return series.size() == 1 && series[0].at("online") == json::value(true);
    }));
    sim.signal(SIGKILL);
    sim.wait(5s);
    // Mosquitto publishes the will once it notices the dead connection (keepalive x 1.5 at most).
    CHECK(eventually([&] {
        const auto series = get_json(s.br.port(), "/api/v1/sensors").at("series").as_array();
        return series[0].at("online") == json::value(false);
    }, 60s));
}

TEST_CASE("integration - conditional requests answer 304 and tags change with the data") {
    system_under_test s;
    publisher p(s.mosq.url(), "t-cond");
    p.pub("sensors/c1/temperature", "{\"value\": 20.5, \"ts\": " + ts(0) + ", \"seq\": 1, \"unit\": \"Cel\"}");
    const std::uint16_t port = s.br.port();
    const std::string latest = "/api/v1/sensors/c1/temperature/latest";
    REQUIRE(eventually([&] { return http_get(port, latest).status == 200; }));

    const auto first = http_get(port, latest);
    const std::string tag = first.header("etag");
    REQUIRE(tag.size() > 2);
    CHECK(tag.front() == '"');  // strong
    CHECK(first.has("last-modified"));
    CHECK(json::parse(first.body).at("value").to_number<double>() == doctest::Approx(20.5));

    const auto check_304 = [&](const std::string& target, const header_list& h, const std::string& want_tag) {
        const auto r = http_get(port, target, h);
        CHECK_MESSAGE(r.status == 304, target << " " << r.status);
        CHECK(r.body.empty());
        CHECK(r.header("etag") == want_tag);
        CHECK(r.header("cache-control") == "no-cache");
    };
    check_304(latest, {{"If-None-Match", tag}}, tag);
    check_304(latest, {{"If-None-Match", "\"nope\", " + tag}}, tag);
    check_304(latest, {{"If-None-Match", "W/" + tag}}, tag);
    check_304(latest, {{"If-None-Match", "*"}}, tag);
    check_304(latest, {{"If-Modified-Since", first.header("last-modified")}}, tag);
    // If-None-Match wins over If-Modified-Since.
    CHECK(http_get(port, latest, {{"If-None-Match", "\"nope\""}, {"If-Modified-Since", first.header("last-modified")}}).status == 200);
    // HEAD: the same header, no body.
    const auto head = http_get(port, latest, {}, "HEAD");
    CHECK(head.status == 200);
    CHECK(head.body.empty());
    CHECK(head.header("etag") == tag);
    CHECK(head.header("content-length") == std::to_string(first.body.size()));

    // A late reading (older ts) does not change the latest reading, so not its tag either.
    p.pub("sensors/c1/temperature", "{\"value\": 19.0, \"ts\": " + ts(-600'000) + ", \"seq\": 2}");
    REQUIRE(eventually([&] { return count_of(port, "c1", "temperature") == 2; }));
    check_304(latest, {{"If-None-Match", tag}}, tag);

    // History and aggregates: tagged per query, revalidated from memory until the series changes.
    const std::string hist = "/api/v1/sensors/c1/temperature/readings?from=" + ts(-3'600'000) + "&order=desc";
    const auto h1 = http_get(port, hist);
    REQUIRE(h1.status == 200);
    check_304(hist, {{"If-None-Match", h1.header("etag")}}, h1.header("etag"));
    const std::string agg = "/api/v1/sensors/c1/temperature/aggregate?from=" + ts(-3'600'000) + "&to=" + ts(3'600'000) + "&bucket=1h";
    const auto a1 = http_get(port, agg);
    REQUIRE(a1.status == 200);
    check_304(agg, {{"If-None-Match", a1.header("etag")}}, a1.header("etag"));
    const auto list1 = http_get(port, "/api/v1/sensors");
    check_304("/api/v1/sensors", {{"If-None-Match", list1.header("etag")}}, list1.header("etag"));

    // A newer reading changes every representation that shows it.
    p.pub("sensors/c1/temperature", "{\"value\": 21.5, \"ts\": " + ts(1000) + ", \"seq\": 3}");
    REQUIRE(eventually([&] { return count_of(port, "c1", "temperature") == 3; }));
    const auto second = http_get(port, latest, {{"If-None-Match", tag}});
    CHECK(second.status == 200);
    CHECK(second.header("etag") != tag);
    CHECK(json::parse(second.body).at("value").to_number<double>() == doctest::Approx(21.5));
    CHECK(http_get(port, hist, {{"If-None-Match", h1.header("etag")}}).status == 200);
    CHECK(http_get(port, agg, {{"If-None-Match", a1.header("etag")}}).status == 200);
    CHECK(http_get(port, "/api/v1/sensors", {{"If-None-Match", list1.header("etag")}}).status == 200);
    // Unknown series: 404 with a JSON error.
    const auto missing = http_get(port, "/api/v1/sensors/nope/temperature/latest");
    CHECK(missing.status == 404);
    CHECK(json::parse(missing.body).at("error").at("code").as_string() == "not_found");
}

TEST_CASE("integration - long poll answers on publish and times out with the newest cursor") {
    system_under_test s;
    publisher p(s.mosq.url(), "t-poll");
    const std::uint16_t port = s.br.port();
    p.pub("sensors/lp/humidity", "40");
    REQUIRE(eventually([&] { return count_of(port, "lp", "humidity") == 1; }));
    const std::int64_t after = cursor_id(get_json(port, "/api/v1/updates?after=0&timeout=1").at("cursor").as_string());
    CHECK(after == 1);

    // Parked until a matching reading is committed; non-matching ones do not wake it.
    std::chrono::steady_clock::time_point published;
    std::thread later([&] {
        std::this_thread::sleep_for(500ms);
        p.pub("sensors/lp/humidity", "41");
        std::this_thread::sleep_for(300ms);
        published = std::chrono::steady_clock::now();
        p.pub("sensors/lp/temperature", "22.5");
    });
    const auto r = http_get(port, "/api/v1/updates?after=" + std::to_string(after) +
                                      "&topic=sensors/%2B/temperature&timeout=20");
    const auto answered = std::chrono::steady_clock::now();
    later.join();
    REQUIRE(r.status == 200);
    const auto body = json::parse(r.body).as_object();
    REQUIRE(body.at("readings").as_array().size() == 1);
    CHECK(body.at("readings").at(0).at("metric").as_string() == "temperature");
    CHECK(cursor_id(body.at("cursor").as_string()) == 3);
    CHECK(answered - published < 1s);

    // Timeout: no readings, cursor = newest id, so the next call skips what did not match.
    p.pub("sensors/lp/humidity", "42");
    REQUIRE(eventually([&] { return count_of(port, "lp", "humidity") == 3; }));
    const auto t0 = std::chrono::steady_clock::now();
    const auto idle = get_json(port, "/api/v1/updates?after=3&topic=sensors/%2B/temperature&timeout=1").as_object();
    const auto waited = std::chrono::steady_clock::now() - t0;
    CHECK(idle.at("readings").as_array().empty());
    CHECK(cursor_id(idle.at("cursor").as_string()) == 4);
    CHECK(waited >= 900ms);
    CHECK(waited < 5s);

    // Replay: an old cursor answers at once with what it missed, in id order.
    const auto replay = get_json(port, "/api/v1/updates?after=0&limit=2").as_object();
    CHECK(replay.at("readings").as_array().size() == 2);
    CHECK(replay.at("readings").at(0).at("id").as_int64() == 1);
    CHECK(cursor_id(replay.at("cursor").as_string()) == 2);
    // Bad parameters are named.
    const auto bad = http_get(port, "/api/v1/updates?topic=a/%23/b");
    CHECK(bad.status == 400);
    CHECK(bad.body.find("topic") != std::string::npos);
    CHECK(http_get(port, "/api/v1/updates?timeout=1000").status == 400);
}

TEST_CASE("integration - restart keeps data and ids") {
    system_under_test s;
    publisher p(s.mosq.url(), "t-restart");
    for (int i = 0; i < 10; ++i)
        p.pub("sensors/r1/temperature", "{\"value\": " + std::to_string(20 + i) + ", \"seq\": " + std::to_string(i) + "}");
    REQUIRE(eventually([&] { return count_of(s.br.port(), "r1", "temperature") == 10; }));
    const auto before = all_readings(s.br.port(), "r1/temperature");
    CHECK(s.br.stop() == 0);
    s.br.start();
    REQUIRE(s.br.wait_ready());
    const auto after = all_readings(s.br.port(), "r1/temperature");
    REQUIRE(after.size() == 10);
    for (std::size_t i = 0; i < 10; ++i) CHECK(after[i] == before[i]);
    p.pub("sensors/r1/temperature", R"({"value": 30, "seq": 10})");
    REQUIRE(eventually([&] { return count_of(s.br.port(), "r1", "temperature") == 11; }));
    const auto latest = get_json(s.br.port(), "/api/v1/sensors/r1/temperature/readings?order=desc&limit=1");
    CHECK(latest.at("readings").at(0).at("id").as_int64() > before.back().at("id").as_int64());
}

TEST_CASE("integration - readings published while the bridge is down arrive after it returns") {
    system_under_test s;
    publisher p(s.mosq.url(), "t-down");
    CHECK(s.br.stop() == 0);
    for (int i = 0; i < 200; ++i)
        p.pub("sensors/d1/temperature", "{\"value\": 21.5, \"seq\": " + std::to_string(i) + "}");
    s.br.start();
    REQUIRE(s.br.wait_ready());
    CHECK(eventually([&] { return count_of(s.br.port(), "d1", "temperature") == 200; }));
}

TEST_CASE("integration - SIGKILL during a QoS 1 stream loses nothing and stores nothing twice") {
    system_under_test s;
    constexpr int total = 3000;
    std::atomic<int> published{0};
    std::thread sensor([&] {
        publisher p(s.mosq.url(), "t-kill");
        const auto base_ts = t0_ms;
        for (int i = 0; i < total; ++i) {
            p.pub("sensors/k1/temperature", "{\"value\": " + std::to_string(i % 50) + ", \"seq\": " +
                                                std::to_string(i) + ", \"ts\": " + std::to_string(base_ts + i) + "}");
            published = i + 1;
            if (i % 100 == 0) std::this_thread::sleep_for(5ms);
        }
    });
    // Kill the bridge twice while readings are flowing.
    for (int k = 0; k < 2; ++k) {
        REQUIRE(eventually([&] { return published.load() > (k + 1) * total / 3; }, 60s));
        s.br.kill();
        std::this_thread::sleep_for(200ms);
        s.br.start();
        REQUIRE(s.br.wait_ready());
    }
    sensor.join();
    const bool all_arrived = eventually([&] { return count_of(s.br.port(), "k1", "temperature") >= total; }, 60s);
    if (!all_arrived) MESSAGE("stored " << count_of(s.br.port(), "k1", "temperature") << " of " << total << "; bridge log:\n" << read_file(s.dir / "bridge" / "bridge.err"));
    REQUIRE(all_arrived);
    std::this_thread::sleep_for(500ms);  // let any redelivery land before counting exactly
    const auto readings = all_readings(s.br.port(), "k1/temperature");
    CHECK(readings.size() == static_cast<std::size_t>(total));
    std::set<std::int64_t> seqs, ids;
    for (const auto& r : readings) {
        seqs.insert(r.at("seq").as_int64());
        ids.insert(r.at("id").as_int64());
    }
    CHECK(seqs.size() == static_cast<std::size_t>(total));
    CHECK(ids.size() == static_cast<std::size_t>(total));
    CHECK(*seqs.begin() == 0);
    CHECK(*seqs.rbegin() == total - 1);
}

TEST_CASE("integration - malformed payloads are rejected while good ones keep flowing") {
    system_under_test s;
    publisher p(s.mosq.url(), "t-bad");
    const std::vector<std::pair<std::string, std::string>> bad{
        {"sensors/m1/temperature", "{not json"},
        {"sensors/m1/temperature", R"({"unit": "Cel"})"},
        {"sensors/m1/temperature", "nan"},
        {"sensors/m1/temperature", std::string(20000, '1')},
        {"sensors/m1/temperature", R"({"value": 1, "ts": "yesterday"})"},
        {"sensors/m1/temperature", R"({"value": 1, "seq": -4})"},
        {"sensors/bad sensor/temperature", "21"},
        {"sensors/m1/status", "maybe"},
    };
    int good = 0;
    for (const auto& [topic, payload] : bad) {
        p.pub(topic, payload);
        p.pub("sensors/m1/temperature", std::to_string(20 + good) + ".5");
        ++good;
    }
    p.pub("sensors/m1/temperature", "[{\"bn\": \"m1/\", \"bt\": " + std::to_string(t0_ms / 1000) +
                                        ", \"bu\": \"Cel\"}, {\"n\": \"temperature\", \"v\": 21.0}, {\"n\": \"temperature\", \"t\": 1, \"v\": 21.5}]");
    good += 2;
    REQUIRE(eventually([&] { return count_of(s.br.port(), "m1", "temperature") == good; }));
    const std::uint16_t port = s.br.port();
    CHECK(metric_value(port, "telemetry_ingest_rejects_total{reason=\"bad_json\"}") == 1);
    CHECK(metric_value(port, "telemetry_ingest_rejects_total{reason=\"missing_value\"}") == 1);
    CHECK(metric_value(port, "telemetry_ingest_rejects_total{reason=\"not_finite\"}") == 1);
    CHECK(metric_value(port, "telemetry_ingest_rejects_total{reason=\"oversize\"}") == 1);
    CHECK(metric_value(port, "telemetry_ingest_rejects_total{reason=\"bad_timestamp\"}") == 1);
    CHECK(metric_value(port, "telemetry_ingest_rejects_total{reason=\"bad_seq\"}") == 1);
    CHECK(metric_value(port, "telemetry_ingest_rejects_total{reason=\"bad_topic\"}") == 1);
    CHECK(metric_value(port, "telemetry_ingest_rejects_total{reason=\"bad_status\"}") == 1);
    // Logged once per sensor and reason, with the reason.
    const std::string log = read_file(s.dir / "bridge" / "bridge.err");
    CHECK(log.find("bad_json") != std::string::npos);
    const std::int64_t bt = t0_ms / 1000 * 1000;
    const auto senml = get_json(port, "/api/v1/sensors/m1/temperature/readings?from=" + std::to_string(bt) +
                                          "&to=" + std::to_string(bt + 2000));
    REQUIRE(senml.at("readings").as_array().size() == 2);
    CHECK(senml.at("readings").at(1).at("ts").as_int64() == bt + 1000);
    CHECK(senml.at("readings").at(1).at("unit").as_string() == "Cel");
}

TEST_CASE("integration - bad HTTP input gets JSON errors and the server keeps serving") {
    system_under_test s;
    const std::uint16_t port = s.br.port();
    publisher p(s.mosq.url(), "t-http");
    p.pub("sensors/h1/temperature", "21");
    REQUIRE(eventually([&] { return count_of(port, "h1", "temperature") == 1; }));
    const auto expect_error = [&](const http_response& r, int status, const std::string& code) {
        CHECK_MESSAGE(r.status == status, r.status << " " << r.body);
        if (r.status == status && status != 405) {
            const auto e = json::parse(r.body).at("error").as_object();
            CHECK(e.at("code").as_string() == code);
            CHECK(!e.at("message").as_string().empty());
        }
    };
    const std::string base = "/api/v1/sensors/h1/temperature/";
    expect_error(http_get(port, base + "readings?limit=0"), 400, "bad_parameter");
    expect_error(http_get(port, base + "readings?from=tomorrow"), 400, "bad_parameter");
    expect_error(http_get(port, base + "readings?order=sideways"), 400, "bad_parameter");
    expect_error(http_get(port, base + "readings?cursor=forged"), 400, "bad_parameter");
    expect_error(http_get(port, base + "readings?colour=blue"), 400, "bad_parameter");
    expect_error(http_get(port, base + "aggregate?bucket=5parsecs"), 400, "bad_parameter");
    expect_error(http_get(port, base + "aggregate?from=0&to=100000000&bucket=1ms"), 400, "bad_parameter");
    expect_error(http_get(port, "/api/v1/nothing"), 404, "not_found");
    expect_error(http_get(port, "/api/v1/sensors", {}, "POST"), 405, "method_not_allowed");
    CHECK(http_get(port, "/api/v1/sensors", {}, "DELETE").header("allow") == "GET, HEAD, OPTIONS");
    expect_error(http_get(port, base + "readings?x=" + std::string(6000, 'a')), 414, "uri_too_long");
    expect_error(http_get(port, "/api/v1/sensors", {{"X-Big", std::string(9000, 'b')}}), 431, "headers_too_large");
    expect_error(http_get(port, "/api/v1/sensors", {{"X-Huge", std::string(40000, 'b')}}), 431, "headers_too_large");
    expect_error(http_raw(port, "POST /api/v1/sensors HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" +
                                    std::string(100000, 'z')),
                 413, "payload_too_large");
    expect_error(http_raw(port, "GARBAGE\r\n\r\n"), 400, "bad_request");
    expect_error(http_get(port, base + "readings?from=%zz"), 400, "bad_request");
    // A client that connects and says nothing, or half a request, does not disturb others.
    std::thread half([&] { http_raw(port, "GET /api/v1/sen", 2s); });
    CHECK(http_get(port, base + "latest").status == 200);
    half.join();
    CHECK(http_get(port, "/healthz").status == 200);
    // CSV history.
    const auto csv = http_get(port, base + "readings?format=csv");
    CHECK(csv.status == 200);
    CHECK(csv.header("content-type").find("text/csv") == 0);
    CHECK(csv.body.rfind("id,sensor,metric,ts,value,unit,seq\r\n", 0) == 0);
    const auto csv2 = http_get(port, base + "readings", {{"Accept", "text/csv"}});
    CHECK(csv2.body == csv.body);
    // gzip for large bodies when accepted.
    for (int i = 0; i < 50; ++i) p.pub("sensors/h1/temperature", std::to_string(21 + i));
    REQUIRE(eventually([&] { return count_of(port, "h1", "temperature") == 51; }));
    const auto gz = http_get(port, base + "readings", {{"Accept-Encoding", "gzip"}});
    CHECK(gz.header("content-encoding") == "gzip");
    CHECK(gz.body.size() > 2);
    CHECK(static_cast<unsigned char>(gz.body[0]) == 0x1f);
    const auto plain = http_get(port, base + "readings");
    CHECK(!plain.has("content-encoding"));
    CHECK(gz.header("etag") != plain.header("etag"));
    CHECK(http_get(port, base + "readings", {{"Accept-Encoding", "gzip"}, {"If-None-Match", gz.header("etag")}}).status == 304);
}

TEST_CASE("integration - readiness follows the broker and SIGTERM exits cleanly") {
    temp_dir dir;
    const std::uint16_t dead = free_port();
    bridge br(dir / "bridge", "tcp://127.0.0.1:" + std::to_string(dead));
    CHECK(http_get(br.port(), "/healthz").status == 200);
    const auto r = http_get(br.port(), "/readyz");
    CHECK(r.status == 503);
    CHECK(r.has("retry-after"));
    CHECK(br.stop() == 0);
}

TEST_CASE("integration - an address in use: the bridge names it and the setting to change, and exits 1") {
    temp_dir dir;
    occupied_port taken;
    const std::string at = "127.0.0.1:" + std::to_string(taken.port());
    const auto r = run(dir.path(), {bridge_binary().string(), "--mqtt", "tcp://127.0.0.1:1", "--http", at,
                                    "--db", (dir / "bridge.db").string()});
    CHECK(r.exit_code == 1);
    CHECK(r.out.find("serving") == std::string::npos);
    CHECK_MESSAGE(r.err.find("cannot start: cannot listen on " + at + ": Address already in use; stop what uses "
                             "it, or set another address: [http] listen in the configuration, or --http "
                             "HOST:PORT") != std::string::npos,
                  r.err);
    const auto bad_host = run(dir.path(), {bridge_binary().string(), "--http", "localhost:0", "--db",
                                           (dir / "bridge.db").string()});
    CHECK(bad_host.exit_code == 2);
    CHECK_MESSAGE(bad_host.err.find("http.listen host 'localhost' is not an IP address") != std::string::npos,
                  bad_host.err);
}

TEST_CASE("integration - a volume too small for the journal: a clear error, then a smaller reservation runs") {
    small_fs fs(16 << 20);
    SKIP_UNLESS_MOUNTED(fs);
    temp_dir dir;
    broker mosq(dir / "mosquitto");
    const auto db = fs / "bridge" / "bridge.db";  // where the bridge helper below keeps it
    const auto refused = run(dir.path(), {bridge_binary().string(), "--mqtt", mosq.url(), "--http", "127.0.0.1:0",
                                          "--db", db.string()});
    CHECK(refused.exit_code == 1);
    CHECK(refused.out.find("serving") == std::string::npos);
    const auto& e = refused.err;
    CHECK_MESSAGE(e.find("cannot reserve 64 MiB for " + db.string() + ".ingest-journal") != std::string::npos, e);
    CHECK_MESSAGE(e.find(" MiB free on its file system") != std::string::npos, e);
    CHECK_MESSAGE(e.find("lower [ingest] journal_reserve_mb") != std::string::npos, e);

    const auto conf = dir / "small.toml";
    std::ofstream(conf) << "[ingest]\njournal_reserve_mb = 4\n";
    bridge br(fs / "bridge", mosq.url(), {"--config", conf.string()});
    REQUIRE(br.wait_ready());
    publisher p(mosq.url(), "t-small-volume");
    for (int i = 0; i < 20; ++i) p.pub("sensors/v1/temperature", "{\"value\": 21.5, \"seq\": " + std::to_string(i) + "}");
    CHECK(eventually([&] { return count_of(br.port(), "v1", "temperature") == 20; }));
    // 4 MiB for records, then the ring of the last 8192 delivery identities (storage/journal.hpp).
    CHECK(std::filesystem::file_size(db.string() + ".ingest-journal") == (4u << 20) + 8 * (1 + 8192));
    CHECK(br.stop() == 0);
}
