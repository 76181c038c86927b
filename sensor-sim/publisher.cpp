// MQTT side of sensor-sim: one Paho async client per sensor, a drift-free scheduler, stats.
#include "publisher.hpp"

#include <mqtt/async_client.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <deque>
#include <fstream>
#include <iomanip>
#include <queue>
#include <stdexcept>
#include <thread>

namespace telemetry::sim {

namespace {

using namespace std::chrono_literals;

// A reading's value with exactly two decimals, never "-0.00".
void append_value(std::string& out, double v) {
  v = std::round(v * 100.0) / 100.0;
  if (v == 0.0) v = 0.0;  // folds -0.0 into 0.0
  char buf[32];
  const auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, 2);
  out.append(buf, res.ptr);
}

// Milliseconds as SenML's seconds with a fraction, exact (no binary float in between).
void append_seconds(std::string& out, std::int64_t ms) {
  const auto q = ms / 1000;
  const auto r = ms % 1000;
  auto secs = r < 0 ? q - 1 : q;
  auto frac = r < 0 ? r + 1000 : r;
  out += std::to_string(secs);
  out += '.';
  out += static_cast<char>('0' + frac / 100);
  out += static_cast<char>('0' + frac / 10 % 10);
  out += static_cast<char>('0' + frac % 10);
}

// Why a connection failed, in words: Paho C++ says only "CONNACK return code" for a refused
// login, and one word for a TLS handshake that failed or a broker that is down.
std::string connect_error(const mqtt::exception& e, const std::string& server_uri) {
  const int code = e.get_reason_code() >= 0x80 ? e.get_reason_code() : e.get_return_code();
  if (code >= 0x80) {
    const char* why = MQTTReasonCode_toString(static_cast<MQTTReasonCodes>(code));
    return std::string("the broker refused the connection: ") + (why ? why : "reason " + std::to_string(code));
  }
  std::string out = e.what();
  if (code == MQTTASYNC_FAILURE && uses_tls(server_uri))
    out += " (the broker is down, or TLS failed: does --ca-file hold the CA of the broker's "
           "certificate, and does that certificate name the URL's host?)";
  return out;
}

}  // namespace

// One simulated sensor's MQTT connection, its backlog and its delivery counters.
//
// Readings go to Paho only while connected and only up to paho_window_ unacknowledged; the
// rest wait in backlog_, ours, in order. Paho's own send-while-disconnected buffer is kept
// (it covers the moments before we learn of a lost connection) but never grows large:
// measured here, each publish into it walks the whole buffer (shared by all clients), so
// 10 sensors x 2000 Hz stalled within a second of a broker restart.
//
// Invariant: sent = acked + failed + (handed to Paho, unresolved) + backlog, and sent - acked -
// failed never exceeds window_: beyond it readings are refused (skipped), never queued
// without bound.
//
// Threads: try_publish/flush and backlog_ belong to the scheduler thread. Paho calls
// on_success/on_failure and the connection handlers on its own thread: they touch atomics and
// start async publishes, never wait (every Paho client of a process shares one
// callback thread: a wait there deadlocks them all).
class sensor_link final : public mqtt::iaction_listener {
 public:
  sensor_link(const publisher_options& opts, std::string id, const credentials& login,
              std::atomic<bool>& retry_flag)
      : retry_flag_(retry_flag),
        id_(std::move(id)),
        reading_topic_(opts.topic_prefix + '/' + id_ + '/' + opts.metric),
        status_topic_(opts.topic_prefix + '/' + id_ + "/status"),
        qos_(opts.qos),
        window_(static_cast<std::uint64_t>(opts.max_buffered)),
        client_(opts.server_uri, id_, make_create_options(opts)) {
    // Version first: set_mqtt_version resets the clean-session flags (Paho C++ 1.2.0).
    conn_opts_.set_mqtt_version(MQTTVERSION_5);
    // Clean start, deliberately, and no session expiry: we resend unacknowledged readings
    // ourselves (on_failure). With a persistent session Paho C 1.3.12 resends them itself on
    // resume, and measured here against a persistent Mosquitto restarted under 10k msg/s,
    // that resend was "malformed" on every reconnect for some clients, which never
    // recovered; with clean start Paho fails them (-11) and we publish them again, and every
    // reading arrived. A publisher-only client keeps nothing else in a session.
    conn_opts_.set_clean_start(true);
    conn_opts_.set_keep_alive_interval(opts.keepalive);
    conn_opts_.set_connect_timeout(5s);
    conn_opts_.set_automatic_reconnect(1s, 30s);
    conn_opts_.set_will(mqtt::will_options(status_topic_, std::string("offline"), 1, true));
    if (!login.username.empty()) {
      conn_opts_.set_user_name(login.username);
      if (!login.password.empty()) conn_opts_.set_password(login.password);
    }
    // Paho refuses an ssl:// URL without TLS options.
    if (uses_tls(opts.server_uri)) {
      mqtt::ssl_options tls;
      if (!opts.ca_file.empty()) tls.set_trust_store(opts.ca_file);  // else OpenSSL's default paths
      if (!login.cert_file.empty()) tls.set_key_store(login.cert_file);
      if (!login.key_file.empty()) tls.set_private_key(login.key_file);
      tls.set_enable_server_cert_auth(opts.verify);  // the chain up to a trusted CA
      tls.set_verify(opts.verify);                   // the certificate names the URL's host
      conn_opts_.set_ssl(std::move(tls));
    }

    client_.set_connected_handler([this](const std::string&) { on_connected(); });
    client_.set_connection_lost_handler([this](const std::string& cause) {
      connected_ = false;
      if (!stopping_) {
        spdlog::warn("{}: connection lost{}{}; buffering readings and reconnecting", id_,
                     cause.empty() ? "" : ": ", cause);
      }
    });
  }

  sensor_link(const sensor_link&) = delete;
  sensor_link& operator=(const sensor_link&) = delete;

  ~sensor_link() override {
    try {
      client_.disable_callbacks();
    } catch (...) {  // destructor: nothing useful left to do with the error
    }
  }

  [[nodiscard]] const std::string& id() const noexcept { return id_; }
  [[nodiscard]] bool connected() const noexcept { return connected_; }
  [[nodiscard]] bool has_backlog() const noexcept { return !backlog_.empty() || has_retry_; }

  mqtt::token_ptr begin_connect() { return client_.connect(conn_opts_); }

  [[nodiscard]] bool has_room() const noexcept { return in_flight() < window_; }

  // Accepts one reading without waiting; false when the window is full (the caller counts it).
  bool try_publish(std::string payload) {
    if (!has_room()) return false;
    sent_.fetch_add(1, std::memory_order_relaxed);
    backlog_.push_back(mqtt::make_message(reading_topic_, std::move(payload), qos_, false));
    flush();
    return true;
  }

  // Hands backlog to Paho while connected and its share of unacknowledged readings is small.
  void flush() {
    if (has_retry_) take_retries();
    while (!backlog_.empty() && connected_ && with_paho() < paho_window_) {
      handed_.fetch_add(1, std::memory_order_relaxed);  // before: the ack may beat publish()
      try {
        client_.publish(backlog_.front(), nullptr, *this);
      } catch (const mqtt::exception& e) {
        if (not_sent_yet(e.get_return_code())) {
          // Paho did not take it (the connection just went, or its queues are full): it stays
          // first in the backlog and goes at the next flush, as on_failure's resends do.
          handed_.fetch_sub(1, std::memory_order_relaxed);
          break;
        }
        count_failure(e.get_return_code(), 0);
      }
      backlog_.pop_front();
    }
  }

  // Ends the session politely: `offline` first, so subscribers see it even though a normal
  // DISCONNECT suppresses the will.
  mqtt::delivery_token_ptr publish_offline() {
    stopping_ = true;
    return client_.publish(status_topic_, "offline", 7, 1, true);
  }

  mqtt::token_ptr disconnect() { return client_.disconnect(1000); }

  [[nodiscard]] std::uint64_t sent() const noexcept { return sent_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t acked() const noexcept { return acked_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t failed() const noexcept { return failed_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t resent() const noexcept { return resent_.load(std::memory_order_relaxed); }
  // Completions are read before the counters they are subtracted from, which only grow, so
  // these differences never underflow.
  [[nodiscard]] std::uint64_t in_flight() const noexcept {
    const auto done = acked() + failed();
    return sent() - done;
  }

 private:
  // Enough to keep the pipe full (Mosquitto allows 20 unacknowledged per client by default),
  // small enough that Paho's scans stay cheap: all clients share one command queue, which
  // its send thread walks per command under a global lock. Measured here with 1000: a 100k
  // backlog after a broker restart froze publishing for seconds.
  static constexpr std::uint64_t paho_window_ = 64;

  [[nodiscard]] std::uint64_t with_paho() const noexcept {
    const auto done = acked() + failed();
    const auto handed = handed_.load(std::memory_order_relaxed);
    return handed > done ? handed - done : 0;
  }

  // Puts readings Paho gave back in front of the backlog: they are the oldest.
  void take_retries() {
    std::vector<mqtt::const_message_ptr> back;
    {
      std::lock_guard lock(retry_mutex_);
      back.swap(retry_);
      has_retry_ = false;
    }
    backlog_.insert(backlog_.begin(), back.begin(), back.end());
  }

  static mqtt::create_options make_create_options(const publisher_options& opts) {
    mqtt::create_options c(MQTTVERSION_5);
    // Buffer while disconnected (after the first connect) so a reading handed over just as
    // the connection drops is not lost; never drop the oldest.
    c.set_send_while_disconnected(true, false);
    c.set_max_buffered_messages(opts.max_buffered);
    c.set_delete_oldest_messages(false);
    return c;
  }

  void on_connected() {
    const bool first = !ever_connected_.exchange(true);
    connected_ = true;
    if (stopping_) return;
    if (first) {
      spdlog::debug("{}: connected", id_);
    } else {
      spdlog::info("{}: reconnected", id_);
    }
    try {
      // Retained, so a dashboard that subscribes later still learns the sensor is up.
      client_.publish(status_topic_, "online", 6, 1, true);
    } catch (const std::exception& e) {
      spdlog::error("{}: cannot publish online status: {}", id_, e.what());
    }
  }

  void on_success(const mqtt::token&) override { acked_.fetch_add(1, std::memory_order_relaxed); }

  void on_failure(const mqtt::token& tok) override {
    try {
      // On reconnect (clean start, see the constructor) Paho fails the readings that were
      // awaiting PUBACK (-11, operation incomplete); one being written when the socket broke
      // fails too (-1). Neither was refused by the broker (no MQTT reason
      // code), so the same message goes again: same seq and ts, the bridge stores it once.
      // It goes back through the scheduler thread: calling into Paho from inside its
      // connection-loss handling crashed once here.
      const auto* dtok = dynamic_cast<const mqtt::delivery_token*>(&tok);
      const bool refused = static_cast<int>(tok.get_reason_code()) >= 0x80;
      if (dtok && dtok->get_message() && !refused && !stopping_) {
        {
          std::lock_guard lock(retry_mutex_);
          retry_.push_back(dtok->get_message());
          has_retry_ = true;
        }
        handed_.fetch_sub(1, std::memory_order_relaxed);
        resent_.fetch_add(1, std::memory_order_relaxed);
        retry_flag_ = true;
        return;
      }
    } catch (const std::exception& e) {
      spdlog::debug("{}: cannot queue resend: {}", id_, e.what());
    }
    count_failure(tok.get_return_code(), static_cast<int>(tok.get_reason_code()));
  }

  // Paho's return codes of a publish it refused for now, not for good.
  static bool not_sent_yet(int rc) noexcept {
    return rc == MQTTASYNC_FAILURE || rc == MQTTASYNC_DISCONNECTED || rc == MQTTASYNC_NO_MORE_MSGIDS ||
           rc == MQTTASYNC_OPERATION_INCOMPLETE || rc == MQTTASYNC_MAX_BUFFERED_MESSAGES;
  }

  void count_failure(int rc, int reason) noexcept {
    const auto n = failed_.fetch_add(1, std::memory_order_relaxed);
    if (n % 10'000 == 0) {  // a log line per failure would drown the terminal under load
      spdlog::error("{}: reading not delivered (rc {}, reason {}; failures so far: {})", id_, rc,
                    reason, n + 1);
    }
  }

  std::atomic<bool>& retry_flag_;  // the fleet's "some link has retries" hint
  std::string id_;
  std::string reading_topic_;
  std::string status_topic_;
  int qos_;
  std::uint64_t window_;
  std::deque<mqtt::const_message_ptr> backlog_;
  std::mutex retry_mutex_;
  std::vector<mqtt::const_message_ptr> retry_;  // guarded by retry_mutex_
  std::atomic<bool> has_retry_{false};
  std::atomic<std::uint64_t> sent_{0};
  std::atomic<std::uint64_t> handed_{0};
  std::atomic<std::uint64_t> acked_{0};
  std::atomic<std::uint64_t> failed_{0};
  std::atomic<std::uint64_t> resent_{0};
  std::atomic<bool> connected_{false};
  std::atomic<bool> ever_connected_{false};
  std::atomic<bool> stopping_{false};
  // Declared last so it is destroyed first: its callbacks use the members above.
  mqtt::async_client client_;
  mqtt::connect_options conn_opts_;
};

void validate(const publisher_options& opts) {
  auto fail = [](const std::string& what) { throw std::invalid_argument(what); };
  auto topic_level_ok = [](const std::string& s, std::size_t max_len) {
    return !s.empty() && s.size() <= max_len &&
           std::all_of(s.begin(), s.end(), [](char c) {
             return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
           });
  };
  if (opts.server_uri.empty()) fail("mqtt: empty broker URL");
  const bool tls = uses_tls(opts.server_uri);
  if (!tls && !(opts.server_uri.starts_with("tcp://") || opts.server_uri.starts_with("mqtt://") ||
                opts.server_uri.starts_with("ws://")))
    fail("mqtt: expected tcp://HOST:PORT, or ssl:// / mqtts:// for TLS");
  // TLS settings with a plain URL: the user expects TLS and would not get it.
  if (!tls && (!opts.ca_file.empty() || !opts.login.cert_file.empty() || !opts.login.key_file.empty()))
    fail("ca-file/cert-file/key-file: set, but the broker URL " + opts.server_uri +
         " is not TLS (use ssl://HOST:PORT or mqtts://HOST:PORT)");
  if (!opts.ca_file.empty() && !std::ifstream(opts.ca_file)) fail("ca-file: cannot read '" + opts.ca_file + "'");
  if (!opts.login.key_file.empty() && opts.login.cert_file.empty()) fail("key-file: set without cert-file");
  if (opts.sensors < 1 || opts.sensors > 100'000) fail("sensors: must be 1..100000");
  // At most 1 MHz per sensor keeps seq <= ts in microseconds (see fleet::run).
  if (!(opts.rate_hz > 0.0) || opts.rate_hz > 1e6) fail("rate: must be > 0 and <= 1000000 Hz");
  if (opts.qos != 0 && opts.qos != 1) fail("qos: must be 0 or 1");
  if (opts.topic_prefix.empty() || opts.topic_prefix.find_first_of("+#") != std::string::npos ||
      opts.topic_prefix.front() == '/' || opts.topic_prefix.back() == '/')
    fail("prefix: must be a non-empty topic without wildcards or leading/trailing '/'");
  // The sensor name is id-prefix + 4+ digits and must stay one valid topic level.
  if (!opts.id_prefix.empty() && !topic_level_ok(opts.id_prefix, 54))
    fail("id-prefix: only [A-Za-z0-9_.-], at most 54 characters");
  if (!topic_level_ok(opts.metric, 64) || opts.metric == "status")
    fail("metric: one topic level of [A-Za-z0-9_.-], not 'status'");
  if (opts.max_buffered < 1) fail("buffer: must be >= 1");
  if (opts.connect_timeout.count() < 1) fail("connect-timeout: must be >= 1 s");
  if (opts.keepalive.count() < 1 || opts.keepalive.count() > 65535) fail("keepalive: must be 1..65535 s");
  if (opts.drain_timeout.count() < 0) fail("drain-timeout: must be >= 0 s");
}

bool uses_tls(const std::string& server_uri) {
  return server_uri.starts_with("ssl://") || server_uri.starts_with("mqtts://") || server_uri.starts_with("wss://");
}

std::string sensor_id(const std::string& id_prefix, std::uint32_t index) {
  std::string digits = std::to_string(index);
  if (digits.size() < 4) digits.insert(0, 4 - digits.size(), '0');
  return id_prefix + digits;
}

std::string format_payload(payload_format format, const std::string& sensor,
                           const std::string& metric, double value_c, std::int64_t ts_ms,
                           std::int64_t seq) {
  std::string out;
  out.reserve(96);
  switch (format) {
    case payload_format::json:
      out += "{\"value\":";
      append_value(out, value_c);
      out += ",\"ts\":";
      out += std::to_string(ts_ms);
      out += ",\"seq\":";
      out += std::to_string(seq);
      out += ",\"unit\":\"Cel\"}";
      break;
    case payload_format::senml:
      // Names are [A-Za-z0-9_.-] (validated), so they need no JSON escaping.
      out += "[{\"bn\":\"";
      out += sensor;
      out += "/\",\"n\":\"";
      out += metric;
      out += "\",\"u\":\"Cel\",\"v\":";
      append_value(out, value_c);
      out += ",\"t\":";
      append_seconds(out, ts_ms);
      out += "}]";
      break;
    case payload_format::number:
      append_value(out, value_c);
      break;
  }
  return out;
}

void write_stats_line(std::ostream& out, const publish_stats& s) {
  const double rate = s.elapsed_s > 0 ? static_cast<double>(s.sent) / s.elapsed_s : 0.0;
  out << "sent=" << s.sent << " acked=" << s.acked << " failed=" << s.failed
      << " buffered=" << s.buffered << std::fixed << std::setprecision(1)
      << " elapsed_s=" << s.elapsed_s << " rate_hz=" << rate << " skipped=" << s.skipped
      << " connected=" << s.connected << " sensors=" << s.sensors << " resent=" << s.resent << std::defaultfloat << '\n'
      << std::flush;  // tests read it through a pipe
}

fleet::fleet(publisher_options opts) : opts_(std::move(opts)) {
  validate(opts_);
  const credential_source logins(opts_.login);
  links_.reserve(opts_.sensors);
  models_.reserve(opts_.sensors);
  for (std::uint32_t i = 0; i < opts_.sensors; ++i) {
    const auto id = sensor_id(opts_.id_prefix, i);
    const auto login = logins.for_sensor(id);
    for (const auto& [what, file] : {std::pair{"cert_file", &login.cert_file}, std::pair{"key_file", &login.key_file}})
      if (!file->empty() && !std::ifstream(*file))
        throw std::invalid_argument(std::string(what) + ": cannot read '" + *file + "' (sensor " + id + ")");
    links_.push_back(std::make_unique<sensor_link>(opts_, id, login, retry_flag_));
    models_.emplace_back(opts_.seed, i);
  }
}

fleet::~fleet() = default;

void fleet::connect() {
  const auto deadline = clock::now() + opts_.connect_timeout;
  std::vector<mqtt::token_ptr> pending(links_.size());
  // Start every connection at once so N sensors take one round trip, not N.
  for (std::size_t i = 0; i < links_.size(); ++i) {
    try {
      pending[i] = links_[i]->begin_connect();
    } catch (const mqtt::exception& e) {
      spdlog::debug("{}: connect: {}", links_[i]->id(), e.what());
    }
  }
  for (std::size_t i = 0; i < links_.size(); ++i) {
    std::string last_error = "timed out";
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
      try {
        if (pending[i] && pending[i]->wait_for(std::max(left, 1ms))) break;
      } catch (const mqtt::exception& e) {
        last_error = connect_error(e, opts_.server_uri);
        pending[i].reset();
      }
      if (clock::now() >= deadline || stop_requested_) {
        throw std::runtime_error("cannot connect " + links_[i]->id() + " to " + opts_.server_uri +
                                 " within " + std::to_string(opts_.connect_timeout.count()) +
                                 " s: " + last_error);
      }
      // The broker may be starting alongside us: retry until the deadline.
      std::this_thread::sleep_for(std::min<clock::duration>(500ms, deadline - clock::now()));
      try {
        if (!pending[i]) pending[i] = links_[i]->begin_connect();
      } catch (const mqtt::exception& e) {
        last_error = connect_error(e, opts_.server_uri);
      }
    }
  }
  spdlog::info("{} sensors connected to {}", links_.size(), opts_.server_uri);
}

bool fleet::flush_backlogs() {
  // Skipped entirely in the common case, so a large fleet does not pay a scan per reading.
  if (retry_flag_.exchange(false)) any_backlog_ = true;
  if (!any_backlog_) return false;
  bool any = false;
  for (auto& l : links_) {
    l->flush();
    any = any || l->has_backlog();
  }
  any_backlog_ = any;
  return any;
}

bool fleet::wait_until(clock::time_point tp) {
  std::unique_lock lock(mutex_);
  wake_.wait_until(lock, tp, [this] { return stop_requested_.load(); });
  return !stop_requested_;
}

void fleet::request_stop() noexcept {
  {
    std::lock_guard lock(mutex_);
    if (stop_requested_) abandon_drain_ = true;
    stop_requested_ = true;
  }
  wake_.notify_all();
}

void fleet::run(std::chrono::duration<double> duration,
                std::chrono::duration<double> report_interval,
                const std::function<void(const publish_stats&)>& report) {
  using std::chrono::duration_cast;
  using std::chrono::microseconds;
  using std::chrono::nanoseconds;

  const auto n = static_cast<std::uint32_t>(links_.size());
  const double period_ns = 1e9 / opts_.rate_hz;
  run_start_ = clock::now();
  const auto sys_start_us =
      duration_cast<microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  // seq scheme: series counters start at this run's start time in epoch microseconds and add
  // one per schedule slot. Slot k is due at start + (k + phase) periods and a period is at
  // least 1 us (rate <= 1 MHz), so run_start_us <= seq <= ts_us for every reading. A later
  // run starts after every ts of an earlier one, so its seqs are all larger: a restarted
  // simulator never repeats a (seq, ts) pair, nor even a seq, as long as the wall clock does
  // not step back. Skipped slots leave gaps, which is honest: those readings never existed.
  seq_base_ = sys_start_us;

  // Absolute due times computed from the slot number, never by adding periods up, so there is
  // no drift; sensor i is offset by i/n of a period to spread the load evenly.
  auto due_of = [&](std::uint32_t i, std::int64_t k) {
    const double offset = (static_cast<double>(k) + static_cast<double>(i) / n) * period_ns;
    return run_start_ + nanoseconds(std::llround(offset));
  };
  // Beyond this lag a sensor skips to the present rather than bursting stale readings.
  const auto max_lag = std::max<clock::duration>(1s, nanoseconds(std::llround(2 * period_ns)));
  const auto end = duration.count() > 0
                       ? run_start_ + duration_cast<clock::duration>(duration)
                       : clock::time_point::max();
  const auto report_every = duration_cast<clock::duration>(report_interval);
  constexpr auto backlog_poll = 5ms;
  auto next_report = report_every.count() > 0 ? run_start_ + report_every : clock::time_point::max();

  struct slot {
    clock::time_point due;
    std::uint32_t sensor;
    std::int64_t k;
    bool operator>(const slot& o) const noexcept { return due > o.due; }
  };
  const bool counted = opts_.count > 0;
  std::priority_queue<slot, std::vector<slot>, std::greater<>> queue;
  for (std::uint32_t i = 0; i < n; ++i) queue.push({due_of(i, 0), i, 0});

  while (!stop_requested_.load(std::memory_order_relaxed)) {
    const auto now = clock::now();
    if (now >= end) break;
    if (now >= next_report) {
      report(stats());
      next_report = std::max(next_report + report_every, now);
    }
    const bool backlog = flush_backlogs();
    const slot top = queue.top();
    if (top.due > now) {
      // A backlog is drained in steps as acks come in; poll for them while one exists.
      const auto poll = backlog ? now + backlog_poll : clock::time_point::max();
      wait_until(std::min({top.due, next_report, end, poll}));
      continue;
    }
    queue.pop();
    std::int64_t k = top.k;
    auto due = top.due;
    if (counted) {
      // Exact-count mode: a late slot is published late (its ts stays its slot's time), and a
      // full window means waiting for acks, never skipping.
      due = due_of(top.sensor, k);
      if (!links_[top.sensor]->has_room()) {
        queue.push({now + backlog_poll, top.sensor, k});
        any_backlog_ = true;
        continue;
      }
    } else if (now - due > max_lag) {
      const double behind_slots =
          static_cast<double>(duration_cast<nanoseconds>(now - run_start_).count()) / period_ns -
          static_cast<double>(top.sensor) / n;
      const auto k_now = std::max(k, static_cast<std::int64_t>(std::floor(behind_slots)));
      skipped_.fetch_add(static_cast<std::uint64_t>(k_now - k), std::memory_order_relaxed);
      k = k_now;
      due = due_of(top.sensor, k);
    }
    const auto ts_us = sys_start_us + duration_cast<microseconds>(due - run_start_).count();
    const auto ts_ms = ts_us >= 0 ? ts_us / 1000 : (ts_us - 999) / 1000;
    const double value = models_[top.sensor].value_at(microseconds(ts_us));
    auto payload = format_payload(opts_.format, links_[top.sensor]->id(), opts_.metric, value,
                                  ts_ms, seq_base_ + k);
    auto& link = *links_[top.sensor];
    if (!link.try_publish(std::move(payload))) {
      skipped_.fetch_add(1, std::memory_order_relaxed);
    }
    if (link.has_backlog()) any_backlog_ = true;
    if (counted && static_cast<std::uint64_t>(k + 1) >= opts_.count) {
      if (queue.empty()) break;  // every sensor has published its count
      continue;
    }
    queue.push({due_of(top.sensor, k + 1), top.sensor, k + 1});
  }
  publish_ns_ = duration_cast<nanoseconds>(clock::now() - run_start_).count();
}

void fleet::shutdown() {
  const auto drain_deadline = clock::now() + opts_.drain_timeout;
  auto in_flight = [this] {
    std::uint64_t sum = 0;
    for (const auto& l : links_) sum += l->in_flight();
    return sum;
  };
  // QoS 1 readings still in flight would be lost with the process: give them a bounded wait.
  while (in_flight() > 0 && clock::now() < drain_deadline && !abandon_drain_) {
    flush_backlogs();
    std::this_thread::sleep_for(5ms);
  }
  if (const auto left = in_flight(); left > 0) {
    spdlog::warn("stopping with {} readings not acknowledged", left);
  }

  std::vector<mqtt::token_ptr> tokens;
  for (auto& l : links_) {
    try {
      tokens.push_back(l->publish_offline());
    } catch (const mqtt::exception& e) {
      spdlog::warn("{}: cannot publish offline status: {}", l->id(), e.what());
    }
  }
  const auto status_deadline = std::max(drain_deadline, clock::now()) + 2s;
  for (auto& t : tokens) {
    try {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(status_deadline - clock::now());
      if (!abandon_drain_) t->wait_for(std::max(left, 1ms));
    } catch (const mqtt::exception& e) {
      spdlog::warn("offline status not delivered: {}", e.what());
    }
  }
  tokens.clear();
  for (auto& l : links_) {
    try {
      tokens.push_back(l->disconnect());
    } catch (const mqtt::exception& e) {
      spdlog::debug("{}: disconnect: {}", l->id(), e.what());
    }
  }
  for (auto& t : tokens) {
    try {
      t->wait_for(2s);
    } catch (const mqtt::exception& e) {
      spdlog::debug("disconnect: {}", e.what());
    }
  }
}

publish_stats fleet::stats() const {
  publish_stats s;
  for (const auto& l : links_) {
    // Completions before sends, as in sensor_link::in_flight(), so buffered never underflows.
    const auto acked = l->acked();
    const auto failed = l->failed();
    const auto sent = l->sent();
    s.acked += acked;
    s.failed += failed;
    s.sent += sent;
    s.resent += l->resent();
    s.buffered += sent - acked - failed;
    if (l->connected()) ++s.connected;
  }
  if (opts_.qos == 0) s.acked = s.sent - s.failed;  // nothing to acknowledge at QoS 0
  s.skipped = skipped_.load(std::memory_order_relaxed);
  s.sensors = static_cast<std::uint32_t>(links_.size());
  const auto ns = publish_ns_.load();
  const auto elapsed = ns >= 0 ? std::chrono::nanoseconds(ns)
                               : (run_start_ == clock::time_point{} ? clock::duration::zero()
                                                                     : clock::now() - run_start_);
  s.elapsed_s = std::chrono::duration<double>(elapsed).count();
  return s;
}

}  // namespace telemetry::sim
