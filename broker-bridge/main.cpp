// broker-bridge: reads configuration and flags, builds the bridge, runs it. Nothing else.
#include "bridge.hpp"
#include "core/config.hpp"
#include "core/cursor.hpp"
#include "backup.hpp"
#include "pipeline/stores.hpp"

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

namespace {

// `backup` or `restore` (docs/api.md 2.1): one line on stdout saying what was copied.
int run_storage_command(const telemetry::bridge::config& cfg, const std::filesystem::path& backup_to,
                        const std::filesystem::path& restore_from) {
    namespace storage = telemetry::storage;
    if (cfg.storage.postgresql()) {
        std::cerr << "broker-bridge: backup and restore are for SQLite; with PostgreSQL use pg_dump and pg_restore, "
                     "then give the database a new epoch (docs/api.md 2.1)\n";
        return 2;
    }
    try {
        const bool backing_up = !backup_to.empty();
        // Absolute paths in what it says: a relative db_path depends on the working directory.
        const auto db = std::filesystem::absolute(cfg.storage.db_path);
        const auto s = backing_up ? storage::backup(db, backup_to)
                                  : storage::restore(restore_from, db,
                                                     {telemetry::bridge::journal_path(db),
                                                      telemetry::bridge::republish_cursor_path(db)});
        std::cout << "broker-bridge: " << (backing_up ? "backed up " : "restored ")
                  << std::filesystem::absolute(backing_up ? db : restore_from).string() << " to "
                  << std::filesystem::absolute(backing_up ? backup_to : db).string() << ": " << s.readings
                  << " readings, newest id " << s.newest_id << ", epoch " << telemetry::bridge::epoch_text(s.epoch)
                  << ", " << s.bytes << " bytes";
        for (const auto& p : s.set_aside) std::cout << "; set aside " << p.string();
        std::cout << std::endl;
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "broker-bridge: " << (backup_to.empty() ? "restore" : "backup") << " failed: " << e.what() << '\n';
        return 1;
    }
}

}  // namespace

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
    // The options above also apply after a subcommand (`broker-bridge backup --config F --to B`).
    app.fallthrough();
    std::filesystem::path backup_to, restore_from;
    auto* backup_cmd = app.add_subcommand(
        "backup", "copy the SQLite database (while a bridge may be running on it) to one file, and exit");
    backup_cmd->add_option("--to", backup_to, "the backup file to write (replaced if it exists)")->required();
    auto* restore_cmd = app.add_subcommand(
        "restore", "replace the SQLite database by a backup, with a new epoch (the bridge must be stopped), and exit");
    restore_cmd->add_option("--from", restore_from, "the backup file to restore")->required()->check(CLI::ExistingFile);
    app.require_subcommand(0, 1);
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
        if (*backup_cmd || *restore_cmd) return run_storage_command(cfg, *backup_cmd ? backup_to : std::filesystem::path{},
                                                                    *restore_cmd ? restore_from : std::filesystem::path{});

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
