// Unit tests of the bridge configuration: TOML -> typed config, errors naming file:line and key.
#include "core/config.hpp"

#include <doctest/doctest.h>

#include "temp_dir.hpp"

#include <cstdlib>
#include <fstream>

using namespace telemetry::bridge;

TEST_CASE("config - defaults when the file is empty") {
    const config c = parse_config("", "empty.toml");
    CHECK(c.mqtt.url == "tcp://127.0.0.1:1883");
    CHECK(c.mqtt.topic_prefix == "sensors");
    CHECK(c.http.port == 8080);
    CHECK(c.storage.retention_days == 30);
    CHECK_FALSE(c.ingest.sync);
}

TEST_CASE("config - ingest.sync is a boolean, off by default") {
    CHECK(parse_config("[ingest]\nsync = true\n", "s.toml").ingest.sync);
    CHECK_FALSE(parse_config("[ingest]\nsync = false\n", "s.toml").ingest.sync);
    CHECK_FALSE(parse_config("[ingest]\njournal_reserve_mb = 8\n", "s.toml").ingest.sync);
    bool threw = false;
    try {
        parse_config("[ingest]\nsync = 1\n", "s.toml");
    } catch (const config_error& e) {
        threw = true;
        CHECK(std::string(e.what()).find("sync") != std::string::npos);
    }
    CHECK(threw);
}

TEST_CASE("config - the shipped conf file parses and sets every section") {
    const config c = load_config(std::string(TELEMETRY_SOURCE_DIR) + "/conf/broker-bridge.toml");
    CHECK(c.mqtt.url == "tcp://127.0.0.1:18830");
    CHECK(c.http.host == "127.0.0.1");
    CHECK(c.http.port == 8080);
    CHECK(c.storage.db_path == "data/telemetry.db");
    CHECK(c.hub.window == 100000);
    CHECK(c.mqtt.session_expiry_s == 604800u);
    CHECK(c.ingest.journal_reserve_mb == 64u);
    CHECK_FALSE(c.ingest.sync);
}

namespace {
// The error a configuration text gets, or "no error".
std::string message(const char* text) {
    try {
        parse_config(text, "bad.toml");
    } catch (const config_error& e) {
        return std::string(e.what());
    }
    return std::string("no error");
}
}  // namespace

TEST_CASE("config - values are typed and ranges checked") {
    const config c = parse_config("[http]\nlisten = \"0.0.0.0:9000\"\nthreads = 4\nallow_public_without_auth = true\n"
                                  "[storage]\nretention_days = 0\n[ingest]\njournal_reserve_mb = 8\n", "x.toml");
    CHECK(c.http.host == "0.0.0.0");
    CHECK(c.http.port == 9000);
    CHECK(c.http.threads == 4);
    CHECK(c.storage.retention_days == 0);
    CHECK(c.ingest.journal_reserve_mb == 8u);
}

// Regression (fuzz/corpus/fuzz_config/regression-nan-rate): nan is a valid TOML float and
// passed the range check `v < lo || v > hi`, silently turning a rate limit off.
TEST_CASE("config - nan and infinities are out of every number's range") {
    for (const char* text : {"[http]\nrate_limit_per_s = nan\n", "[http]\nrate_limit_burst = -nan\n",
                             "[auth]\nrate_limit_per_s = +nan\n", "[auth]\nrate_limit_burst = inf\n",
                             "[http]\nrate_limit_per_s = -inf\n"}) {
        CAPTURE(text);
        CHECK(message(text).find("must be between") != std::string::npos);
    }
    CHECK(parse_config("[http]\nrate_limit_per_s = 2.5\n", "x.toml").http.rate_limit_per_s == 2.5);
}

TEST_CASE("config - the accepted time window defaults to 300 s ahead and the retention period back") {
    using namespace std::chrono_literals;
    const config d = parse_config("", "d.toml");
    CHECK(d.ingest.max_ts_future == 300s);
    CHECK(d.ingest.max_ts_past == std::chrono::seconds(30 * 86'400));
    CHECK(parse_config("[storage]\nretention_days = 7\n", "r.toml").ingest.max_ts_past ==
          std::chrono::seconds(7 * 86'400));
    CHECK(parse_config("[storage]\nretention_days = 0\n", "r.toml").ingest.max_ts_past ==
          std::chrono::seconds(30 * 86'400));
    const config set = parse_config("[ingest]\nmax_ts_future_s = 0\nmax_ts_past_s = 60\n[storage]\nretention_days = 7\n",
                                    "s.toml");
    CHECK(set.ingest.max_ts_future == 0s);
    CHECK(set.ingest.max_ts_past == 60s);
    CHECK_THROWS_AS(parse_config("[ingest]\nmax_ts_past_s = 0\n", "x.toml"), config_error);
    CHECK_THROWS_AS(parse_config("[ingest]\nmax_ts_future_s = -1\n", "x.toml"), config_error);
}

TEST_CASE("config - errors name the file line and key") {
    CHECK(message("[http]\nthreads = \"many\"\n") == "bad.toml:2: http.threads must be an integer");
    CHECK(message("[http]\n\nthreads = 0\n").find("bad.toml:3: http.threads must be between 1 and 64") == 0);
    CHECK(message("[mqtt]\nurll = \"x\"\n") == "bad.toml:2: mqtt.urll is not a known key");
    CHECK(message("colour = 1\n") == "bad.toml:1: colour is not a known key");
    CHECK(message("[http\n").find("bad.toml:1:") == 0);
    CHECK(message("[mqtt]\ntopic_prefix = \"a/#\"\n").find("topic_prefix") != std::string::npos);
    CHECK(message("log_level = \"loud\"\n").find("log_level") != std::string::npos);
    CHECK(message("[http]\nlisten = \"nowhere\"\n").find("HOST:PORT") != std::string::npos);
    CHECK(message("[http]\nlisten = \"h:99999\"\n").find("out of range") != std::string::npos);
    CHECK(message("[ingest]\njournal_reserve_mb = 0\n") == "bad.toml:2: ingest.journal_reserve_mb must be between 1 and 65536");
}

// docs/api.md section 8: authentication is on in any configuration that sets tokens or JWT keys.
TEST_CASE("config - auth tokens, keys and the public-listen rule") {
    const config c = parse_config(R"(
[http]
listen = "0.0.0.0:8443"
allowed_origins = ["https://dash.example"]
[auth]
jwt_hs256_keys = ["0123456789abcdef0123456789abcdef", "another key that is long enough to be ok"]
jwt_audience = "telemetry"
[[auth.tokens]]
token = "static-token-for-a-0001"
topics = ["sensors/a/#"]
name = "dashboard a"
[[auth.tokens]]
token = "static-token-for-all-01"
topics = ["#"]
)", "auth.toml");
    CHECK(c.auth.enabled());
    REQUIRE(c.auth.tokens.size() == 2);
    CHECK(c.auth.tokens[0].topics == std::vector<std::string>{"sensors/a/#"});
    CHECK(c.auth.tokens[0].name == "dashboard a");
    CHECK(c.auth.jwt_hs256_keys.size() == 2);
    CHECK(c.http.allowed_origins == std::vector<std::string>{"https://dash.example"});
    CHECK(!parse_config("", "x.toml").auth.enabled());

    // Beyond loopback with authentication off: refused, unless said explicitly.
    CHECK(message("[http]\nlisten = \"0.0.0.0:80\"\n").find("authentication off") != std::string::npos);
    CHECK(message("[http]\nlisten = \"127.0.0.1:80\"\n") == "no error");
    CHECK(message("[auth]\njwt_hs256_keys = [\"short\"]\n").find("bad.toml:2: auth.jwt_hs256_keys") == 0);
    CHECK(message("[[auth.tokens]]\ntoken = \"long-enough-token-1\"\ntopics = [\"a/#/b\"]\n").find("topic filters") != std::string::npos);
    CHECK(message("[[auth.tokens]]\ntoken = \"long-enough-token-1\"\n").find("topics") != std::string::npos);
    CHECK(message("[[auth.tokens]]\ntoken = \"short\"\ntopics = [\"#\"]\n").find("at least 16") != std::string::npos);
    CHECK(message("[http]\nallowed_origins = [\"*\"]\n").find("allowed_origins") != std::string::npos);
}

TEST_CASE("config - a missing file is an error naming it") {
    CHECK_THROWS_WITH_AS(load_config("/nonexistent/bridge.toml"),
                         "/nonexistent/bridge.toml: cannot open the configuration file", config_error);
}

TEST_CASE("config - MQTT over TLS: files are checked at start-up, not at the first connection") {
    telemetry::testing::temp_dir dir;
    const auto ca = (dir / "ca.pem").string();
    std::ofstream(ca) << "-----BEGIN CERTIFICATE-----\n";
    const std::string tls = "[mqtt]\nurl = \"ssl://127.0.0.1:8883\"\n";
    const config c = parse_config(tls + "ca_file = \"" + ca + "\"\nusername = \"u\"\npassword = \"p\"\n", "t.toml");
    CHECK(c.mqtt.ca_file == ca);
    CHECK(c.mqtt.verify);
    CHECK(c.mqtt.username == "u");
    CHECK(mqtt_url_uses_tls(c.mqtt.url));
    CHECK(mqtt_url_uses_tls("mqtts://h:1"));
    CHECK_FALSE(mqtt_url_uses_tls("tcp://h:1"));
    CHECK_FALSE(parse_config(tls + "verify = false\n", "t.toml").mqtt.verify);

    const auto error = [](const std::string& text) {
        try {
            parse_config(text, "t.toml");
        } catch (const config_error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    CHECK(error(tls + "ca_file = \"" + (dir / "absent.pem").string() + "\"\n").find("mqtt.ca_file") == 0);
    CHECK(error(tls + "ca_file = \"" + dir.path().string() + "\"\n").find("is not a file") != std::string::npos);
    // TLS files with a plain URL: the user expects TLS and would not get it.
    CHECK(error("[mqtt]\nurl = \"tcp://127.0.0.1:1883\"\nca_file = \"" + ca + "\"\n").find("is not TLS") !=
          std::string::npos);
    CHECK(error(tls + "key_file = \"" + ca + "\"\n").find("without mqtt.cert_file") != std::string::npos);
    CHECK(error(tls + "password = \"p\"\n").find("without mqtt.username") != std::string::npos);
    CHECK(error("[mqtt]\nurl = \"127.0.0.1:1883\"\n").find("must start with tcp://") != std::string::npos);
    CHECK(error(tls + "verify = \"no\"\n") == "t.toml:3: mqtt.verify must be true or false");
}

TEST_CASE("config - the secure example parses once its certificates are made") {
    // As conf/secure/README.md says: certificates from tools/make-certs.sh, paths relative to the
    // directory the bridge runs in. Each test case runs in its own process, so chdir is ours.
    telemetry::testing::temp_dir dir;
    const std::string make = std::string(TELEMETRY_SOURCE_DIR) + "/tools/make-certs.sh '" +
                             (dir / "conf/secure/certs").string() + "' >/dev/null";
    REQUIRE(std::system(make.c_str()) == 0);
    const auto here = std::filesystem::current_path();
    std::filesystem::current_path(dir.path());
    const config c = load_config(std::string(TELEMETRY_SOURCE_DIR) + "/conf/secure/broker-bridge.toml");
    std::filesystem::current_path(here);
    CHECK(mqtt_url_uses_tls(c.mqtt.url));
    CHECK(c.mqtt.verify);
    CHECK(c.mqtt.username == "broker-bridge");
    CHECK_FALSE(c.mqtt.password.empty());
    CHECK(c.mqtt.ca_file == "conf/secure/certs/ca.pem");
    CHECK(c.http.tls_cert == "conf/secure/certs/server.pem");
    CHECK(c.http.tls_key == "conf/secure/certs/server.key");
    CHECK(c.auth.enabled());
    CHECK(c.auth.tokens.size() == 2);
    CHECK(is_loopback_host(c.http.host));
}

TEST_CASE("config - mqtt_out: off by default, inherits the broker, refuses a feedback loop") {
    CHECK_FALSE(parse_config("", "o.toml").mqtt_out.enabled());
    const config c = parse_config("[mqtt]\nurl = \"tcp://10.0.0.1:1883\"\nusername = \"u\"\n"
                                  "[mqtt_out]\nprefix = \"telemetry\"\n", "o.toml");
    CHECK(c.mqtt_out.enabled());
    CHECK(c.mqtt_out.latest_prefix() == "telemetry/latest");
    const mqtt_config out = mqtt_out_broker(c);
    CHECK(out.url == "tcp://10.0.0.1:1883");
    CHECK(out.username == "u");
    CHECK(out.client_id == "broker-bridge-out");
    const config o = parse_config("[mqtt_out]\nprefix = \"t\"\nretained_prefix = \"\"\nurl = \"tcp://other:1\"\n"
                                  "client_id = \"x\"\nmax_inflight = 5\n", "o.toml");
    CHECK(o.mqtt_out.latest_prefix().empty());
    CHECK(mqtt_out_broker(o).url == "tcp://other:1");
    CHECK(mqtt_out_broker(o).client_id == "x");
    CHECK(o.mqtt_out.max_inflight == 5);
    // sensors/+/+ would read sensors/<s>/<m> back; sensors/out/<s>/<m> has one level more.
    CHECK_NOTHROW(parse_config("[mqtt_out]\nprefix = \"sensors/out\"\n", "o.toml"));
    const auto refused = [](const char* text, const char* says) {
        std::string what;
        try {
            parse_config(text, "o.toml");
        } catch (const config_error& e) {
            what = e.what();
        }
        INFO(text);
        CHECK(what.find(says) != std::string::npos);
    };
    refused("[mqtt_out]\nprefix = \"sensors\"\n", "feedback loop");
    refused("[mqtt]\ntopic_prefix = \"a/latest\"\n[mqtt_out]\nprefix = \"a\"\n", "mqtt_out.retained_prefix 'a/latest'");
    refused("[mqtt_out]\nprefix = \"out/#\"\n", "mqtt_out.prefix");
    refused("[mqtt_out]\nprefix = \"out\"\nretained_prefix = \"out\"\n", "must differ");
    refused("[mqtt_out]\nprefix = \"out\"\nclient_id = \"broker-bridge\"\n", "mqtt_out.client_id");
    refused("[mqtt_out]\nprefix = \"out\"\nca_file = \"/nonexistent\"\n", "mqtt_out.ca_file");
    refused("[mqtt_out]\nprefx = \"out\"\n", "mqtt_out.prefx is not a known key");
    // The ingest's url is inherited: a WebSocket one is refused for republishing, with what to do.
    refused("[mqtt]\nurl = \"ws://127.0.0.1:9001\"\n[mqtt_out]\nprefix = \"out\"\n", "set mqtt_out.url");
    CHECK_NOTHROW(parse_config("[mqtt]\nurl = \"ws://127.0.0.1:9001\"\n[mqtt_out]\nprefix = \"out\"\n"
                               "url = \"tcp://127.0.0.1:1883\"\n", "o.toml"));
}

// docs/api.md section 12: the gRPC API is off unless [grpc] listen is set.
TEST_CASE("config - grpc.listen: off by default, HOST:PORT, the public-listen rule") {
    CHECK_FALSE(parse_config("", "x.toml").grpc.enabled());
    const config c = parse_config("[grpc]\nlisten = \"127.0.0.1:50051\"\n", "x.toml");
    CHECK(c.grpc.enabled());
    CHECK(c.grpc.host == "127.0.0.1");
    CHECK(c.grpc.port == 50051);
    CHECK(parse_config("[grpc]\nlisten = \"[::1]:0\"\n", "x.toml").grpc.host == "::1");
    CHECK(message("[grpc]\nlisten = \"nowhere\"\n").find("HOST:PORT") != std::string::npos);
    CHECK(message("[grpc]\nport = 1\n") == "bad.toml:2: grpc.port is not a known key");
    CHECK(message("[grpc]\nlisten = \"0.0.0.0:50051\"\n").find("grpc listens on 0.0.0.0") != std::string::npos);
    CHECK(message("[grpc]\nlisten = \"0.0.0.0:50051\"\n[http]\nallow_public_without_auth = true\n") == "no error");
}

TEST_CASE("config - storage.engine, storage.url and mqtt.shared_group go together") {
    const config d = parse_config("", "d.toml");
    CHECK(d.storage.engine == "sqlite");
    CHECK_FALSE(d.storage.postgresql());
    CHECK(d.mqtt.shared_group.empty());
    const config pg = parse_config(
        "[mqtt]\nclient_id = \"r1\"\nshared_group = \"bridges\"\n"
        "[storage]\nengine = \"postgresql\"\nurl = \"postgresql://u@127.0.0.1:5432/t\"\n",
        "pg.toml");
    CHECK(pg.storage.postgresql());
    CHECK(pg.storage.url == "postgresql://u@127.0.0.1:5432/t");
    CHECK(pg.mqtt.shared_group == "bridges");
    CHECK(message("[storage]\nengine = \"mysql\"\n").starts_with("storage.engine 'mysql' must be sqlite or postgresql"));
    CHECK(message("[storage]\nengine = \"postgresql\"\n").starts_with("storage.url must name the database"));
    CHECK(message("[storage]\nurl = \"postgresql://x/y\"\n").starts_with("storage.url is set but storage.engine is sqlite"));
    CHECK(message("[mqtt]\nshared_group = \"g\"\n").starts_with("mqtt.shared_group splits the readings"));
    CHECK(message("[mqtt]\nshared_group = \"a/b\"\n[storage]\nengine = \"postgresql\"\nurl = \"x\"\n")
              .starts_with("mqtt.shared_group 'a/b' must not contain"));
}
