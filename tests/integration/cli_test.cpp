// End-to-end tests of bridge-cli: the real binary against a real bridge and a real Mosquitto,
// with readings published over MQTT, checked the way a user or a script would check them
// (docs/api.md section 11, README's bridge-cli section).
#include "http_client.hpp"
#include "mqtt_publisher.hpp"
#include "processes.hpp"

#include <doctest/doctest.h>

#include <boost/json.hpp>

#include <csignal>
#include <sstream>

using namespace telemetry::testing;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) {
        if (!l.empty() && l.back() == '\r') l.pop_back();
        out.push_back(l);
    }
    return out;
}

std::int64_t newest_id(std::uint16_t port) {
    const auto r = http_get(port, "/api/v1/updates?timeout=0");
    return r.status == 200 ? cursor_id(json::parse(r.body).at("cursor").as_string()) : -1;
}

// A broker, a bridge, and bridge-cli pointed at it.
struct system_under_test {
    temp_dir dir;
    broker mosq{dir / "mosquitto"};
    bridge br{dir / "bridge", mosq.url()};
    system_under_test() { REQUIRE(br.wait_ready()); }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(br.port()); }
    run_result cli(std::vector<std::string> args) {
        args.insert(args.begin(), {cli_binary().string(), "--url", url()});
        return run(dir.path(), std::move(args));
    }
    std::vector<std::string> cli_argv(std::vector<std::string> args) const {
        args.insert(args.begin(), {cli_binary().string(), "--url", url()});
        return args;
    }
};

// Epoch ms at the start of a minute, an hour ago: history tests use their own sensor times.
std::int64_t base_ts() {
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch()).count();
    return (now - 3'600'000) / 60'000 * 60'000;
}

std::string reading(double value, std::int64_t ts, int seq) {
    std::ostringstream s;
    s << "{\"value\": " << value << ", \"ts\": " << ts << ", \"seq\": " << seq << ", \"unit\": \"Cel\"}";
    return s.str();
}

}  // namespace

TEST_CASE("cli - sensors lists every series as a table, JSON and CSV") {
    system_under_test s;
    publisher p(s.mosq.url(), "t-cli-sensors");
    p.pub("sensors/kitchen/status", "online");
    for (int i = 0; i < 3; ++i) p.pub("sensors/kitchen/temperature", "{\"value\": 21.5, \"unit\": \"Cel\"}");
    p.pub("sensors/garage/humidity", "40");
    REQUIRE(eventually([&] { return newest_id(s.br.port()) == 4; }));

    const auto table = s.cli({"sensors"});
    CHECK(table.exit_code == 0);
    CHECK(table.err.empty());
    const auto rows = lines_of(table.out);
    REQUIRE(rows.size() == 3);
    CHECK(rows[0].rfind("SERIES", 0) == 0);
    CHECK(rows[1].rfind("garage/humidity", 0) == 0);
    CHECK(rows[2].rfind("kitchen/temperature", 0) == 0);
    std::istringstream kitchen(rows[2]);
    std::vector<std::string> cells;
    for (std::string c; kitchen >> c;) cells.push_back(c);
    REQUIRE(cells.size() == 7);  // series, unit, status, count, interval, latest, age
    CHECK(cells[1] == "Cel");
    CHECK(cells[2] == "online");
    CHECK(cells[3] == "3");
    CHECK(cells[5] == "21.5");

    const auto js = s.cli({"sensors", "--format", "json"});
    CHECK(js.exit_code == 0);
    const auto series = json::parse(js.out).as_array();
    REQUIRE(series.size() == 2);
    CHECK(series[1].at("sensor") == "kitchen");
    CHECK(series[1].at("count") == 3);
    CHECK(series[1].at("online") == true);
    CHECK(series[1].at("latest").at("value").to_number<double>() == 21.5);

    const auto csv = lines_of(s.cli({"sensors", "--format", "csv"}).out);
    REQUIRE(csv.size() == 3);
    CHECK(csv[0] == "sensor,metric,unit,online,count,interval_ms,latest_id,latest_ts,latest_value");
    CHECK(csv[2].rfind("kitchen,temperature,Cel,true,3,", 0) == 0);
}

TEST_CASE("cli - history follows pages: JSON, JSON lines, CSV with one header, limits, order and range") {
    system_under_test s;
    publisher p(s.mosq.url(), "t-cli-history");
    const auto t0 = base_ts();
    constexpr int n = 25;
    for (int i = 0; i < n; ++i) p.pub("sensors/kitchen/temperature", reading(i + 0.5, t0 + i * 1000, i));
    p.pub("sensors/kitchen/humidity", "50");  // another series: never in the output
    REQUIRE(eventually([&] { return newest_id(s.br.port()) == n + 1; }));

    const auto js = s.cli({"history", "kitchen", "temperature", "--format", "json", "--page-size", "10"});
    CHECK(js.exit_code == 0);
    const auto all = json::parse(js.out).as_array();
    REQUIRE(all.size() == n);
    for (int i = 0; i < n; ++i) {
        CHECK(all[i].at("id") == i + 1);
        CHECK(all[i].at("ts") == t0 + i * 1000);
        CHECK(all[i].at("value").to_number<double>() == i + 0.5);
        CHECK(all[i].at("seq") == i);
    }

    const auto csv = s.cli({"history", "kitchen", "temperature", "--format", "csv", "--page-size", "10"});
    CHECK(csv.exit_code == 0);
    const auto rows = lines_of(csv.out);
    REQUIRE(rows.size() == n + 1);  // three pages, one header row
    CHECK(rows[0] == "id,sensor,metric,ts,value,unit,seq");
    for (int i = 0; i < n; ++i)
        CHECK(rows[i + 1] == std::to_string(i + 1) + ",kitchen,temperature," + std::to_string(t0 + i * 1000) +
                                 "," + std::to_string(i) + ".5,Cel," + std::to_string(i));

    // --limit across pages, as JSON lines.
    const auto limited = lines_of(
        s.cli({"history", "kitchen", "temperature", "--format", "jsonl", "--page-size", "5", "--limit", "12"}).out);
    REQUIRE(limited.size() == 12);
    CHECK(json::parse(limited.back()).at("id") == 12);
    const auto limited_csv = lines_of(
        s.cli({"history", "kitchen", "temperature", "--format", "csv", "--page-size", "5", "--limit", "7"}).out);
    CHECK(limited_csv.size() == 8);

    // Newest first; and a range [from, to) in epoch milliseconds.
    const auto desc = json::parse(
        s.cli({"history", "kitchen", "temperature", "--order", "desc", "--limit", "3", "--format", "json"}).out);
    REQUIRE(desc.as_array().size() == 3);
    CHECK(desc.at(0).at("seq") == 24);
    CHECK(desc.at(2).at("seq") == 22);
    const auto range = json::parse(s.cli({"history", "kitchen", "temperature", "--from", std::to_string(t0 + 5000),
                                          "--to", std::to_string(t0 + 10'000), "--format", "json"})
                                       .out)
                           .as_array();
    REQUIRE(range.size() == 5);
    CHECK(range.front().at("seq") == 5);
    CHECK(range.back().at("seq") == 9);

    // The table: a header, then one row per reading with its time in UTC.
    const auto table = s.cli({"history", "kitchen", "temperature", "--page-size", "10"});
    CHECK(table.exit_code == 0);
    const auto trows = lines_of(table.out);
    REQUIRE(trows.size() == n + 1);
    CHECK(trows[0].find("TIME") != std::string::npos);
    CHECK(trows[1].find("0.5") != std::string::npos);
    CHECK(trows[1].find("Cel") != std::string::npos);
    CHECK(trows[1].find('Z') != std::string::npos);
}

TEST_CASE("cli - aggregate prints one row per bucket") {
    system_under_test s;
    publisher p(s.mosq.url(), "t-cli-aggregate");
    const auto t0 = base_ts();
    int seq = 0;
    for (double v : {1.0, 2.0, 3.0}) p.pub("sensors/attic/temperature", reading(v, t0 + 1000 * seq, seq)), ++seq;
    for (double v : {10.0, 20.0}) p.pub("sensors/attic/temperature", reading(v, t0 + 60'000 + 1000 * seq, seq)), ++seq;
    REQUIRE(eventually([&] { return newest_id(s.br.port()) == 5; }));
    const std::vector<std::string> range{"--bucket", "1m", "--from", std::to_string(t0), "--to",
                                         std::to_string(t0 + 120'000)};

    auto args = std::vector<std::string>{"aggregate", "attic", "temperature", "--format", "json"};
    args.insert(args.end(), range.begin(), range.end());
    const auto js = s.cli(args);
    CHECK(js.exit_code == 0);
    const auto buckets = json::parse(js.out).as_array();
    REQUIRE(buckets.size() == 2);
    CHECK(buckets[0].at("t") == t0);
    CHECK(buckets[0].at("count") == 3);
    CHECK(buckets[0].at("min").to_number<double>() == 1);
    CHECK(buckets[0].at("max").to_number<double>() == 3);
    CHECK(buckets[0].at("avg").to_number<double>() == 2);
    CHECK(buckets[1].at("t") == t0 + 60'000);
    CHECK(buckets[1].at("avg").to_number<double>() == 15);

    args = {"aggregate", "attic", "temperature", "--format", "csv"};
    args.insert(args.end(), range.begin(), range.end());
    const auto csv = lines_of(s.cli(args).out);
    REQUIRE(csv.size() == 3);
    CHECK(csv[0] == "t,count,min,max,avg");
    CHECK(csv[1] == std::to_string(t0) + ",3,1,3,2");
    CHECK(csv[2] == std::to_string(t0 + 60'000) + ",2,10,20,15");

    args = {"aggregate", "attic", "temperature"};
    args.insert(args.end(), range.begin(), range.end());
    const auto table = lines_of(s.cli(args).out);
    REQUIRE(table.size() == 3);
    CHECK(table[0].find("AVG") != std::string::npos);
    CHECK(table[2].find("15") != std::string::npos);
}

TEST_CASE("cli - watch prints live readings in id order, one line each, and exits after --count") {
    system_under_test s;
    publisher p(s.mosq.url(), "t-cli-watch");
    p.pub("sensors/old/temperature", "1");  // before the watch: not printed
    REQUIRE(eventually([&] { return newest_id(s.br.port()) == 1; }));

    // Replay after an id, then live; the filter keeps humidity out.
    child w(s.cli_argv({"watch", "sensors/+/temperature", "--after", "1", "--count", "4"}), s.dir / "w.out",
            s.dir / "w.err");
    p.pub("sensors/a/temperature", "{\"value\": 20.25, \"unit\": \"Cel\"}");
    p.pub("sensors/a/humidity", "40");
    p.pub("sensors/b/temperature", "21");
    for (int i = 0; i < 2; ++i) p.pub("sensors/a/temperature", std::to_string(22 + i));
    REQUIRE(w.wait(30s) == std::optional<int>(0));
    const auto lines = lines_of(w.out());
    REQUIRE(lines.size() == 4);
    CHECK(lines[0].find(" a/temperature 20.25 Cel") != std::string::npos);
    CHECK(lines[0].find('T') == 10);  // starts with an RFC 3339 time
    CHECK(lines[1].find(" b/temperature 21") != std::string::npos);
    CHECK(lines[2].find(" a/temperature 22") != std::string::npos);
    CHECK(lines[3].find(" a/temperature 23") != std::string::npos);

    // The gauge of open SSE streams says when a watch's stream is open: first, the one that
    // ended must be gone from it (its connection closes on the bridge's side a moment later).
    const auto sse_streams = [&](int n) {
        return eventually([&] {
            return http_get(s.br.port(), "/metrics").body.find("telemetry_stream_connections{transport=\"sse\"} " +
                                                                std::to_string(n) + "\n") != std::string::npos;
        });
    };
    REQUIRE(sse_streams(0));
    // Without --after the watch starts live; --json prints each reading's JSON as sent.
    child live(s.cli_argv({"watch", "--json", "--count", "2"}), s.dir / "live.out", s.dir / "live.err");
    REQUIRE(sse_streams(1));
    p.pub("sensors/c/humidity", "41");
    p.pub("sensors/c/temperature", "24");
    REQUIRE(live.wait(30s) == std::optional<int>(0));
    const auto jl = lines_of(live.out());
    REQUIRE(jl.size() == 2);
    const auto first = json::parse(jl[0]), second = json::parse(jl[1]);
    CHECK(first.at("metric") == "humidity");
    CHECK(second.at("metric") == "temperature");
    CHECK(second.at("id").as_int64() == first.at("id").as_int64() + 1);
    CHECK(first.at("id").as_int64() > 6);

    // SIGINT ends a watch with exit code 0.
    REQUIRE(sse_streams(0));
    child stopped(s.cli_argv({"watch"}), s.dir / "stopped.out", s.dir / "stopped.err");
    REQUIRE(sse_streams(1));
    stopped.signal(SIGINT);
    CHECK(stopped.wait(10s) == std::optional<int>(0));
}

TEST_CASE("cli - watch resumes across a bridge restart and prints every reading exactly once in order") {
    system_under_test s;
    publisher p(s.mosq.url(), "t-cli-resume");
    constexpr int before = 5, while_down = 10, after = 5, total = before + while_down + after;
    child w(s.cli_argv({"watch", "--after", "0", "--count", std::to_string(total)}), s.dir / "w.out",
            s.dir / "w.err");
    int seq = 0;
    for (int i = 0; i < before; ++i, ++seq) p.pub("sensors/r/temperature", std::to_string(seq));
    REQUIRE(eventually([&] { return lines_of(w.out()).size() == before; }, 30s));

    CHECK(s.br.stop() == 0);
    // Published while the bridge is down: Mosquitto keeps them for its persistent session.
    for (int i = 0; i < while_down; ++i, ++seq) p.pub("sensors/r/temperature", std::to_string(seq));
    s.br.start(true);
    REQUIRE(s.br.wait_ready());
    for (int i = 0; i < after; ++i, ++seq) p.pub("sensors/r/temperature", std::to_string(seq));

    const auto st = w.wait(90s);
    const auto lines = lines_of(w.out());
    INFO("watch stderr: " << w.err());
    REQUIRE(st == std::optional<int>(0));
    REQUIRE(lines.size() == total);
    for (int i = 0; i < total; ++i) CHECK(lines[i].substr(24) == " r/temperature " + std::to_string(i));
    CHECK(w.err().find("reconnecting") != std::string::npos);
}

TEST_CASE("cli - errors: unknown series and bad parameters exit 3, bad flags 1, no bridge 2") {
    system_under_test s;
    publisher p(s.mosq.url(), "t-cli-errors");
    p.pub("sensors/kitchen/temperature", "20");
    REQUIRE(eventually([&] { return newest_id(s.br.port()) == 1; }));

    const auto unknown = s.cli({"history", "nosuch", "temperature", "--format", "json"});
    CHECK(unknown.exit_code == 3);
    CHECK(unknown.out.empty());
    CHECK(unknown.err == "bridge-cli: 404 not_found: unknown series nosuch/temperature\n");
    CHECK(s.cli({"aggregate", "nosuch", "temperature"}).exit_code == 3);

    const auto bad_from = s.cli({"history", "kitchen", "temperature", "--from", "yesterday"});
    CHECK(bad_from.exit_code == 3);
    CHECK(bad_from.err.find("400 bad_parameter: from must be") != std::string::npos);
    CHECK(s.cli({"aggregate", "kitchen", "temperature", "--bucket", "7x"}).exit_code == 3);
    CHECK(s.cli({"watch", "a/#/b"}).exit_code == 3);

    const auto bad_flag = s.cli({"sensors", "--no-such-flag"});
    CHECK(bad_flag.exit_code == 1);
    CHECK(bad_flag.err.rfind("bridge-cli: ", 0) == 0);
    CHECK(s.cli({"history", "kitchen"}).exit_code == 1);                            // METRIC missing
    CHECK(s.cli({"history", "kitchen", "temperature", "--format", "xml"}).exit_code == 1);
    CHECK(s.cli({"history", "kitchen", "temperature", "--last", "1h", "--from", "0"}).exit_code == 1);
    CHECK(s.cli({"history", "kitchen", "temperature", "--last", "soon"}).exit_code == 1);
    CHECK(run(s.dir.path(), {cli_binary().string()}).exit_code == 1);              // no command
    CHECK(run(s.dir.path(), {cli_binary().string(), "--url", "ftp://x", "sensors"}).exit_code == 1);

    const std::string nobody = "http://127.0.0.1:" + std::to_string(free_port());
    for (const std::string cmd : {"sensors", "watch"}) {
        const auto r = run(s.dir.path(), {cli_binary().string(), "--url", nobody, cmd});
        CHECK(r.exit_code == 2);
        CHECK(r.err.find("bridge-cli: cannot connect to") == 0);
    }
}

TEST_CASE("cli - --help works for every command and exits 0") {
    temp_dir dir;
    for (const std::string cmd : {"", "sensors", "history", "aggregate", "watch"}) {
        std::vector<std::string> argv{cli_binary().string()};
        if (!cmd.empty()) argv.push_back(cmd);
        argv.push_back("--help");
        const auto r = run(dir.path(), argv);
        INFO("command: " << cmd);
        CHECK(r.exit_code == 0);
        CHECK(r.out.find("Usage: bridge-cli") != std::string::npos);
        CHECK(r.out.find("Exit codes:") != std::string::npos);
        if (!cmd.empty()) CHECK(r.out.find("bridge-cli " + cmd) != std::string::npos);
    }
    const auto v = run(dir.path(), {cli_binary().string(), "--version"});
    CHECK(v.exit_code == 0);
    CHECK(v.out.rfind("bridge-cli ", 0) == 0);
}
