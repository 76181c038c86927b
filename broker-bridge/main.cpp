// broker-bridge: reads configuration and flags, builds the bridge, runs it. Nothing else.
#include "bridge.hpp"
#include "core/config.hpp"

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>

int main(int argc, char** argv) {
    using namespace telemetry::bridge;
    // Paho C takes http_proxy/https_proxy from the environment even when they are set but empty,
    // and then cannot reach the broker at all. Empty means "no proxy": drop them.
    for (const char* v : {"http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"})
        if (const char* s = std::getenv(v); s && !*s) unsetenv(v);
    // SIGHUP (`systemctl reload`) must never end the bridge: ignored until bridge::run() installs
    // its handler (TLS certificate reload), e.g. while start-up commits what the journal holds.
    std::signal(SIGHUP, SIG_IGN);
    CLI::App app{"broker-bridge: stores MQTT sensor readings in SQLite and serves them over HTTP"};
    std::string config_file, mqtt_url, http_listen, db_path, log_level;
    bool allow_public = false;
    app.add_option("--config", config_file, "TOML configuration file (see conf/broker-bridge.toml)");
    app.add_option("--mqtt", mqtt_url, "MQTT broker URL, e.g. tcp://127.0.0.1:1883 (overrides mqtt.url)");
    app.add_option("--http", http_listen, "HTTP listen address HOST:PORT; port 0 picks a free one (overrides http.listen)");
    app.add_option("--db", db_path, "SQLite database file (overrides storage.db_path)");
    app.add_option("--log-level", log_level, "trace, debug, info, warn, error (overrides log_level)");
    app.add_flag("--allow-public-without-auth", allow_public,
                 "listen beyond loopback with authentication off (a proxy in front authenticates)");
    app.set_version_flag("--version", std::string("broker-bridge ") + TELEMETRY_VERSION);
    CLI11_PARSE(app, argc, argv);
    // Logs go to stderr; stdout carries only the "serving" line that scripts read.
    spdlog::set_default_logger(spdlog::stderr_color_mt("broker-bridge"));

    try {
        config cfg = config_file.empty() ? config{} : load_config(config_file);
        if (!mqtt_url.empty()) cfg.mqtt.url = mqtt_url;
        if (!http_listen.empty()) apply_listen(cfg.http, http_listen);
        if (!db_path.empty()) cfg.storage.db_path = db_path;
        if (!log_level.empty()) cfg.log_level = log_level;
        if (allow_public) cfg.http.allow_public_without_auth = true;
        validate(cfg);
        spdlog::set_level(spdlog::level::from_str(cfg.log_level));

        const char* scheme = cfg.http.tls() ? "https://" : "http://";
        bridge b(std::move(cfg));
        const auto ep = b.http_endpoint();
        // Before the HTTP line, so a script that waited for that one finds this one too.
        if (const auto gp = b.grpc_port())
            std::cout << "broker-bridge: serving grpc " << b.grpc_host() << ':' << gp
                      << std::endl;
        // This line is the contract with scripts and tests that start us on port 0.
        std::cout << "broker-bridge: serving " << scheme << ep.address().to_string() << ':' << ep.port()
                  << std::endl;
        return b.run();
    } catch (const config_error& e) {
        std::cerr << "broker-bridge: configuration error: " << e.what() << '\n';
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "broker-bridge: cannot start: " << e.what() << '\n';
        return 1;
    }
}
