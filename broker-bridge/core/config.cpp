// The bridge's typed configuration: TOML file -> config, or an error naming file:line and key.
#include "core/config.hpp"

#include "core/payload.hpp"
#include "core/topic_filter.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

namespace telemetry::bridge {
namespace {

std::string where(const std::string& origin, const toml::source_region& src) {
    std::ostringstream out;
    out << origin << ':' << src.begin.line;
    return out.str();
}

// Reads a table's keys into typed fields, remembering which keys it knew so the rest are errors.
class table_reader {
public:
    table_reader(const toml::table* t, std::string name, const std::string& origin)
        : table_(t), name_(std::move(name)), origin_(origin) {}

    template <typename T>
    void integer(const char* key, T& out, std::int64_t lo, std::int64_t hi) {
        const toml::node* n = find(key);
        if (!n) return;
        auto v = n->value<std::int64_t>();
        if (!v || !n->is_integer()) fail(*n, key, "must be an integer");
        if (*v < lo || *v > hi)
            fail(*n, key, "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
        out = static_cast<T>(*v);
    }
    void seconds(const char* key, std::chrono::seconds& out, std::int64_t lo, std::int64_t hi) {
        std::int64_t v = out.count();
        integer(key, v, lo, hi);
        out = std::chrono::seconds{v};
    }
    void string(const char* key, std::string& out) {
        const toml::node* n = find(key);
        if (!n) return;
        if (!n->is_string()) fail(*n, key, "must be a string");
        out = *n->value<std::string>();
    }
    void number(const char* key, double& out, double lo, double hi) {
        const toml::node* n = find(key);
        if (!n) return;
        auto v = n->value<double>();  // integers convert too
        if (!v || !(n->is_floating_point() || n->is_integer())) fail(*n, key, "must be a number");
        // Written so that nan (valid TOML) fails too.
        if (!(*v >= lo && *v <= hi))
            fail(*n, key, "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
        out = *v;
    }
    void boolean(const char* key, bool& out) {
        const toml::node* n = find(key);
        if (!n) return;
        if (!n->is_boolean()) fail(*n, key, "must be true or false");
        out = *n->value<bool>();
    }
    // An array of strings; `check` returns an error message for a bad element, or "".
    template <typename Check>
    void strings(const char* key, std::vector<std::string>& out, Check check) {
        const toml::node* n = find(key);
        if (!n) return;
        if (!n->is_array()) fail(*n, key, "must be an array of strings");
        out.clear();
        for (const auto& e : *n->as_array()) {
            if (!e.is_string()) fail(e, key, "must be an array of strings");
            std::string v = *e.value<std::string>();
            if (auto why = check(v); !why.empty()) fail(e, key, why);
            out.push_back(std::move(v));
        }
    }
    // An array of tables ([[name]]): each read by `each(reader)`.
    template <typename Each>
    void tables(const char* key, Each each) {
        const toml::node* n = find(key);
        if (!n) return;
        if (!n->is_array_of_tables()) fail(*n, key, "must be an array of tables ([[" + name_ + "." + key + "]])");
        for (const auto& e : *n->as_array()) {
            table_reader r(e.as_table(), name_ + "." + key, origin_);
            each(r, e);
            r.finish();
        }
    }
    [[noreturn]] void fail_at(const toml::node& n, const char* key, const std::string& why) { fail(n, key, why); }
    void path(const char* key, std::filesystem::path& out) {
        std::string s = out.string();
        string(key, s);
        out = s;
    }
    void allow(const char* key) { known_.insert(key); }
    void finish() {
        if (!table_) return;
        for (const auto& [k, v] : *table_) {
            if (!known_.count(std::string(k.str())))
                fail(v, std::string(k.str()).c_str(), "is not a known key");
        }
    }

private:
    const toml::node* find(const char* key) {
        known_.insert(key);
        return table_ ? table_->get(key) : nullptr;
    }
    [[noreturn]] void fail(const toml::node& n, const char* key, const std::string& why) {
        throw config_error(where(origin_, n.source()) + ": " + (name_.empty() ? "" : name_ + ".") +
                           key + " " + why);
    }
    const toml::table* table_;
    std::string name_;
    const std::string& origin_;
    std::set<std::string> known_;
};

}  // namespace

config parse_config(std::string_view toml_text, const std::string& origin) {
    toml::table root;
    try {
        root = toml::parse(toml_text, origin);
    } catch (const toml::parse_error& e) {
        throw config_error(where(origin, e.source()) + ": " + std::string(e.description()));
    }
    config c;
    const auto section = [&](const char* name) -> const toml::table* {
        const toml::node* n = root.get(name);
        if (!n) return nullptr;
        if (!n->is_table()) throw config_error(where(origin, n->source()) + ": " + name + " must be a table");
        return n->as_table();
    };

    table_reader top(&root, "", origin);
    top.string("log_level", c.log_level);
    for (const char* name : {"mqtt", "http", "storage", "ingest", "stream", "grpc", "hub", "auth", "mqtt_out"})
        top.allow(name);
    top.finish();

    table_reader m(section("mqtt"), "mqtt", origin);
    m.string("url", c.mqtt.url);
    m.string("client_id", c.mqtt.client_id);
    m.string("topic_prefix", c.mqtt.topic_prefix);
    m.string("shared_group", c.mqtt.shared_group);
    m.string("username", c.mqtt.username);
    m.string("password", c.mqtt.password);
    m.path("ca_file", c.mqtt.ca_file);
    m.path("cert_file", c.mqtt.cert_file);
    m.path("key_file", c.mqtt.key_file);
    m.boolean("verify", c.mqtt.verify);
    m.seconds("keepalive_s", c.mqtt.keepalive, 5, 3600);
    m.integer("session_expiry_s", c.mqtt.session_expiry_s, 1, 0xFFFFFFFE);
    m.seconds("reconnect_min_s", c.mqtt.reconnect_min, 1, 3600);
    m.seconds("reconnect_max_s", c.mqtt.reconnect_max, 1, 3600);
    m.finish();

    // [mqtt_out]: a key left out keeps "take it from [mqtt]" (nullopt), see mqtt_out_broker().
    const toml::table* out_table = section("mqtt_out");
    table_reader mo(out_table, "mqtt_out", origin);
    const auto given = [&](const char* key) { return out_table && out_table->get(key); };
    mo.string("prefix", c.mqtt_out.prefix);
    const auto optional_string = [&](const char* key, std::optional<std::string>& out) {
        std::string v;
        mo.string(key, v);  // also marks the key as known
        if (given(key)) out = std::move(v);
    };
    optional_string("retained_prefix", c.mqtt_out.retained_prefix);
    optional_string("url", c.mqtt_out.url);
    optional_string("client_id", c.mqtt_out.client_id);
    optional_string("username", c.mqtt_out.username);
    optional_string("password", c.mqtt_out.password);
    for (auto [key, out] : {std::pair{"ca_file", &c.mqtt_out.ca_file}, std::pair{"cert_file", &c.mqtt_out.cert_file},
                            std::pair{"key_file", &c.mqtt_out.key_file}}) {
        std::optional<std::string> v;
        optional_string(key, v);
        if (v) *out = *v;
    }
    bool verify = true;
    mo.boolean("verify", verify);
    if (given("verify")) c.mqtt_out.verify = verify;
    mo.integer("max_inflight", c.mqtt_out.max_inflight, 1, 65535);
    mo.integer("max_queued", c.mqtt_out.max_queued, 1, 10'000'000);
    mo.finish();

    table_reader h(section("http"), "http", origin);
    std::string listen;
    h.string("listen", listen);
    h.integer("threads", c.http.threads, 1, 64);
    h.integer("max_header_bytes", c.http.max_header_bytes, 1024, 1 << 20);
    h.integer("max_body_bytes", c.http.max_body_bytes, 0, 64 << 20);
    h.integer("max_target_bytes", c.http.max_target_bytes, 256, 1 << 20);
    h.integer("max_connections", c.http.max_connections, 1, 1'000'000);
    h.seconds("idle_timeout_s", c.http.idle_timeout, 1, 3600);
    h.seconds("handshake_timeout_s", c.http.handshake_timeout, 1, 3600);
    h.path("tls_cert", c.http.tls_cert);
    h.path("tls_key", c.http.tls_key);
    h.seconds("longpoll_default_s", c.http.longpoll_default, 1, 3600);
    h.seconds("longpoll_max_s", c.http.longpoll_max, 1, 3600);
    h.integer("longpoll_max_filters", c.http.longpoll_max_filters, 1, 1024);
    h.integer("gzip_min_bytes", c.http.gzip_min_bytes, 0, 1 << 30);
    h.integer("max_connections_per_address", c.http.max_connections_per_address, 1, 1'000'000);
    const auto origin_check = [](const std::string& o) -> std::string {
        const bool scheme = o.rfind("http://", 0) == 0 || o.rfind("https://", 0) == 0;
        if (!scheme || o.find('/', o.find("//") + 2) != std::string::npos || o == "*")
            return "entries must be origins such as \"https://dash.example\" (scheme://host[:port], no path, no *)";
        return {};
    };
    h.strings("allowed_origins", c.http.allowed_origins, origin_check);
    h.strings("allowed_hosts", c.http.allowed_hosts, [](const std::string& v) -> std::string {
        return v.empty() || v.find_first_of("/ \t") != std::string::npos ? "entries must be host names" : "";
    });
    h.boolean("allow_public_without_auth", c.http.allow_public_without_auth);
    h.number("rate_limit_per_s", c.http.rate_limit_per_s, 0, 1e9);
    h.number("rate_limit_burst", c.http.rate_limit_burst, 0, 1e9);
    h.finish();
    if (!listen.empty()) apply_listen(c.http, listen);

    table_reader g(section("grpc"), "grpc", origin);
    std::string grpc_listen;
    g.string("listen", grpc_listen);
    g.finish();
    if (!grpc_listen.empty()) {
        http_config parsed;  // the same HOST:PORT rules as [http] listen
        apply_listen(parsed, grpc_listen);
        c.grpc.host = parsed.host;
        c.grpc.port = parsed.port;
    }

    table_reader s(section("storage"), "storage", origin);
    s.string("engine", c.storage.engine);
    s.string("url", c.storage.url);
    s.path("db_path", c.storage.db_path);
    s.integer("query_threads", c.storage.query_threads, 1, 64);
    s.integer("retention_days", c.storage.retention_days, 0, 100'000);
    s.seconds("retention_interval_s", c.storage.retention_interval, 1, 86'400);
    s.integer("retention_chunk", c.storage.retention_chunk, 1, 1'000'000);
    s.finish();

    table_reader i(section("ingest"), "ingest", origin);
    i.integer("max_payload_bytes", c.ingest.max_payload_bytes, 16, 256 << 20);
    i.integer("max_senml_records", c.ingest.max_senml_records, 1, 1'000'000);
    i.integer("journal_reserve_mb", c.ingest.journal_reserve_mb, 1, 65'536);
    i.integer("max_series", c.ingest.max_series, 1, 100'000'000);
    i.boolean("sync", c.ingest.sync);
    i.seconds("max_ts_future_s", c.ingest.max_ts_future, 0, 315'360'000);
    std::chrono::seconds past{0};  // 0: not in the file
    i.seconds("max_ts_past_s", past, 1, 8'640'000'000);
    i.finish();
    if (past.count() > 0) c.ingest.max_ts_past = past;
    else if (c.storage.retention_days > 0) c.ingest.max_ts_past = std::chrono::days(c.storage.retention_days);

    table_reader st(section("stream"), "stream", origin);
    st.integer("max_queue_bytes", c.stream.max_queue_bytes, 1024, 1 << 30);
    st.integer("max_total_queue_bytes", c.stream.max_total_queue_bytes, 1 << 16, std::int64_t{1} << 40);
    st.integer("max_queue_events", c.stream.max_queue_events, 1, 10'000'000);
    st.seconds("heartbeat_s", c.stream.heartbeat, 1, 3600);
    std::int64_t retry_ms = c.stream.retry.count();
    st.integer("retry_ms", retry_ms, 0, 3'600'000);
    c.stream.retry = std::chrono::milliseconds(retry_ms);
    st.seconds("write_timeout_s", c.stream.write_timeout, 1, 3600);
    st.integer("max_filters", c.stream.max_filters, 1, 1024);
    st.integer("max_filter_bytes", c.stream.max_filter_bytes, 16, 65535);
    st.integer("max_filter_levels", c.stream.max_filter_levels, 1, 1024);
    st.integer("ws_max_message_bytes", c.stream.ws_max_message_bytes, 256, 16 << 20);
    st.finish();

    const auto filter_check = [](const std::string& t) -> std::string {
        return topic_filter::parse(t) ? "" : "entries must be MQTT topic filters such as \"sensors/a/#\"";
    };
    table_reader a(section("auth"), "auth", origin);
    a.strings("jwt_hs256_keys", c.auth.jwt_hs256_keys, [](const std::string& k) -> std::string {
        return k.size() < 32 ? "keys must be at least 32 bytes (HS256 keys shorter than the hash are weak)" : "";
    });
    a.string("jwt_audience", c.auth.jwt_audience);
    a.string("jwt_issuer", c.auth.jwt_issuer);
    a.seconds("leeway_s", c.auth.leeway, 0, 3600);
    a.string("metrics_token", c.auth.metrics_token);
    a.number("rate_limit_per_s", c.auth.rate_limit_per_s, 0, 1e9);
    a.number("rate_limit_burst", c.auth.rate_limit_burst, 0, 1e9);
    a.tables("tokens", [&](table_reader& t, const toml::node& where_) {
        static_token tok;
        t.string("token", tok.token);
        t.string("name", tok.name);
        t.strings("topics", tok.topics, filter_check);
        if (tok.token.size() < 16) t.fail_at(where_, "token", "must be at least 16 characters");
        if (tok.topics.empty()) t.fail_at(where_, "topics", "must list the topic filters the token may read");
        c.auth.tokens.push_back(std::move(tok));
    });
    a.finish();

    table_reader hb(section("hub"), "hub", origin);
    hb.integer("window", c.hub.window, 16, 100'000'000);
    hb.finish();

    validate(c);
    return c;
}

config load_config(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw config_error(file.string() + ": cannot open the configuration file");
    std::ostringstream text;
    text << in.rdbuf();
    return parse_config(text.str(), file.string());
}

void apply_listen(http_config& http, const std::string& host_port) {
    const auto colon = host_port.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == host_port.size())
        throw config_error("listen address '" + host_port + "' must be HOST:PORT");
    std::string host = host_port.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    const std::string port = host_port.substr(colon + 1);
    unsigned long p = 0;
    try {
        std::size_t used = 0;
        p = std::stoul(port, &used);
        if (used != port.size()) throw std::invalid_argument(port);
    } catch (const std::exception&) {
        throw config_error("listen port '" + port + "' is not a number");
    }
    if (p > 65535) throw config_error("listen port " + port + " is out of range");
    http.host = host;
    http.port = static_cast<std::uint16_t>(p);
}

bool mqtt_url_uses_tls(std::string_view url) {
    return url.starts_with("ssl://") || url.starts_with("mqtts://") || url.starts_with("wss://");
}

namespace {

// A file the bridge reads at every connection attempt: a typo shows at start-up, not as an
// endless "cannot connect" later.
void require_readable_file(const char* key, const std::filesystem::path& p) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(p, ec))
        throw config_error(std::string(key) + " '" + p.string() + "' is not a file");
    if (!std::ifstream(p, std::ios::binary))
        throw config_error(std::string(key) + " '" + p.string() + "' cannot be read");
}

// `section` names the table in errors: "mqtt", or "mqtt_out" for the republisher's connection.
void validate_mqtt(const mqtt_config& m, const std::string& section) {
    static constexpr std::string_view schemes[] = {"tcp://", "mqtt://", "ssl://", "mqtts://", "ws://", "wss://"};
    if (std::none_of(std::begin(schemes), std::end(schemes), [&](std::string_view s) { return m.url.starts_with(s); }))
        throw config_error(section + ".url '" + m.url + "' must start with tcp://, mqtt://, ssl:// or mqtts:// "
                           "(or ws://, wss://)");
    const bool tls = mqtt_url_uses_tls(m.url);
    // TLS files with a plain URL mean the user expects TLS and would not get it.
    for (const auto& [key, file] : {std::pair{"ca_file", &m.ca_file}, std::pair{"cert_file", &m.cert_file},
                                    std::pair{"key_file", &m.key_file}}) {
        if (file->empty()) continue;
        const std::string name = section + "." + key;
        if (!tls)
            throw config_error(name + " is set but " + section + ".url '" + m.url +
                               "' is not TLS: use ssl://HOST:PORT or mqtts://HOST:PORT");
        require_readable_file(name.c_str(), *file);
    }
    if (!m.key_file.empty() && m.cert_file.empty())
        throw config_error(section + ".key_file is set without " + section + ".cert_file (the client certificate)");
    if (!m.password.empty() && m.username.empty())
        throw config_error(section + ".password is set without " + section + ".username");
}

// A topic prefix: levels without wildcards, no outer slashes, not a `$` system topic.
bool valid_prefix(const std::string& p) {
    return !p.empty() && p.find_first_of("+#") == std::string::npos && p.front() != '/' && p.back() != '/' &&
           p.front() != '$' && p.find('\0') == std::string::npos;
}

// [mqtt_out]: well-formed prefixes, and none that the ingest subscriptions (`<prefix>/+/+`,
// `<prefix>/+/status`) would match: the bridge would read its own republished readings back.
void validate_mqtt_out(const config& c) {
    const auto& o = c.mqtt_out;
    if (!o.enabled()) return;
    if (!valid_prefix(o.prefix))
        throw config_error("mqtt_out.prefix '" + o.prefix + "' must be topic levels without wildcards, outer slashes or a leading $");
    const std::string latest = o.latest_prefix();
    if (!latest.empty() && !valid_prefix(latest))
        throw config_error("mqtt_out.retained_prefix '" + latest +
                           "' must be topic levels without wildcards, outer slashes or a leading $ (or \"\" for none)");
    if (latest == o.prefix)
        throw config_error("mqtt_out.retained_prefix must differ from mqtt_out.prefix (the retained copies would be "
                           "mixed into the stream)");
    const auto ingest = topic_filter::parse(c.mqtt.topic_prefix + "/+/+");
    for (const auto& [key, p] : {std::pair{"prefix", o.prefix}, std::pair{"retained_prefix", latest}}) {
        if (p.empty() || !ingest) continue;
        if (ingest->matches(p + "/sensor/metric"))
            throw config_error("mqtt_out." + std::string(key) + " '" + p + "' is read back by the ingest subscription '" +
                               ingest->str() + "' (mqtt.topic_prefix '" + c.mqtt.topic_prefix +
                               "'): every republished reading would be ingested again, a feedback loop. "
                               "Choose another prefix");
    }
    const mqtt_config out = mqtt_out_broker(c);
    if (out.url == c.mqtt.url && out.client_id == c.mqtt.client_id)
        throw config_error("mqtt_out.client_id '" + out.client_id +
                           "' is the ingest's mqtt.client_id on the same broker: each connection would take the "
                           "other's place");
    validate_mqtt(out, "mqtt_out");
    if (out.url.starts_with("ws://") || out.url.starts_with("wss://"))
        throw config_error("mqtt_out.url '" + out.url + "': republishing speaks MQTT over TCP or TLS (tcp://, mqtt://, "
                           "ssl://, mqtts://), not over WebSocket; set mqtt_out.url when [mqtt] uses ws:// or wss://");
}

}  // namespace

mqtt_config mqtt_out_broker(const config& c) {
    const auto& o = c.mqtt_out;
    mqtt_config m = c.mqtt;
    m.client_id = o.client_id.value_or(c.mqtt.client_id + "-out");
    if (o.url) m.url = *o.url;
    if (o.username) m.username = *o.username;
    if (o.password) m.password = *o.password;
    if (o.ca_file) m.ca_file = *o.ca_file;
    if (o.cert_file) m.cert_file = *o.cert_file;
    if (o.key_file) m.key_file = *o.key_file;
    if (o.verify) m.verify = *o.verify;
    return m;
}

bool is_loopback_host(std::string_view host) {
    return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

void validate(const config& c) {
    if (c.mqtt.topic_prefix.empty() || c.mqtt.topic_prefix.find_first_of("+#") != std::string::npos ||
        c.mqtt.topic_prefix.front() == '/' || c.mqtt.topic_prefix.back() == '/')
        throw config_error("mqtt.topic_prefix '" + c.mqtt.topic_prefix +
                           "' must be topic levels without wildcards or outer slashes");
    if (c.mqtt.reconnect_min > c.mqtt.reconnect_max)
        throw config_error("mqtt.reconnect_min_s must not exceed mqtt.reconnect_max_s");
    validate_mqtt(c.mqtt, "mqtt");
    validate_mqtt_out(c);
    if (c.http.longpoll_default > c.http.longpoll_max)
        throw config_error("http.longpoll_default_s must not exceed http.longpoll_max_s");
    if (c.storage.db_path.empty()) throw config_error("storage.db_path must not be empty");
    if (c.storage.engine != "sqlite" && c.storage.engine != "postgresql")
        throw config_error("storage.engine '" + c.storage.engine + "' must be sqlite or postgresql");
    if (c.storage.postgresql() && c.storage.url.empty())
        throw config_error("storage.url must name the database when storage.engine is postgresql "
                           "(postgresql://user@host:5432/telemetry)");
    if (!c.storage.postgresql() && !c.storage.url.empty())
        throw config_error("storage.url is set but storage.engine is sqlite: set engine = \"postgresql\", "
                           "or remove url");
    if (!c.mqtt.shared_group.empty()) {
        if (c.mqtt.shared_group.find_first_of("/+#") != std::string::npos)
            throw config_error("mqtt.shared_group '" + c.mqtt.shared_group + "' must not contain '/', '+' or '#'");
        if (!c.storage.postgresql())
            throw config_error("mqtt.shared_group splits the readings among replicas, so each must store into "
                               "the one shared database: set storage.engine = \"postgresql\"");
    }
    if (c.http.tls_cert.empty() != c.http.tls_key.empty())
        throw config_error("http.tls_cert and http.tls_key go together: set both for HTTPS, or neither");
    if (!c.auth.enabled() && !is_loopback_host(c.http.host) && !c.http.allow_public_without_auth)
        throw config_error("http listens on " + c.http.host +
                           ", beyond this machine, with authentication off: anyone who reaches the port "
                           "reads every reading. Configure [auth] tokens or jwt_hs256_keys, listen on "
                           "127.0.0.1, or set http.allow_public_without_auth = true "
                           "(--allow-public-without-auth) if a proxy in front authenticates");
    if (c.grpc.enabled() && !c.auth.enabled() && !is_loopback_host(c.grpc.host) && !c.http.allow_public_without_auth)
        throw config_error("grpc listens on " + c.grpc.host +
                           ", beyond this machine, with authentication off: anyone who reaches the port "
                           "reads every reading. Configure [auth] tokens or jwt_hs256_keys, listen on "
                           "127.0.0.1, or set http.allow_public_without_auth = true if a proxy in front "
                           "authenticates");
    static const std::set<std::string> levels{"trace", "debug", "info", "warn", "error", "critical", "off"};
    if (!levels.count(c.log_level))
        throw config_error("log_level '" + c.log_level + "' must be one of trace, debug, info, warn, error, critical, off");
}

}  // namespace telemetry::bridge
