// Test support: temporary folders, free ports, child processes, and the real Mosquitto, bridge and
// simulator started as a user would start them.
#include "processes.hpp"

#include "http_client.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

namespace telemetry::testing {

std::uint16_t free_port() { return occupied_port().port(); }

occupied_port::occupied_port() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        if (fd_ >= 0) ::close(fd_);
        throw std::runtime_error("cannot bind and listen on a free loopback port");
    }
    port_ = ntohs(a.sin_port);
}

occupied_port::~occupied_port() { ::close(fd_); }

bool port_open(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
}

std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch()).count();
}

child::child(std::vector<std::string> argv, const std::filesystem::path& out,
             const std::filesystem::path& err)
    : out_(out), err_(err) {
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("cannot fork for " + argv[0]);
    if (pid_ == 0) {
        // In the child: die with the test process, even if it crashes, so that no broker or
        // bridge outlives a failed test.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(127);
        const int in = ::open("/dev/null", O_RDONLY);
        const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (in < 0 || o < 0 || e < 0) ::_exit(127);
        ::dup2(in, 0);
        ::dup2(o, 1);
        ::dup2(e, 2);
        ::execvp(args[0], args.data());
        ::_exit(127);
    }
}

child::~child() {
    if (running()) {
        ::kill(pid_, SIGKILL);
        wait(std::chrono::seconds(5));
    }
}

void child::signal(int sig) {
    if (!status_) ::kill(pid_, sig);
}

std::optional<int> child::wait(std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (!status_) {
        int st = 0;
        const int r = ::waitpid(pid_, &st, WNOHANG);
        if (r == pid_) {
            status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            break;
        }
        if (std::chrono::steady_clock::now() >= end) return std::nullopt;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return status_;
}

bool child::running() { return !wait(std::chrono::milliseconds(0)).has_value(); }

std::filesystem::path bridge_binary() {
    // TELEMETRY_BRIDGE_BINARY runs the tests against another build, e.g. to see a new test fail
    // on the binary from before a fix.
    if (const char* other = std::getenv("TELEMETRY_BRIDGE_BINARY"); other && *other) return other;
    return std::filesystem::path(TELEMETRY_BINARY_DIR) / "broker-bridge" / "broker-bridge";
}
std::filesystem::path sim_binary() {
    return std::filesystem::path(TELEMETRY_BINARY_DIR) / "sensor-sim" / "sensor-sim";
}
std::filesystem::path cli_binary() {
    return std::filesystem::path(TELEMETRY_BINARY_DIR) / "bridge-cli" / "bridge-cli";
}

run_result run(const std::filesystem::path& dir, std::vector<std::string> argv,
               std::chrono::milliseconds timeout) {
    static int runs = 0;
    const std::string name = "run-" + std::to_string(++runs);
    const auto out = dir / (name + ".out"), err = dir / (name + ".err");
    run_result r;
    {
        child c(std::move(argv), out, err);
        if (auto st = c.wait(timeout)) r.exit_code = *st;
    }  // a command still running is killed here
    r.out = read_file(out);
    r.err = read_file(err);
    return r;
}

broker::broker(const std::filesystem::path& dir) : dir_(dir) {
    std::filesystem::create_directories(dir_);
    start();
}

broker::~broker() = default;

void broker::start() {
    // Mosquitto cannot listen on port 0: pick a free port and retry on a clash (Mosquitto 2.0 has no port 0).
    for (int attempt = 0; attempt < 10; ++attempt) {
        if (port_ == 0 || attempt > 0) port_ = free_port();
        const auto conf = dir_ / "mosquitto.conf";
        std::ofstream c(conf);
        c << "listener " << port_ << " 127.0.0.1\n"
          << "allow_anonymous true\n"
          << "set_tcp_nodelay true\n"
          << "max_queued_messages 1000000\n"
          << "max_inflight_messages 100\n"
          << "persistence true\n"
          << "persistence_location " << (dir_ / "").string() << "\n"
          << "autosave_interval 1\n"
          << "log_dest stderr\n";
        if (::geteuid() == 0) c << "user root\n";
        c.close();
        proc_ = std::make_unique<child>(std::vector<std::string>{"mosquitto", "-c", conf.string()},
                                        dir_ / "mosquitto.out", dir_ / "mosquitto.err");
        if (eventually([&] { return port_open(port_) || !proc_->running(); }, std::chrono::seconds(10)) &&
            proc_->running())
            return;
        proc_.reset();
        if (attempt == 0 && port_ != 0) continue;  // a restart on the old port: try it once more
    }
    throw std::runtime_error("mosquitto did not start: " + read_file(dir_ / "mosquitto.err"));
}

void broker::stop() {
    if (!proc_) return;
    proc_->signal(SIGTERM);
    proc_->wait(std::chrono::seconds(10));
    proc_.reset();
}

void broker::kill() {
    if (!proc_) return;
    proc_->signal(SIGKILL);
    proc_->wait(std::chrono::seconds(10));
    proc_.reset();
}

bridge::bridge(const std::filesystem::path& dir, const std::string& mqtt_url,
               std::vector<std::string> extra_args, std::filesystem::path db)
    : dir_(dir), mqtt_url_(mqtt_url), extra_(std::move(extra_args)),
      db_(db.empty() ? dir / "bridge.db" : std::move(db)) {
    std::filesystem::create_directories(dir_);
    start();
}

bridge::~bridge() = default;

void bridge::start(bool same_port) {
    const auto out = dir_ / ("bridge-" + std::to_string(++starts_) + ".out");
    const std::string listen = "127.0.0.1:" + std::to_string(same_port ? port_ : 0);
    std::vector<std::string> argv{bridge_binary().string(), "--mqtt", mqtt_url_, "--http",
                                  listen, "--db", db().string()};
    argv.insert(argv.end(), extra_.begin(), extra_.end());
    proc_ = std::make_unique<child>(argv, out, dir_ / "bridge.err");
    const std::string marker = "serving http://127.0.0.1:";
    std::uint16_t port = 0;
    eventually([&] {
        const std::string s = read_file(out);
        const auto at = s.find(marker);
        if (at == std::string::npos) return !proc_->running();
        port = static_cast<std::uint16_t>(std::stoi(s.substr(at + marker.size())));
        return true;
    });
    if (port == 0) throw std::runtime_error("broker-bridge did not start: " + read_file(dir_ / "bridge.err"));
    port_ = port;
}

bool bridge::wait_ready(std::chrono::milliseconds timeout) {
    return eventually([&] {
        try {
            return http_get(port_, "/readyz").status == 200;
        } catch (const std::exception&) {
            return false;
        }
    }, timeout);
}

int bridge::stop() {
    proc_->signal(SIGTERM);
    auto st = proc_->wait(std::chrono::seconds(20));
    return st ? *st : -1;
}

void bridge::kill() {
    proc_->signal(SIGKILL);
    proc_->wait(std::chrono::seconds(10));
}

}  // namespace telemetry::testing
