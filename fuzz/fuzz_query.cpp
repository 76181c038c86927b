// HTTP requests through the router, the parsers of every query string and header it reads:
// the request target (Boost.URL), the parameters of /readings, /aggregate, /updates, /stream and
// /ws (from, to, limit, order, cursor, format, bucket, after, timeout, topic, policy,
// access_token), Accept, Accept-Encoding, If-None-Match, If-Modified-Since, Last-Event-ID, Host,
// Origin and Authorization. A storage query the router asks for runs against a small SQLite
// database, so history cursors and aggregate ranges reach storage too. Properties: never a 500;
// a long poll, stream or WebSocket request has a selector; no exception escapes.
//
// Input: byte 0 picks the method, the HTTP version and the router (authentication off, or on
// with a static token); line 1 is the request target; later lines are "Name: value" headers.
#include "core/auth.hpp"
#include "core/config.hpp"
#include "core/metrics.hpp"
#include "database.hpp"
#include "fuzz_common.hpp"
#include "http/router.hpp"
#include "live/hub.hpp"

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

using namespace telemetry;
using namespace telemetry::bridge;
namespace bhttp = boost::beast::http;

namespace {

constexpr std::int64_t base_ts = 1'732'269'600'000;  // 2024-11-22T10:00:00Z

config make_config(bool locked) {
    config c;
    if (locked) {
        c.auth.tokens.push_back({"static-token-0123456789", {"sensors/kitchen/#"}, "fuzz"});
        c.auth.jwt_hs256_keys = {"fuzz-key-0123456789abcdef0123456789abcdef"};
        c.auth.metrics_token = "metrics-token-0123456789";
        c.http.allowed_origins = {"https://dash.example"};
    }
    return c;
}

// Readings of three series, spread over minutes (so /aggregate uses rollups and raw edges) and
// at the very ends of the accepted time range.
std::vector<reading> sample_readings() {
    std::vector<reading> out;
    for (int i = 0; i < 300; ++i) {
        reading r;
        r.sensor = "kitchen";
        r.metric = "temperature";
        r.ts = base_ts + i * 1000LL;
        r.value = 20.0 + (i % 17) * 0.25;
        r.unit = "Cel";
        r.seq = i;
        out.push_back(r);
    }
    for (int i = 0; i < 40; ++i) {
        reading r;
        r.sensor = "hall";
        r.metric = "humidity";
        r.ts = base_ts + i * 45'000LL;
        r.value = 40.5 - i;
        out.push_back(r);
    }
    for (std::int64_t ts : {std::int64_t{0}, std::int64_t{1}, std::int64_t{253'402'300'799'999}}) {
        reading r;
        r.sensor = "edge";
        r.metric = "temperature";
        r.ts = ts;
        r.value = -1e300;
        out.push_back(r);
    }
    return out;
}

std::filesystem::path make_dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fuzz-query-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) std::abort();
    return tmpl;
}

struct world {
    std::filesystem::path dir = make_dir();
    std::vector<reading> stored = [this] {
        storage::writer w(dir / "fuzz.db");
        return w.insert(sample_readings());
    }();
    config open_cfg = make_config(false);
    config locked_cfg = make_config(true);
    metrics stats;
    hub live{"sensors", 1000};
    authenticator open_auth{open_cfg.auth};
    authenticator locked_auth{locked_cfg.auth};
    http::router open{live, stats, open_cfg, open_auth, [] { return true; }, [] { return true; }};
    http::router locked{live, stats, locked_cfg, locked_auth, [] { return true; }, [] { return true; }};
    storage::reader reader{dir / "fuzz.db"};

    world() { live.publish(stored, {{"kitchen", true}}); }
    ~world() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
    static world& instance() {
        static world w;
        return w;
    }
};

// What Beast's parser lets through: a target of visible characters, header names that are
// tokens, values without control characters but tab.
bool valid_target(std::string_view t) {
    if (t.empty()) return false;
    for (const char c : t) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u == 0x7f) return false;
    }
    return true;
}

bool valid_value(std::string_view v) {
    for (const char c : v) {
        const auto u = static_cast<unsigned char>(c);
        if ((u < 0x20 && c != '\t') || u == 0x7f) return false;
    }
    return true;
}

bool valid_field_name(std::string_view n) {
    if (n.empty()) return false;
    for (const char c : n) {
        const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && std::string_view("!#$%&'*+-.^_`|~").find(c) == std::string_view::npos) return false;
    }
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    world::instance();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    world& w = world::instance();
    const std::uint8_t mode = data[0];
    auto lines = fuzz::split_lines(fuzz::as_text(data + 1, size - 1), 32);
    for (auto& l : lines)
        if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    if (!valid_target(lines[0])) return 0;

    http::request req;
    static constexpr bhttp::verb methods[] = {bhttp::verb::get, bhttp::verb::get, bhttp::verb::head,
                                              bhttp::verb::options, bhttp::verb::post, bhttp::verb::get,
                                              bhttp::verb::get, bhttp::verb::get};
    req.method(methods[mode & 7]);
    req.version((mode & 8) ? 10 : 11);
    req.target(lines[0]);
    req.set(bhttp::field::host, "127.0.0.1:8080");
    for (std::size_t i = 1; i < lines.size(); ++i) {
        const auto colon = lines[i].find(':');
        if (colon == std::string_view::npos) continue;
        const std::string_view name = lines[i].substr(0, colon);
        std::string_view value = lines[i].substr(colon + 1);
        while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
        if (!valid_field_name(name) || !valid_value(value)) continue;
        if (boost::beast::iequals(name, "host")) req.set(bhttp::field::host, value);
        else req.insert(name, value);
    }
    if (mode & 16) {
        req.set(bhttp::field::upgrade, "websocket");
        req.set(bhttp::field::connection, "Upgrade");
        req.set(bhttp::field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZQ==");
        req.set(bhttp::field::sec_websocket_version, "13");
    }
    req.prepare_payload();

    http::router& r = (mode & 32) ? w.locked : w.open;
    http::action a = r.route(req, (mode & 64) ? "192.0.2.7" : "127.0.0.1");
    if (auto* job = std::get_if<http::storage_job>(&a)) {
        http::answer done = job->run(w.reader);
        FUZZ_CHECK(done.status != 500);
    } else if (auto* ans = std::get_if<http::answer>(&a)) {
        FUZZ_CHECK(ans->status != 500);
        FUZZ_CHECK(ans->msg.has_value() || ans->raw != nullptr);
    } else if (auto* lp = std::get_if<http::long_poll>(&a)) {
        FUZZ_CHECK(lp->selector != nullptr && lp->limit >= 1 && lp->timeout.count() >= 0);
        FUZZ_CHECK(lp->selector->can_select_anything());
    } else if (auto* s = std::get_if<http::stream_request>(&a)) {
        FUZZ_CHECK(s->selector != nullptr && (!s->after || *s->after >= 0));
    } else if (auto* ws = std::get_if<http::websocket_request>(&a)) {
        FUZZ_CHECK(ws->access != nullptr);
    }
    return 0;
}
