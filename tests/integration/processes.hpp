// Test support: temporary folders, free ports, child processes, and the real Mosquitto, bridge and
// simulator started as a user would start them.
#pragma once

#include "temp_dir.hpp"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <thread>
#include <string>
#include <vector>

namespace telemetry::testing {

// A fresh folder under /tmp, removed with everything in it when this goes out of scope.
// A loopback TCP port that was free a moment ago (bind 127.0.0.1:0, read, close).
std::uint16_t free_port();

// A loopback TCP port held (bound and listening) until this goes, as another server would hold it.
class occupied_port {
public:
    occupied_port();
    ~occupied_port();
    occupied_port(const occupied_port&) = delete;
    occupied_port& operator=(const occupied_port&) = delete;
    std::uint16_t port() const { return port_; }

private:
    int fd_ = -1;
    std::uint16_t port_ = 0;
};
// True once something accepts TCP connections on 127.0.0.1:port.
bool port_open(std::uint16_t port);
std::string read_file(const std::filesystem::path& p);
// Wall-clock time in epoch milliseconds, as sensors date their readings.
std::int64_t now_ms();

// A child process with stdout and stderr sent to files. Killed (SIGKILL) if still running when
// destroyed, so a failing test never leaves processes behind.
class child {
public:
    child(std::vector<std::string> argv, const std::filesystem::path& out, const std::filesystem::path& err);
    ~child();
    child(const child&) = delete;
    child& operator=(const child&) = delete;
    int pid() const { return pid_; }
    void signal(int sig);
    // Exit status (or 128 + signal), nullopt if still running after `timeout`.
    std::optional<int> wait(std::chrono::milliseconds timeout);
    bool running();
    std::string out() const { return read_file(out_); }
    std::string err() const { return read_file(err_); }

private:
    int pid_ = -1;
    std::optional<int> status_;
    std::filesystem::path out_, err_;
};

std::filesystem::path bridge_binary();  // $TELEMETRY_BRIDGE_BINARY if set
std::filesystem::path sim_binary();
std::filesystem::path cli_binary();

// What a finished command printed and how it exited.
struct run_result {
    int exit_code = -1;  // 128 + signal if killed; -1 if it was still running at the timeout
    std::string out, err;
};

// Runs `argv` to completion with stdout and stderr captured in files under `dir` (killed after
// `timeout`, which then shows as exit_code -1).
run_result run(const std::filesystem::path& dir, std::vector<std::string> argv,
               std::chrono::milliseconds timeout = std::chrono::seconds(60));

// A real Mosquitto on a free loopback port, with persistence in its own folder, so that it can be
// restarted on the same port and keep its sessions.
class broker {
public:
    explicit broker(const std::filesystem::path& dir);
    ~broker();
    std::uint16_t port() const { return port_; }
    std::string url() const { return "tcp://127.0.0.1:" + std::to_string(port_); }
    void stop();     // SIGTERM: Mosquitto saves its persistence file on a clean stop
    void kill();     // SIGKILL: what arrived since its last autosave (every second here) is lost
    void start();    // again, on the same port

private:
    std::filesystem::path dir_;
    std::uint16_t port_ = 0;
    std::unique_ptr<child> proc_;
};

// The real broker-bridge binary, on port 0, its URL read from the line it prints.
class bridge {
public:
    // Logs in `dir`, and the database (with its journal) there too unless `db` names another
    // place (such as a small file system that will fill up while the logs must not).
    bridge(const std::filesystem::path& dir, const std::string& mqtt_url,
           std::vector<std::string> extra_args = {}, std::filesystem::path db = {});
    ~bridge();
    std::uint16_t port() const { return port_; }
    child& process() { return *proc_; }
    // Waits until /readyz answers 200; false after the timeout.
    bool wait_ready(std::chrono::milliseconds timeout = std::chrono::seconds(20));
    int stop();  // SIGTERM, returns the exit status
    void kill(); // SIGKILL
    // Starts the bridge (again). `same_port`: on the port it had, as a restarted service would be,
    // so that clients reconnecting to the old URL find it.
    void start(bool same_port = false);
    const std::filesystem::path& db() const { return db_; }

private:
    std::filesystem::path dir_;
    std::string mqtt_url_;
    std::vector<std::string> extra_;
    std::filesystem::path db_;
    std::uint16_t port_ = 0;
    int starts_ = 0;
    std::unique_ptr<child> proc_;
};

// Polls `pred` every 20 ms until it holds or the timeout passes.
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(15)) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
        if (pred()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return pred();
}

}  // namespace telemetry::testing
