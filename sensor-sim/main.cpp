// sensor-sim entry point: reads config file and flags, wires signals to the fleet, prints stats.
#include "publisher.hpp"

#include <CLI/CLI.hpp>
#include <MQTTAsync.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <toml++/toml.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <optional>
#include <set>
#include <thread>

namespace {

using telemetry::sim::payload_format;

// Every setting, typed, with its default; the config file fills it, flags then override it.
struct settings {
  telemetry::sim::publisher_options pub;
  double duration_s = 0;         // 0: until SIGINT/SIGTERM
  double report_interval_s = 10;
  bool quiet = false;
  std::string format = "json";
  std::string log_level = "info";
  std::int64_t connect_timeout_s = 10;
  std::int64_t keepalive_s = 30;
  std::int64_t drain_timeout_s = 10;
};

struct config_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Reads a TOML file into `s`; throws config_error naming file:line and key.
void load_config(const std::string& path, settings& s) {
  toml::table tbl;
  try {
    tbl = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    throw config_error(path + ":" + std::to_string(e.source().begin.line) + ": " +
                       std::string(e.description()));
  }
  auto where = [&](const toml::node& n, const std::string& key) {
    return path + ":" + std::to_string(n.source().begin.line) + ": " + key;
  };
  auto get = [&]<class T>(const std::string& key, T& out, const char* type) {
    const toml::node* n = tbl.get(key);
    if (!n) return;
    std::optional<T> v = n->value_exact<T>();
    if constexpr (std::is_same_v<T, double>) {
      if (!v) {
        if (auto i = n->value_exact<std::int64_t>()) v = static_cast<double>(*i);
      }
    }
    if (!v) throw config_error(where(*n, key) + ": expected " + type);
    out = *v;
  };
  static const std::set<std::string> known = {
      "mqtt", "username", "password", "sensors", "rate", "qos", "duration", "seed", "prefix",
      "id_prefix", "metric", "format", "quiet", "report_interval", "buffer", "connect_timeout",
      "keepalive", "drain_timeout", "log_level", "password_file", "ca_file", "cert_file", "key_file",
      "verify", "count"};
  for (const auto& [key, node] : tbl) {
    if (!known.contains(std::string(key.str())))
      throw config_error(where(node, std::string(key.str())) + ": unknown key");
  }
  std::int64_t sensors = s.pub.sensors, qos = s.pub.qos, seed = static_cast<std::int64_t>(s.pub.seed),
               buffer = s.pub.max_buffered, count = static_cast<std::int64_t>(s.pub.count);
  get("mqtt", s.pub.server_uri, "a string");
  get("username", s.pub.login.username, "a string");
  get("password", s.pub.login.password, "a string");
  get("password_file", s.pub.login.password_file, "a string");
  get("cert_file", s.pub.login.cert_file, "a string");
  get("key_file", s.pub.login.key_file, "a string");
  get("ca_file", s.pub.ca_file, "a string");
  get("verify", s.pub.verify, "a boolean");
  get("sensors", sensors, "an integer");
  get("rate", s.pub.rate_hz, "a number");
  get("qos", qos, "an integer");
  get("duration", s.duration_s, "a number");
  get("seed", seed, "an integer");
  get("count", count, "an integer");
  get("prefix", s.pub.topic_prefix, "a string");
  get("id_prefix", s.pub.id_prefix, "a string");
  get("metric", s.pub.metric, "a string");
  get("format", s.format, "a string");
  get("quiet", s.quiet, "a boolean");
  get("report_interval", s.report_interval_s, "a number");
  get("buffer", buffer, "an integer");
  get("connect_timeout", s.connect_timeout_s, "an integer");
  get("keepalive", s.keepalive_s, "an integer");
  get("drain_timeout", s.drain_timeout_s, "an integer");
  get("log_level", s.log_level, "a string");
  auto in_range = [&](const char* key, std::int64_t v, std::int64_t lo, std::int64_t hi) {
    if (v < lo || v > hi)
      throw config_error(where(*tbl.get(key), key) + ": must be " + std::to_string(lo) + ".." +
                         std::to_string(hi));
  };
  if (tbl.contains("sensors")) in_range("sensors", sensors, 1, 100'000);
  if (tbl.contains("qos")) in_range("qos", qos, 0, 1);
  if (tbl.contains("seed")) in_range("seed", seed, 0, INT64_MAX);
  if (tbl.contains("buffer")) in_range("buffer", buffer, 1, 10'000'000);
  if (tbl.contains("count")) in_range("count", count, 0, INT64_MAX);
  s.pub.sensors = static_cast<std::uint32_t>(sensors);
  s.pub.qos = static_cast<int>(qos);
  s.pub.seed = static_cast<std::uint64_t>(seed);
  s.pub.max_buffered = static_cast<int>(buffer);
  s.pub.count = static_cast<std::uint64_t>(count);
}

// The value of --config, found before the full parse so flags can override the file.
std::optional<std::string> find_config_flag(int argc, char** argv) {
  std::optional<std::string> found;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--config" && i + 1 < argc) {
      found = argv[++i];
    } else if (a.starts_with("--config=")) {
      found = std::string(a.substr(9));
    }
  }
  return found;
}

payload_format parse_format(const std::string& f) {
  if (f == "senml") return payload_format::senml;
  if (f == "number") return payload_format::number;
  if (f == "json") return payload_format::json;
  throw config_error("format: expected json, senml or number, got '" + f + "'");
}

}  // namespace

int main(int argc, char** argv) {
  // Paho C takes http_proxy/https_proxy from the environment even when they are set but empty,
  // and then cannot reach the broker at all. Empty means "no proxy": drop them.
  for (const char* v : {"http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"})
    if (const char* s = std::getenv(v); s && !*s) unsetenv(v);
  // Block the stop signals before any thread exists (Paho's included) so that only the
  // signal thread below receives them, synchronously, where it may take locks.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  spdlog::set_default_logger(spdlog::stderr_color_mt("sensor-sim"));  // stdout is for stats

  settings s;
  std::string config_path;
  try {
    if (auto path = find_config_flag(argc, argv)) load_config(*path, s);
  } catch (const config_error& e) {
    std::cerr << "sensor-sim: " << e.what() << '\n';
    return 2;
  }

  CLI::App app{"sensor-sim: simulated temperature sensors publishing over MQTT (and a load generator)"};
  app.option_defaults()->always_capture_default();
  app.add_option("--config", config_path, "TOML config file; flags override it")->check(CLI::ExistingFile);
  app.add_option("--mqtt", s.pub.server_uri, "broker URL: tcp://host:port, or ssl://host:port (mqtts://) for TLS");
  app.add_option("--username", s.pub.login.username,
                 "MQTT user name of each sensor; {id} is the sensor's id. Empty: anonymous, or the "
                 "sensor's id when --password or --password-file is given");
  app.add_option("--password", s.pub.login.password,
                 "MQTT password of every sensor; {id} is the sensor's id (e.g. 'pw-{id}'). Visible "
                 "to other local users in the process list: prefer --password-file");
  app.add_option("--password-file", s.pub.login.password_file,
                 "file of user:password lines (mosquitto_passwd's input); each sensor takes its user's line");
  app.add_option("--ca-file", s.pub.ca_file, "TLS: CA certificates (PEM) trusted for the broker; empty: the system's");
  app.add_option("--cert-file", s.pub.login.cert_file, "TLS: client certificate (PEM); {id} is the sensor's id");
  app.add_option("--key-file", s.pub.login.key_file, "TLS: client private key (PEM); {id} is the sensor's id");
  app.add_flag("--verify,!--no-verify", s.pub.verify,
               "TLS: check the broker's certificate chain and host name (--no-verify: insecure, debugging only)");
  app.add_option("--sensors", s.pub.sensors, "number of simulated sensors, one connection (and MQTT identity) each")
      ->check(CLI::Range(1, 100'000));
  app.add_option("--rate", s.pub.rate_hz, "readings per second per sensor");
  app.add_option("--qos", s.pub.qos, "QoS of readings")->check(CLI::Range(0, 1));
  app.add_option("--duration", s.duration_s, "seconds to run; 0 = until SIGINT/SIGTERM")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--count", s.pub.count,
                 "readings per sensor, then stop; every one is published (late rather than skipped); "
                 "0 = no limit");
  app.add_option("--seed", s.pub.seed, "model seed: same seed, same signals");
  app.add_option("--prefix", s.pub.topic_prefix, "topic prefix");
  app.add_option("--id-prefix", s.pub.id_prefix, "sensor name prefix; sensor i is <prefix><i:04>");
  app.add_option("--metric", s.pub.metric, "metric topic level");
  app.add_option("--format", s.format, "payload format")
      ->check(CLI::IsMember({"json", "senml", "number"}));
  app.add_flag("--quiet,!--no-quiet", s.quiet, "no periodic reports (the final line is always printed)");
  app.add_option("--report-interval", s.report_interval_s, "seconds between stats lines; 0 = none")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--buffer", s.pub.max_buffered,
                 "per sensor: readings buffered while disconnected / in flight")
      ->check(CLI::Range(1, 10'000'000));
  app.add_option("--connect-timeout", s.connect_timeout_s, "seconds to connect at start before giving up");
  app.add_option("--keepalive", s.keepalive_s, "MQTT keepalive, seconds");
  app.add_option("--drain-timeout", s.drain_timeout_s, "seconds to wait for acks at stop");
  app.add_option("--log-level", s.log_level, "trace, debug, info, warn, error, off");
  CLI11_PARSE(app, argc, argv);

  try {
    s.pub.format = parse_format(s.format);
    s.pub.connect_timeout = std::chrono::seconds(s.connect_timeout_s);
    s.pub.keepalive = std::chrono::seconds(s.keepalive_s);
    s.pub.drain_timeout = std::chrono::seconds(s.drain_timeout_s);
    if (s.duration_s < 0) throw config_error("duration: must be >= 0");
    if (s.report_interval_s < 0) throw config_error("report-interval: must be >= 0");
    telemetry::sim::validate(s.pub);
  } catch (const std::exception& e) {
    std::cerr << "sensor-sim: " << e.what() << '\n';
    return 2;
  }
  spdlog::set_level(spdlog::level::from_str(s.log_level));
  if (telemetry::sim::uses_tls(s.pub.server_uri) && !s.pub.verify)
    spdlog::warn("TLS verification is OFF (--no-verify): the broker's certificate and name are not checked; "
                 "anyone on the path can pose as the broker and read the sensors' passwords");

  // Paho C would format a trace line for every packet into its in-memory buffer; its errors
  // still reach our callbacks. MQTT_C_CLIENT_TRACE, its own switch for debugging, keeps its levels.
  if (std::getenv("MQTT_C_CLIENT_TRACE") == nullptr) MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_ERROR);
  std::optional<telemetry::sim::fleet> sim;
  try {
    sim.emplace(s.pub);
  } catch (const std::exception& e) {
    std::cerr << "sensor-sim: " << e.what() << '\n';
    return 2;
  }

  std::atomic<bool> done{false};
  std::thread signal_thread([&] {
    const timespec tick{0, 200'000'000};
    while (!done) {
      const int sig = sigtimedwait(&stop_signals, nullptr, &tick);
      if (sig > 0) {
        spdlog::info("{}: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
        sim->request_stop();
      }
    }
  });

  int rc = 0;
  try {
    sim->connect();
    const auto report = s.quiet ? 0.0 : s.report_interval_s;
    sim->run(std::chrono::duration<double>(s.duration_s), std::chrono::duration<double>(report),
             [](const telemetry::sim::publish_stats& st) { write_stats_line(std::cout, st); });
    sim->shutdown();
    write_stats_line(std::cout, sim->stats());
  } catch (const std::exception& e) {
    std::cerr << "sensor-sim: " << e.what() << '\n';
    rc = 1;
  }
  done = true;
  signal_thread.join();
  return rc;
}
