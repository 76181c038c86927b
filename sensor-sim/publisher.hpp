// MQTT side of sensor-sim: one Paho connection per simulated sensor, a drift-free scheduler, stats.
#pragma once

#include "credentials.hpp"
#include "model.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <ostream>
#include <string>
#include <vector>

namespace telemetry::sim {

enum class payload_format { json, senml, number };

// Everything the publisher needs, already validated by main (see validate()).
struct publisher_options {
  std::string server_uri = "tcp://127.0.0.1:1883";
  // Each sensor's login (credentials.hpp): anonymous unless a user name or password is given.
  credential_settings login;
  // TLS, on for an ssl:// or mqtts:// URL: ca_file is the CAs trusted for the broker (empty: the
  // system's); verify = false skips the certificate chain and host name checks.
  std::string ca_file;
  bool verify = true;
  std::string topic_prefix = "sensors";
  std::string id_prefix = "sim-";
  std::string metric = "temperature";
  std::uint32_t sensors = 20;
  double rate_hz = 1.0;  // per sensor
  int qos = 1;
  payload_format format = payload_format::json;
  std::uint64_t seed = 1;
  // Readings per sensor, then stop (0: no limit). With a count every schedule slot is published,
  // late if need be: nothing is skipped, so a run publishes exactly sensors x count readings
  // (benchmarks compare rounds of equal size).
  std::uint64_t count = 0;
  int max_buffered = 100'000;  // per sensor: Paho's offline buffer and our in-flight window
  std::chrono::seconds connect_timeout{10};
  std::chrono::seconds keepalive{30};
  std::chrono::seconds drain_timeout{10};
};

// An ssl://, mqtts:// or wss:// URL.
[[nodiscard]] bool uses_tls(const std::string& server_uri);

// Throws std::invalid_argument naming the first bad field.
void validate(const publisher_options& opts);

// "sim-0007": zero-padded so names sort in index order.
[[nodiscard]] std::string sensor_id(const std::string& id_prefix, std::uint32_t index);

// One reading's payload in the chosen format (value rounded to 2 decimals).
[[nodiscard]] std::string format_payload(payload_format format, const std::string& sensor,
                                         const std::string& metric, double value_c,
                                         std::int64_t ts_ms, std::int64_t seq);

struct publish_stats {
  std::uint64_t sent = 0;     // handed to Paho
  std::uint64_t acked = 0;    // PUBACK received (QoS 1) or written to the socket (QoS 0)
  std::uint64_t failed = 0;   // Paho gave up on it
  std::uint64_t skipped = 0;  // schedule slots not published: window full or fell too far behind
  std::uint64_t buffered = 0; // sent but neither acked nor failed yet
  std::uint64_t resent = 0;   // handed to Paho again after it dropped them with a lost session
  std::uint32_t connected = 0;
  std::uint32_t sensors = 0;
  double elapsed_s = 0;       // publishing time, excluding the final drain
};

// The key=value line benchmarks and tests parse. Stable field order; new fields go at the end.
void write_stats_line(std::ostream& out, const publish_stats& s);

class sensor_link;

// The simulated fleet: owns every sensor's connection and runs the publishing schedule.
//
// Thread safety: connect(), run() and shutdown() are called from one thread, in that order.
// request_stop() may be called from any thread (the signal thread). stats() is safe anywhere.
class fleet {
 public:
  explicit fleet(publisher_options opts);
  ~fleet();
  fleet(const fleet&) = delete;
  fleet& operator=(const fleet&) = delete;

  // Connects every sensor, retrying until connect_timeout; throws std::runtime_error if any
  // sensor could not connect by then.
  void connect();

  // Publishes on schedule until `duration` has passed (zero: forever), every sensor has
  // published opts.count readings (when set) or request_stop().
  // Calls `report` every `report_interval` (zero: never).
  void run(std::chrono::duration<double> duration, std::chrono::duration<double> report_interval,
           const std::function<void(const publish_stats&)>& report);

  // Waits (bounded by drain_timeout) for in-flight messages, publishes `offline`, disconnects.
  void shutdown();

  // First call ends run(); a second one also cuts shutdown()'s drain short.
  void request_stop() noexcept;

  [[nodiscard]] publish_stats stats() const;

 private:
  using clock = std::chrono::steady_clock;
  bool wait_until(clock::time_point tp);  // false once a stop was requested
  bool flush_backlogs();                  // true while some sensor still has a backlog

  publisher_options opts_;
  std::atomic<bool> retry_flag_{false};  // set by Paho threads; declared before links_, which use it
  std::vector<std::unique_ptr<sensor_link>> links_;
  std::vector<temperature_model> models_;
  std::int64_t seq_base_ = 0;
  std::atomic<std::uint64_t> skipped_{0};
  bool any_backlog_ = false;  // scheduler thread only
  clock::time_point run_start_{};
  std::atomic<std::int64_t> publish_ns_{-1};  // elapsed publishing time once run() returned

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<bool> stop_requested_{false};  // written under mutex_ so waits cannot miss it
  std::atomic<bool> abandon_drain_{false};
};

}  // namespace telemetry::sim
