// End-to-end tests of HTTP details on the wire: the Date header on every kind of answer, the
// WebSocket upgrade's refusals, 414 versus 431, the aggregate's bucket limit with open and
// extreme ranges, pipelined and split revalidations, and the idle deadline. A real Mosquitto, the
// real broker-bridge binary, raw sockets (docs/api.md sections 3.1, 3.6, 3.9, 5 and 8.3).
#include "http_client.hpp"
#include "mqtt_publisher.hpp"
#include "processes.hpp"

#include <doctest/doctest.h>

#include <boost/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

using namespace telemetry::testing;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

// Recent sensor times: the bridge's retention (30 days by default) would delete older ones.
const std::int64_t t0_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch()).count() - 3'600'000;
std::string ts(std::int64_t offset_ms) { return std::to_string(t0_ms + offset_ms); }

struct system_under_test {
    temp_dir dir;
    broker mosq{dir / "mosquitto"};
    bridge br{dir / "bridge", mosq.url()};
    system_under_test() { REQUIRE(br.wait_ready()); }
};

std::int64_t count_of(std::uint16_t port, const std::string& sensor, const std::string& metric) {
    const auto r = http_get(port, "/api/v1/sensors");
    if (r.status != 200) return -1;
    const json::value doc = json::parse(r.body);
    for (const auto& s : doc.at("series").as_array())
        if (s.at("sensor").as_string() == sensor && s.at("metric").as_string() == metric)
            return s.at("count").as_int64();
    return 0;
}

// One temperature reading of `sensor`, committed before this returns.
void publish_one(system_under_test& s, const std::string& sensor) {
    publisher p(s.mosq.url(), "t-" + sensor);
    p.pub("sensors/" + sensor + "/temperature", "{\"value\": 20.5, \"ts\": " + ts(0) + ", \"seq\": 1}");
    REQUIRE(eventually([&] { return count_of(s.br.port(), sensor, "temperature") == 1; }));
}

// An IMF-fixdate (RFC 9110 5.6.7) of the last few seconds: what a Date header must hold.
bool is_current_http_date(const std::string& v) {
    const std::time_t now = std::time(nullptr);
    for (std::time_t t = now - 5; t <= now + 1; ++t) {
        std::tm tm{};
        gmtime_r(&t, &tm);
        char buf[64];
        std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        if (v == buf) return true;
    }
    return false;
}

bool has_token(std::string list, const std::string& token) {
    std::transform(list.begin(), list.end(), list.begin(), [](unsigned char c) { return std::tolower(c); });
    return list.find(token) != std::string::npos;
}

// The API's JSON error (docs/api.md 3.9) with this status and code.
void expect_error(const http_response& r, int status, const std::string& code, const std::string& what = {}) {
    CHECK_MESSAGE(r.status == status, what << ": " << r.status << " " << r.body);
    CHECK_MESSAGE(r.header("content-type") == "application/json", what << ": " << r.header("content-type"));
    CHECK_MESSAGE(r.header("cache-control") == "no-store", what);
    boost::system::error_code ec;
    const auto doc = json::parse(r.body, ec);
    REQUIRE_MESSAGE(!ec, what << ": not JSON: " << r.body);
    const auto* e = doc.is_object() ? doc.as_object().if_contains("error") : nullptr;
    REQUIRE_MESSAGE((e && e->is_object()), what << ": " << r.body);
    CHECK_MESSAGE(e->as_object().at("code").as_string() == code, what << ": " << r.body);
    CHECK(!e->as_object().at("message").as_string().empty());
}

// A WebSocket opening handshake to /api/v1/ws with these extra fields (each ending in CRLF).
http_response ws_handshake(std::uint16_t port, const std::string& fields,
                           std::chrono::milliseconds timeout = 5s) {
    return http_raw(port, "GET /api/v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
                          "Upgrade: websocket\r\n" + fields + "\r\n", timeout);
}

// Sends the parts of a request with a pause between them (so that the server's reads end where
// a part does), then reads the answer until the server closes.
http_response http_in_parts(std::uint16_t port, const std::vector<std::string>& parts) {
    return http_raw_parts(port, parts, 200ms, 10s);
}

const std::string ws_key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";  // RFC 6455 1.3
const std::string ws_v13 = "Sec-WebSocket-Version: 13\r\n";

}  // namespace

TEST_CASE("http wire - every answer carries a current Date header, 304s and stream headers included") {
    system_under_test s;
    const std::uint16_t port = s.br.port();
    publish_one(s, "d1");
    const auto dated = [&](const http_response& r, int status, const std::string& what) {
        CHECK_MESSAGE(r.status == status, what << ": " << r.status);
        CHECK_MESSAGE(is_current_http_date(r.header("date")), what << ": Date '" << r.header("date") << "'");
    };

    const std::string latest = "/api/v1/sensors/d1/temperature/latest";
    const auto first = http_get(port, latest);
    dated(first, 200, "200 /latest");
    const std::string tag = first.header("etag");
    REQUIRE(tag.size() > 2);
    dated(http_get(port, latest, {}, "HEAD"), 200, "HEAD /latest");
    dated(http_get(port, latest, {{"If-None-Match", tag}}), 304, "304 /latest, Connection: close");
    // The prepared 304 of an HTTP/1.1 keep-alive revalidation, pipelined with a request that
    // closes: what follows the 304's header must be exactly the second answer.
    const std::string revalidate = "GET " + latest + " HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: " + tag + "\r\n\r\n";
    const auto pipelined =
        http_raw(port, revalidate + revalidate + "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    dated(pipelined, 304, "prepared 304");
    CHECK(pipelined.header("etag") == tag);
    CHECK(pipelined.header("cache-control") == "no-cache");
    CHECK(pipelined.header("x-content-type-options") == "nosniff");
    const auto second_end = pipelined.body.find("\r\n\r\n");
    REQUIRE(second_end != std::string::npos);
    CHECK_MESSAGE(pipelined.body.rfind("HTTP/1.1 304 Not Modified\r\n", 0) == 0, pipelined.body);
    CHECK(pipelined.body.find("\r\nDate: ") < second_end);
    CHECK_MESSAGE(pipelined.body.compare(second_end + 4, 17, "HTTP/1.1 200 OK\r\n") == 0, pipelined.body);

    // Stored queries: the 200, and the 304 from the validator cache.
    const std::string hist = "/api/v1/sensors/d1/temperature/readings";
    const auto h = http_get(port, hist);
    dated(h, 200, "200 /readings");
    dated(http_get(port, hist, {{"If-None-Match", h.header("etag")}}), 304, "304 /readings");
    dated(http_get(port, "/api/v1/sensors/d1/temperature/aggregate?bucket=1h"), 200, "200 /aggregate");
    dated(http_get(port, "/api/v1/sensors"), 200, "200 /sensors");
    dated(http_get(port, "/"), 200, "200 /");
    dated(http_get(port, "/healthz"), 200, "200 /healthz");
    dated(http_get(port, "/readyz"), 200, "200 /readyz");
    dated(http_get(port, "/metrics"), 200, "200 /metrics");
    dated(http_get(port, "/api/v1/sensors", {}, "OPTIONS"), 200, "OPTIONS");
    dated(http_get(port, "/api/v1/updates?timeout=0"), 200, "long poll");
    dated(http_get(port, "/api/v1/updates?after=0&timeout=5"), 200, "long poll with a reading");

    // Errors, from the router and from the session (unparsable or oversize requests).
    dated(http_get(port, "/api/v1/nothing"), 404, "404");
    dated(http_get(port, hist + "?limit=0"), 400, "400 bad_parameter");
    dated(http_get(port, "/api/v1/sensors", {}, "DELETE"), 405, "405");
    dated(http_get(port, "/api/v1/sensors", {{"X-Big", std::string(9000, 'b')}}), 431, "431");
    dated(http_get(port, "/api/v1/sensors?x=" + std::string(6000, 'a')), 414, "414");
    dated(http_raw(port, "GARBAGE\r\n\r\n"), 400, "400 unparsable");
    dated(http_get(port, "/api/v1/ws"), 426, "426");

    // Streams: the SSE header (HEAD and GET) and the WebSocket 101.
    dated(http_get(port, "/api/v1/stream", {}, "HEAD"), 200, "HEAD /stream");
    dated(http_raw(port, "GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 1500ms), 200, "SSE");
    dated(ws_handshake(port, ws_key + ws_v13, 1500ms), 101, "WebSocket 101");
}

TEST_CASE("http wire - /api/v1/ws without an upgrade is 426 with Upgrade and Connection headers") {
    system_under_test s;
    const std::uint16_t port = s.br.port();
    for (const std::string method : {"GET", "HEAD"}) {
        const auto r = http_get(port, "/api/v1/ws", {}, method);
        CHECK(r.status == 426);
        CHECK(r.header("upgrade") == "websocket");
        CHECK_MESSAGE(has_token(r.header("connection"), "upgrade"), r.header("connection"));
        if (method == "GET") expect_error(r, 426, "upgrade_required", "GET without Upgrade");
    }
    // An Upgrade to something else, or HTTP/1.0, is no WebSocket upgrade either.
    const auto other = http_get(port, "/api/v1/ws", {{"Connection", "Upgrade"}, {"Upgrade", "h2c"}});
    expect_error(other, 426, "upgrade_required", "Upgrade: h2c");
    CHECK(other.header("upgrade") == "websocket");
    // Parameters are checked first, as before.
    expect_error(http_get(port, "/api/v1/ws?topic=x"), 400, "bad_parameter", "unknown parameter");
    CHECK(http_get(port, "/healthz").status == 200);
}

TEST_CASE("http wire - WebSocket handshake errors are the API's JSON 400s, checked before the upgrade") {
    system_under_test s;
    const std::uint16_t port = s.br.port();
    expect_error(ws_handshake(port, ws_v13), 400, "bad_request", "no Sec-WebSocket-Key");
    expect_error(ws_handshake(port, "Sec-WebSocket-Key: short\r\n" + ws_v13), 400, "bad_request", "short key");
    expect_error(ws_handshake(port, "Sec-WebSocket-Key: " + std::string(40, 'A') + "\r\n" + ws_v13), 400,
                 "bad_request", "long key");
    expect_error(ws_handshake(port, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ?=\r\n" + ws_v13), 400,
                 "bad_request", "key not base64");
    expect_error(ws_handshake(port, ws_key + ws_key + ws_v13), 400, "bad_request", "two keys");
    // RFC 6455 4.4: a version the server does not speak is answered with the versions it does.
    for (const std::string version : {"", "Sec-WebSocket-Version: 8\r\n", "Sec-WebSocket-Version: 13, 8\r\n",
                                      "Sec-WebSocket-Version: abc\r\n"}) {
        const auto r = ws_handshake(port, ws_key + version);
        expect_error(r, 400, "bad_request", "version '" + version + "'");
        CHECK_MESSAGE(r.header("sec-websocket-version") == "13", version);
    }
    // The connection is closed after a refused handshake (the client expected to switch protocols).
    CHECK(has_token(ws_handshake(port, ws_v13).header("connection"), "close"));
    // A good handshake still switches (RFC 6455 1.3's example key and accept value).
    const auto ok = ws_handshake(port, ws_key + ws_v13, 1500ms);
    CHECK(ok.status == 101);
    CHECK(ok.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    CHECK(http_get(port, "/healthz").status == 200);
}

TEST_CASE("http wire - a request target over the limit is 414 at any length, headers over theirs are 431") {
    system_under_test s;
    const std::uint16_t port = s.br.port();
    // http.max_target_bytes 4096 and http.max_header_bytes 8192 (defaults).
    for (const std::size_t n : {5'000u, 12'000u, 12'300u, 20'000u, 60'000u})
        expect_error(http_get(port, "/api/v1/sensors?x=" + std::string(n, 'a')), 414, "uri_too_long",
                     "target of " + std::to_string(n));
    expect_error(http_get(port, "/" + std::string(20'000, 'a')), 414, "uri_too_long", "path of 20000");
    // Headers alone over their limit, below and above what the parser holds at once.
    for (const std::size_t n : {9'000u, 13'000u, 40'000u})
        expect_error(http_get(port, "/api/v1/sensors", {{"X-Big", std::string(n, 'b')}}), 431, "headers_too_large",
                     "header of " + std::to_string(n));
    // A long (but allowed) target with large headers: the headers are what is too large.
    expect_error(http_get(port, "/api/v1/sensors?x=" + std::string(4'000, 'a'), {{"X-Big", std::string(13'000, 'b')}}),
                 431, "headers_too_large", "allowed target, big headers");
    // The same when the request arrives in pieces: the parser then waits for the whole header
    // before it reads the request line, so the session finds the target in what is buffered.
    const std::string line = "GET /api/v1/sensors?x=";
    const std::string host = " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
    const auto code_of = [](const http_response& r) {
        return r.status ? std::string(json::parse(r.body).at("error").at("code").as_string()) : std::string("none");
    };
    const auto long_target = http_in_parts(port, {line + std::string(6'000, 'a'), std::string(9'000, 'a') + host + "\r\n"});
    CHECK(long_target.status == 414);
    CHECK(code_of(long_target) == "uri_too_long");
    const auto long_line = http_in_parts(port, {line + std::string(6'000, 'a'), std::string(9'000, 'a')});
    CHECK(long_line.status == 414);
    const auto big_fields = http_in_parts(port, {line + std::string(4'000, 'a') + host + "X-Big: ",
                                                 std::string(13'000, 'b') + "\r\n\r\n"});
    CHECK(big_fields.status == 431);
    CHECK(code_of(big_fields) == "headers_too_large");
    const auto both = http_in_parts(port, {line + std::string(6'000, 'a') + host + "X-Big: ",
                                           std::string(13'000, 'b') + "\r\n\r\n"});
    CHECK(both.status == 414);
    // Both too large: the target is named first.
    expect_error(http_get(port, "/api/v1/sensors?x=" + std::string(6'000, 'a'), {{"X-Big", std::string(13'000, 'b')}}),
                 414, "uri_too_long", "both");
    CHECK(http_get(port, "/healthz").status == 200);
}

TEST_CASE("http wire - aggregate: the bucket limit holds with open bounds, and extreme bounds are a clear 400") {
    system_under_test s;
    const std::uint16_t port = s.br.port();
    publisher p(s.mosq.url(), "t-agg");
    p.pub("sensors/a1/temperature", "{\"value\": 20, \"ts\": " + ts(0) + ", \"seq\": 1}");
    p.pub("sensors/a1/temperature", "{\"value\": 22, \"ts\": " + ts(200'000) + ", \"seq\": 2}");
    REQUIRE(eventually([&] { return count_of(port, "a1", "temperature") == 2; }));
    const std::string base = "/api/v1/sensors/a1/temperature/aggregate?";
    // 200 s of data in 1 ms buckets: more than 100,000 buckets, with or without bounds.
    for (const std::string& q : std::vector<std::string>{"bucket=1ms", "bucket=1ms&from=" + ts(-1000), "bucket=1ms&to=" + ts(300'000),
                                "bucket=1ms&from=" + ts(0) + "&to=" + ts(200'001), "bucket=500ms&from=" + ts(-100'000'000)}) {
        const auto r = http_get(port, base + q);
        expect_error(r, 400, "bad_parameter", q);
        CHECK_MESSAGE(r.body.find("bucket") != std::string::npos, r.body);
    }
    // Coarser buckets fit.
    for (const std::string& q : std::vector<std::string>{"bucket=1s", "bucket=5ms&from=" + ts(0), "bucket=10ms&to=" + ts(300'000), "from=" + ts(0)}) {
        const auto r = http_get(port, base + q);
        CHECK_MESSAGE(r.status == 200, q << ": " << r.status << " " << r.body);
        if (r.status == 200) CHECK(json::parse(r.body).at("buckets").as_array().size() == 2);
    }
    // Extreme bounds: no overflow, a clear 400.
    for (const std::string q : {"from=-9223372036854775808&to=9223372036854775807",
                                "from=-9223372036854775807&to=9223372036854775807&bucket=1d",
                                "from=-9223372036854775808&to=0&bucket=1d", "from=0&to=9223372036854775807&bucket=1d",
                                "to=9223372036854775807&bucket=1d", "from=-9223372036854775808&bucket=1d",
                                "from=9223372036854775806&to=9223372036854775807&bucket=1ms"}) {
        const auto r = http_get(port, base + q);
        if (q.ends_with("bucket=1ms")) {
            // One millisecond at the very end of the range: legal, and empty.
            CHECK_MESSAGE(r.status == 200, q << ": " << r.status << " " << r.body);
            continue;
        }
        expect_error(r, 400, "bad_parameter", q);
        CHECK_MESSAGE(r.body.find("bucket") != std::string::npos, r.body);
    }
    expect_error(http_get(port, base + "from=" + ts(10) + "&to=" + ts(10)), 400, "bad_parameter", "empty range");
    CHECK(http_get(port, "/healthz").status == 200);
}

namespace {

int connect_local(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    timeval tv{10, 0};  // no read waits forever
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    return fd;
}

// Reads one bodiless answer (a 304) from `fd`: its header; empty when the server closed.
std::string read_header(int fd) {
    std::string got;
    char c;
    while (got.size() < 4 || got.compare(got.size() - 4, 4, "\r\n\r\n") != 0) {
        if (::recv(fd, &c, 1, 0) != 1) return {};
        got += c;
    }
    return got;
}

std::size_t count_of_text(const std::string& s, const std::string& what) {
    std::size_t n = 0;
    for (auto at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
    return n;
}

}  // namespace

TEST_CASE("http wire - pipelined revalidations are answered in order, whole or split across reads") {
    system_under_test s;
    const std::uint16_t port = s.br.port();
    publish_one(s, "p1");
    const std::string latest = "/api/v1/sensors/p1/temperature/latest";
    const auto first = http_get(port, latest);
    REQUIRE(first.status == 200);
    const std::string tag = first.header("etag");
    REQUIRE(tag.size() > 2);

    // 200 revalidations in one write, then one with another tag (a 200 with the body), one more
    // revalidation and a request that closes: 203 answers, in the order asked.
    const std::string revalidate = "GET " + latest + " HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: " + tag + "\r\n\r\n";
    std::string many;
    for (int i = 0; i < 200; ++i) many += revalidate;
    many += "GET " + latest + " HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: \"other\"\r\n\r\n";
    many += revalidate + "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    const auto r = http_raw(port, many);
    REQUIRE(r.status == 304);
    const std::string all = r.body;  // everything after the first status line's header
    CHECK_MESSAGE(count_of_text(all, "HTTP/1.1 304 Not Modified\r\n") == 200, all.substr(0, 400));  // + the first
    const auto ok = all.find("HTTP/1.1 200 OK\r\n");
    REQUIRE(ok != std::string::npos);
    CHECK(count_of_text(all.substr(0, ok), "HTTP/1.1 304 Not Modified\r\n") == 199);
    CHECK(all.find(first.body, ok) != std::string::npos);  // the 200 carries the representation
    const auto last_304 = all.find("HTTP/1.1 304 Not Modified\r\n", ok);
    const auto health = all.find("HTTP/1.1 200 OK\r\n", ok + 1);
    CHECK((last_304 != std::string::npos && health != std::string::npos && last_304 < health));
    CHECK(all.find("{\"status\":\"ok\"}", health) != std::string::npos);

    // A revalidation split inside the path and inside a field, and two in one part with the
    // second cut short: each is answered once it is whole.
    const auto split = http_raw_parts(
        port,
        {"GET /api/v1/sens", "ors/p1/temperature/latest HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Ma",
         "tch: " + tag + "\r\n\r\n" + revalidate.substr(0, 30), revalidate.substr(30),
         "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"},
        200ms, 10s);
    CHECK(split.status == 304);
    CHECK(count_of_text(split.body, "HTTP/1.1 304 Not Modified\r\n") == 1);
    CHECK(split.body.find("{\"status\":\"ok\"}") != std::string::npos);

    // Plain paths are routed without Boost.URL's parse; escaped ones with it: the same answers.
    CHECK(http_get(port, "/api/v1/sensors/p1/temperatur%65/latest", {{"If-None-Match", tag}}).status == 304);
    CHECK(http_get(port, latest + "/", {{"If-None-Match", tag}}).status == 304);
    expect_error(http_get(port, "/api/v1//sensors/p1/temperature/latest"), 404, "not_found", "empty segment");
    expect_error(http_get(port, latest + "?x=1"), 400, "bad_parameter", "a parameter on /latest");
    expect_error(http_get(port, "/api/v1/sensors/p1/temperature/latest/a/b/c/d/e"), 404, "not_found", "long path");
    expect_error(http_get(port, "/api/v1/sensors/p%201/temperature/latest"), 404, "not_found", "escaped space");
    expect_error(http_raw(port, "GET /api/v1/sensors/p1/temperature/latest<> HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                "Connection: close\r\n\r\n"),
                 400, "bad_request", "an invalid target");
}

TEST_CASE("http wire - the idle deadline moves with every request and closes a connection left idle") {
    temp_dir dir;
    broker mosq{dir / "mosquitto"};
    std::filesystem::create_directories(dir / "bridge");
    {
        std::ofstream(dir / "bridge.toml") << "[http]\nidle_timeout_s = 2\n";
    }
    bridge br{dir / "bridge", mosq.url(), {"--config", (dir / "bridge.toml").string()}};
    REQUIRE(br.wait_ready());
    const std::string req = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    const int fd = connect_local(br.port());
    // Six requests 0.5 s apart (3 s in all, more than the 2 s deadline): each is answered.
    for (int i = 0; i < 6; ++i) {
        REQUIRE(::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size()));
        const std::string h = read_header(fd);
        REQUIRE_MESSAGE(h.rfind("HTTP/1.1 200 OK\r\n", 0) == 0, "request " << i << ": " << h);
        char body[15];
        REQUIRE(::recv(fd, body, sizeof body, MSG_WAITALL) == 15);  // {"status":"ok"}
        std::this_thread::sleep_for(500ms);
    }
    // Then idle: the bridge closes it (the read sees the end, well before its 10 s timeout).
    const auto t0 = std::chrono::steady_clock::now();
    char c;
    CHECK(::recv(fd, &c, 1, 0) == 0);
    CHECK(std::chrono::steady_clock::now() - t0 < 9s);
    ::close(fd);
}
