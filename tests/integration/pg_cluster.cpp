// Test support: a throwaway PostgreSQL 15 cluster (initdb, the server as a child, psql).
#include "pg_cluster.hpp"

#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>

namespace telemetry::testing {

namespace {

const std::filesystem::path pg_bin = "/usr/lib/postgresql/15/bin";

bool as_root() { return ::geteuid() == 0; }

// `argv` run as the postgres user when we are root (the server refuses root).
std::vector<std::string> as_postgres(std::vector<std::string> argv) {
    if (!as_root()) return argv;
    argv.insert(argv.begin(), {"runuser", "-u", "postgres", "--"});
    return argv;
}

void give_to_postgres(const std::filesystem::path& p) {
    if (!as_root()) return;
    const passwd* pw = ::getpwnam("postgres");
    if (!pw || ::chown(p.c_str(), pw->pw_uid, pw->pw_gid) != 0)
        throw std::runtime_error("pg_cluster: no postgres user to own " + p.string() +
                                 " (install postgresql-15)");
}

}  // namespace

pg_cluster::pg_cluster() {
    give_to_postgres(dir_.path());
    const auto data = dir_ / "data";
    const auto sock = dir_ / "sock";
    std::filesystem::create_directory(sock);
    give_to_postgres(sock);
    const auto init = run(dir_.path(),
                          as_postgres({(pg_bin / "initdb").string(), "-D", data.string(), "-U", "postgres",
                                       "--auth=trust", "--no-sync", "--no-locale", "-E", "UTF8"}),
                          std::chrono::seconds(120));
    if (init.exit_code != 0) throw std::runtime_error("pg_cluster: initdb failed: " + init.err + init.out);
    // A port that was free a moment ago may be taken before the server binds it: retry.
    for (int attempt = 0; attempt < 5 && !server_; ++attempt) {
        port_ = free_port();
        std::vector<std::string> argv = {(pg_bin / "postgres").string(), "-D", data.string(),
                                         "-p", std::to_string(port_),
                                         "-c", "listen_addresses=127.0.0.1",
                                         "-c", "unix_socket_directories=" + sock.string(),
                                         "-c", "fsync=off", "-c", "shared_buffers=16MB",
                                         "-c", "max_connections=40"};
        if (as_root())
            argv.insert(argv.begin(), {"setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
                                       "--pdeathsig=KILL", "--"});
        const auto log = dir_ / ("server-" + std::to_string(attempt) + ".log");
        server_ = std::make_unique<child>(argv, log, log);
        const bool ready = eventually(
            [&] {
                if (!server_->running()) return true;
                return run(dir_.path(), {(pg_bin / "pg_isready").string(), "-q", "-h", "127.0.0.1",
                                         "-p", std::to_string(port_)},
                           std::chrono::seconds(10))
                           .exit_code == 0;
            },
            std::chrono::seconds(60));
        if (!ready || !server_->running()) {
            server_.reset();
            if (attempt == 4)
                throw std::runtime_error("pg_cluster: the server did not start: " + read_file(log));
        }
    }
}

pg_cluster::~pg_cluster() {
    if (!server_) return;
    server_->signal(SIGINT);  // fast shutdown: ends sessions, then exits
    server_->wait(std::chrono::seconds(30));
    server_.reset();  // SIGKILL if it is still running
}

std::string pg_cluster::url(const std::string& db) const {
    return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + db;
}

std::string pg_cluster::psql(const std::string& db, const std::string& sql) {
    const auto r = run(dir_.path(), {(pg_bin / "psql").string(), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                                     "-d", url(db), "-c", sql},
                       std::chrono::seconds(60));
    if (r.exit_code != 0) throw std::runtime_error("psql failed on '" + sql + "': " + r.err);
    return r.out;
}

std::string pg_cluster::create_database() {
    const std::string name = "test_" + std::to_string(++databases_);
    psql("postgres", "CREATE DATABASE " + name);
    return url(name);
}

pg_cluster& shared_pg_cluster() {
    static pg_cluster cluster;
    return cluster;
}

}  // namespace telemetry::testing
