// Tests of tools/run-demo.sh as a user runs it, without its install and build steps: it prints the
// URL only once its own bridge is ready, and says what failed when the broker or the bridge did not
// start (here because their ports are taken).
#include "http_client.hpp"
#include "processes.hpp"

#include <doctest/doctest.h>

#include <csignal>

using namespace telemetry::testing;
using namespace std::chrono_literals;

namespace {

// One run of the demo: its data in a fresh folder, on the given ports, with the binaries of this
// build. Whatever it started and left running is killed at scope exit, so a failing test leaves no
// broker or bridge behind.
class demo {
public:
    demo(std::uint16_t http_port, std::uint16_t mqtt_port)
        : data_(dir_ / "data"),
          argv_{"env", "DEMO_SKIP_BUILD=1", "DEMO_BUILD_DIR=" TELEMETRY_BINARY_DIR, "DEMO_DATA_DIR=" + data_.string(),
                "DEMO_HTTP_PORT=" + std::to_string(http_port), "DEMO_MQTT_PORT=" + std::to_string(mqtt_port),
                "bash", TELEMETRY_SOURCE_DIR "/tools/run-demo.sh"} {}
    ~demo() {
        for (int pid : running()) ::kill(pid, SIGKILL);
    }
    const temp_dir& dir() const { return dir_; }
    const std::filesystem::path& data() const { return data_; }
    const std::vector<std::string>& argv() const { return argv_; }

    // The processes it started that still run: they inherit its DEMO_DATA_DIR.
    std::vector<int> running() const {
        const std::string marker = "DEMO_DATA_DIR=" + data_.string() + '\0';
        std::vector<int> out;
        for (const auto& e : std::filesystem::directory_iterator("/proc")) {
            const std::string name = e.path().filename().string();
            if (name.find_first_not_of("0123456789") != std::string::npos) continue;
            if (read_file(e.path() / "environ").find(marker) != std::string::npos) out.push_back(std::stoi(name));
        }
        return out;
    }

private:
    temp_dir dir_;
    std::filesystem::path data_;
    std::vector<std::string> argv_;
};

}  // namespace

TEST_CASE("demo - the bridge's port is taken: it fails loudly, names the log, prints no URL, stops the broker") {
    occupied_port taken;
    demo d(taken.port(), free_port());
    const auto r = run(d.dir().path(), d.argv(), 60s);
    CHECK(r.exit_code == 1);
    CHECK_MESSAGE(r.out.find("open http") == std::string::npos, r.out);
    CHECK_MESSAGE(r.err.find("run-demo: FAILED: the bridge did not start; log: " +
                             (d.data() / "broker-bridge.log").string()) != std::string::npos,
                  r.err);
    CHECK_MESSAGE(r.err.find("cannot listen on 127.0.0.1:" + std::to_string(taken.port())) != std::string::npos, r.err);
    CHECK_MESSAGE(r.err.find("DEMO_HTTP_PORT=") != std::string::npos, r.err);
    CHECK(d.running().empty());  // the broker it had started is stopped
}

TEST_CASE("demo - the broker's port is taken: it fails loudly, names the log and prints no URL") {
    occupied_port taken;
    demo d(free_port(), taken.port());
    const auto r = run(d.dir().path(), d.argv(), 60s);
    CHECK(r.exit_code == 1);
    CHECK_MESSAGE(r.out.find("open http") == std::string::npos, r.out);
    CHECK_MESSAGE(r.err.find("run-demo: FAILED: Mosquitto") != std::string::npos, r.err);
    CHECK_MESSAGE(r.err.find((d.data() / "mosquitto.log").string()) != std::string::npos, r.err);
    CHECK(d.running().empty());
}

TEST_CASE("demo - the URL comes once the bridge is ready, and SIGINT stops everything") {
    const std::uint16_t http = free_port();
    demo d(http, free_port());
    child script(d.argv(), d.dir() / "demo.out", d.dir() / "demo.err");
    const std::string url = "http://127.0.0.1:" + std::to_string(http);
    REQUIRE_MESSAGE(eventually([&] { return script.out().find("run-demo: open " + url) != std::string::npos; }, 30s),
                    script.out() << script.err());
    CHECK(http_get(http, "/readyz").status == 200);
    CHECK(d.running().size() == 4);  // the script, the broker, the bridge, the simulator
    script.signal(SIGINT);
    CHECK(script.wait(30s) == std::optional<int>(0));
    CHECK(d.running().empty());
}
