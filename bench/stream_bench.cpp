// stream-bench: end-to-end latency and throughput of the bridge's streams, Server-Sent Events
// (GET /api/v1/stream), WebSocket (GET /api/v1/ws), gRPC (Telemetry/Subscribe) or long polling
// (GET /api/v1/updates) (bench/stream.sh drives it; see "Streaming (SSE and WebSocket)" and
// "gRPC Subscribe against SSE" in bench/README.md).
//
// One process: N subscribers on raw TCP sockets (Asio, --threads single-threaded io_contexts,
// connections spread round-robin), and one Paho MQTT publisher that publishes
// {"value":21.5,"seq":<system_clock microseconds at publish>} to <prefix>/bench<k>/temperature
// at a fixed rate. The bridge passes `seq` through, so a subscriber's latency for a reading is
// its receive time (system_clock, taken once per recvmsg) minus `seq`: MQTT publish ->
// Mosquitto -> bridge ingest (journal) -> SQLite commit -> hub -> stream write -> our read. The
// kernel's receive timestamp (SO_TIMESTAMPNS) gives a second figure, `k_*`: on loopback, publish
// -> the bridge's write, without our own scheduling delay.
//
//   stream-bench --port P --mqtt URL --subscribers N --rate R[,R2,...] --duration S
//       each rate is one step on the same connections: `warmup` seconds unmeasured, then
//       `duration` seconds measured, then wait until every subscriber has every measured
//       reading (or `drain` seconds without progress). One `RESULT` line per step.
//   stream-bench --port P --subscribers N --idle-hold S
//       open N streams, print `READY`, hold them S seconds, print `RESULT mode=idle ...`.
//   --port P1,P2,...  streams spread round-robin over several bridges (replicas on one database,
//       bench/replicas_stream.sh); the publisher is one, through --mqtt.
//   --transport sse|ws  sse (default): a stream counts once its `retry:` hint arrived; readings
//       are `event: reading` events (request in bench/stream_sse.hpp, parsing by the shared
//       telemetry::sse parser, bridge-cli/sse_parser.hpp). ws: an upgrade without extensions, then
//       {"op":"subscribe","topic":...}; a stream counts once `subscribed` arrived; readings are
//       {"op":"reading",...} text frames; pings are answered (bench/stream_ws.hpp).
//   --transport longpoll  each stream is one keep-alive HTTP/1.1 connection polling
//       GET /api/v1/updates[?topic=...] (--topic, or its sensor's with --narrow), one poll at a
//       time (bench/stream_longpoll.hpp): the first with timeout=0 and no `after` (the bridge's
//       newest id), whose answer makes the stream ready (its `cursor` is where the stream starts:
//       every reading after it is owed); then, at once after each answer, the next with
//       after=<that answer's cursor>&timeout=30. The answer (Content-Length, no Accept-Encoding so
//       never gzipped) is parsed with Boost.JSON; each reading in it counts as an SSE reading
//       does (ids rising strictly, latency = the receipt of the read that completed the answer
//       minus `seq`); an answer without readings (the wait ran out) counts as a heartbeat.
//   --transport grpc --grpc-port P  each stream is a telemetry.v1.Telemetry/Subscribe call (topics
//       [--topic], or its sensor's with --narrow) on gRPC's callback API (bench/stream_grpc.*:
//       ClientReadReactor, --grpc-channels HTTP/2 connections, default one per 100 streams); a
//       stream counts once its initial metadata arrived; a Reading is a reading, timed when gRPC
//       hands it over (no kernel stamp: `k_*` = receipt); `--token` goes as `authorization`
//       metadata; plaintext only (no --tls).
//   --tls [--ca-file CA.pem] [--tls-name localhost]  streams over TLS (https / wss; Asio's
//       ssl::stream over the socket, TLS 1.2+), the server's certificate verified against the CA
//       for the name (also sent as SNI). Reads go through the TLS stream (async_read_some), so
//       the kernel's receive stamp is not available: `k_*` then equal our own receipt times.
//   --token T  `Authorization: Bearer T` on every stream request (SSE GET, WebSocket upgrade, poll).
//   --watch-pid PID[,PID]  CPU seconds (utime+stime) of these processes over each measured
//       window (and per reading delivered), and their VmRSS (idle mode), printed beside our own;
//       also the seconds their threads (and ours) waited runnable for a CPU (`*_runq_wait_s`,
//       from schedstat): on a shared machine, how much the window was queueing for the cores.
//   --sse-query Q  further query parameters on every SSE request, e.g. `bucket=1m` (live
//       aggregates: the streams then get `bucket` events, counted as other_events, not readings;
//       give a short --drain, as the readings they are owed never come).
//   --narrow  subscriber i streams only the topic of sensor i mod --sensors (the dashboard case:
//       one card, one series) instead of --topic; what each stream is owed is counted per sensor.
//   --status-online  the first step starts with the sensors coming online, as after a broker
//       restart: a retained `online` on <prefix>/bench<k>/status for every sensor, then the
//       readings at once (no warm-up). The step reports how soon readings flowed (first reading
//       on any stream, streams with one within --first-within s) and the status events per stream.
//   --path P  SSE from another server at path P instead of the bridge (Nchan's EventSource
//       location, bench/stream_vs_nchan.sh): a stream counts once the 200 head arrived (no
//       `retry:` hint), every plain `data:` event (type `message`) is a reading with the payload
//       as published, and the server's ids are opaque: resent as Last-Event-ID on reconnecting,
//       never checked. Instead `seq` must rise strictly on each stream, which with the per-stream
//       count of measured readings checks that every stream got every reading exactly once.
//   --publish-http URL  POST each reading (same payload, same rate) to URL, e.g. Nchan's publisher
//       location, on one keep-alive HTTP/1.1 connection, instead of MQTT (bench/stream_http_pub.hpp);
//       a 2xx answer counts as the acknowledgement.
//
// A subscriber that the bridge disconnects (slow client) reconnects, unless --no-reconnect, and
// resumes after the last id it saw: SSE with Last-Event-ID, as a browser does; WebSocket with
// "after" in its subscribe message (before any reading: the cursor of its first subscription);
// gRPC with `after` in a new Subscribe call (before any reading: its first `telemetry-after`);
// long polling with the next poll's `after` = the last answer's cursor on a new connection (a
// connection the bridge closes while a poll waits is a disconnect, as a stream's end is).
// Disconnects and reconnects are counted; ids must rise strictly on each stream across them.
#include <CLI/CLI.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <mqtt/async_client.h>

#include "sse_parser.hpp"
#include "stream_http_pub.hpp"
#include "stream_grpc.hpp"
#include "stream_longpoll.hpp"
#include "stream_sse.hpp"
#include "stream_ws.hpp"

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <ctime>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <mutex>
#include <optional>
#include <random>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace sse = stream_bench::sse;
namespace ws = stream_bench::ws;
namespace grpc_sub = stream_bench::grpc_sub;
namespace lp = stream_bench::longpoll;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

std::int64_t now_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

double mono_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double self_cpu_s() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// utime + stime of a process, seconds; -1 when it cannot be read.
double proc_cpu_s(int pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const auto rp = s.rfind(')');
    if (rp == std::string::npos) return -1;
    std::istringstream in(s.substr(rp + 2));
    std::string field;
    double ut = 0, st = 0;
    // Fields after comm: state(3) ... utime(14) stime(15); we start at field 3.
    for (int i = 3; i <= 15 && (in >> field); ++i) {
        if (i == 14) ut = std::stod(field);
        if (i == 15) st = std::stod(field);
    }
    return (ut + st) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// VmRSS of a process in KiB (pid 0: ourselves); -1 when it cannot be read.
long proc_rss_kib(int pid) {
    std::ifstream f(pid == 0 ? std::string("/proc/self/status") : "/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
    return -1;
}

std::int32_t clamp32(std::int64_t v) {
    return static_cast<std::int32_t>(std::clamp<std::int64_t>(v, -1'000'000'000, 2'000'000'000));
}

bool parse_i64(std::string_view s, std::int64_t& out) {
    const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    return r.ec == std::errc{};
}

// The integer after the first `key` (e.g. "\"seq\":") in flat JSON the bridge wrote; false when
// absent or not an integer (null). Values of string fields are escaped, so cannot fake a key.
bool json_int_field(std::string_view json, std::string_view key, std::int64_t& out) {
    const auto k = json.find(key);
    if (k == std::string_view::npos) return false;
    const std::string_view v = json.substr(k + key.size());
    return parse_i64(v.substr(0, v.find_first_of(",}")), out);
}

// The string after the first `key` (which ends with the opening quote, e.g. "\"op\":\""), up to
// the closing quote; empty when absent. For the bridge's fixed words (no escapes in them).
std::string_view json_string_field(std::string_view json, std::string_view key) {
    const auto k = json.find(key);
    if (k == std::string_view::npos) return {};
    const std::string_view v = json.substr(k + key.size());
    return v.substr(0, v.find('"'));
}

// The publisher's sensors are bench0, bench1, ...; a subscriber in --narrow mode streams one.
std::string sensor_name(std::size_t k) { return "bench" + std::to_string(k); }

std::string reading_topic(const std::string& prefix, std::size_t k) {
    return prefix + '/' + sensor_name(k) + "/temperature";
}

// ---- settings and state shared by every connection ----

enum class transport { sse, ws, grpc, longpoll };

using tls_stream = asio::ssl::stream<tcp::socket>;

struct settings {
    std::vector<tcp::endpoint> eps;  // --port: stream i connects to eps[i % size] (replicas)
    transport kind = transport::sse;
    std::string host;
    asio::ssl::context* tls = nullptr;  // --tls: every stream is TLS, verified against --ca-file
    grpc_sub::client* grpc = nullptr;   // --transport grpc: the channels every Subscribe call uses
    std::string tls_name;               // SNI and the name the certificate must carry
    std::string auth_header;            // --token: "Authorization: Bearer <token>\r\n", else empty
    std::string topic = "#";   // the stream's topic filter
    std::string sse_query;     // --sse-query
    std::string request_head;  // "GET ... HTTP/1.1\r\nHost: ...\r\n" without the final CRLF
    std::string prefix = "sensors";
    int sensors = 10;
    bool narrow = false;  // stream i: only sensor i mod `sensors` (else `topic`)
    bool plain = false;   // --path: a generic EventSource server; readings are `message` events
    std::size_t n = 0;
    bool reconnect = true;
    int max_attempts = 5;
};

constexpr int max_steps = 16;

struct shared_state {
    std::atomic<std::size_t> next{0};  // index of the next connection to open
    std::atomic<std::size_t> ready{0};
    std::atomic<std::size_t> failed{0};
    std::atomic<bool> stopping{false};
    std::atomic<int> step{-1};
    std::atomic<std::int64_t> win_start[max_steps];
    std::atomic<std::int64_t> win_end[max_steps];
    shared_state() {
        for (int i = 0; i < max_steps; ++i) {
            win_start[i] = std::numeric_limits<std::int64_t>::max();
            win_end[i] = std::numeric_limits<std::int64_t>::max();
        }
    }
};

class stream_base;

// One single-threaded io_context with its connections and counters. Counters that the main
// thread polls are atomics; everything else is touched only on the context's thread (the main
// thread reads it by posting a task there), or, by gRPC's threads (which deliver the events of
// gRPC streams), only while holding `mu`, which the context's thread holds in on_each.
struct context {
    asio::io_context ioc{1};
    std::mutex mu;
    std::vector<std::shared_ptr<stream_base>> conns;  // touched on the context's thread only
    std::atomic<std::uint64_t> readings{0};   // every reading event received
    std::atomic<std::uint64_t> measured{0};   // readings of the current step's window
    std::atomic<std::int64_t> last_rx_us{0};  // receive time of the last reading
    std::atomic<std::uint64_t> disconnects{0}, reconnects{0}, order_errors{0};
    // heartbeats: SSE comments, WS pings, long polls answered with no reading (the timeout)
    std::uint64_t heartbeats = 0, other_events = 0;
    std::atomic<std::uint64_t> status_events{0};      // polled while draining: they are progress too
    std::int64_t last_status_rx_us = 0;
    std::vector<std::vector<std::int32_t>> lat_us = std::vector<std::vector<std::int32_t>>(max_steps);
    std::vector<std::vector<std::int32_t>> klat_us = std::vector<std::vector<std::int32_t>>(max_steps);
    std::vector<std::vector<std::int32_t>> arrival_us = std::vector<std::vector<std::int32_t>>(max_steps);
    std::atomic<std::uint64_t> no_kernel_ts{0};
    std::mt19937_64 rng{std::random_device{}()};  // WebSocket keys and masks
};

// What every stream counts and checks, whatever its transport: when it is ready, the readings
// of the current step's window and their latencies, ids rising strictly across reconnects,
// presence events. Socket transports call it on their context's thread; gRPC streams on gRPC's
// threads, holding the context's mutex.
class stream_base {
public:
    stream_base(context& c, const settings& s, shared_state& g, std::size_t index)
        : c_(c), s_(s), g_(g), index_(index) {
        if (s_.narrow) {
            sensor_ = index_ % static_cast<std::size_t>(s_.sensors);
            topic_ = reading_topic(s_.prefix, sensor_);
            own_name_ = sensor_name(sensor_);
        }
    }
    virtual ~stream_base() = default;
    stream_base(const stream_base&) = delete;
    stream_base& operator=(const stream_base&) = delete;

    virtual void start() = 0;
    virtual void stop() = 0;
    virtual bool is_open() const = 0;

    bool is_ready() const { return ready_; }
    std::uint64_t measured(int step) const { return step == step_ ? step_measured_ : 0; }
    // Receive time of the first reading of `step`'s window, by our clock and the kernel's; 0 when
    // none arrived.
    std::int64_t first_rx(int step) const { return step == step_ ? step_first_rx_ : 0; }
    std::int64_t first_krx(int step) const { return step == step_ ? step_first_krx_ : 0; }
    // Readings of the window this stream is owed: all of them, or (narrow) its sensor's.
    std::uint64_t owed(const std::vector<long>& per_sensor, long all) const {
        return static_cast<std::uint64_t>(s_.narrow ? per_sensor[sensor_] : all);
    }
    std::uint64_t status_seen() const { return status_seen_; }
    std::uint64_t status_own() const { return status_own_; }

protected:
    // A presence event ({"sensor":...,"online":...}, or the WebSocket message carrying it).
    void on_status(std::string_view json, std::int64_t rx) {
        on_status_of(s_.narrow ? json_string_field(json, "\"sensor\":\"") : std::string_view(), rx);
    }

    // A presence event of `sensor` (only looked at with --narrow).
    void on_status_of(std::string_view sensor, std::int64_t rx) {
        c_.status_events.fetch_add(1, std::memory_order_relaxed);
        c_.last_status_rx_us = std::max(c_.last_status_rx_us, rx);
        ++status_seen_;
        if (s_.narrow && sensor == own_name_) ++status_own_;
    }

    void mark_ready() {
        if (ready_) return;
        ready_ = true;
        g_.ready.fetch_add(1, std::memory_order_relaxed);
        launch_next();
    }

    // Ids must rise strictly on a stream, across its reconnects.
    void on_id(std::int64_t id) {
        if (id <= last_id_) c_.order_errors.fetch_add(1, std::memory_order_relaxed);
        last_id_ = id;
        have_position_ = true;
    }

    // A reading (the Reading JSON, or the WebSocket message that carries its fields).
    void on_reading(std::string_view json, std::int64_t rx, std::int64_t krx) {
        std::int64_t seq = 0;
        if (!json_int_field(json, "\"seq\":", seq)) return;  // seq null: not one of ours
        std::int64_t ts = 0;
        const bool has_ts = index_ == 0 && json_int_field(json, "\"ts\":", ts);  // only stream 0's are kept
        on_reading_seq(seq, has_ts ? std::optional<std::int64_t>(ts) : std::nullopt, rx, krx);
    }

    // A reading published at `seq` (system_clock us): latency from then to our receive time and
    // to the kernel's; `ts_ms`, the bridge's arrival time when the payload had none.
    void on_reading_seq(std::int64_t seq, std::optional<std::int64_t> ts_ms, std::int64_t rx, std::int64_t krx) {
        if (s_.plain) {
            // One publisher, one channel: seq rises on every stream; a repeat is a duplicate.
            if (seq <= last_seq_) c_.order_errors.fetch_add(1, std::memory_order_relaxed);
            last_seq_ = seq;
        }
        c_.readings.fetch_add(1, std::memory_order_relaxed);
        c_.last_rx_us.store(rx, std::memory_order_relaxed);
        const int s = g_.step.load(std::memory_order_relaxed);
        if (s < 0) return;
        if (seq < g_.win_start[s].load(std::memory_order_relaxed) || seq >= g_.win_end[s].load(std::memory_order_relaxed))
            return;
        if (step_ != s) {
            step_ = s;
            step_measured_ = 0;
            step_first_rx_ = rx;
            step_first_krx_ = krx;
        }
        ++step_measured_;
        c_.measured.fetch_add(1, std::memory_order_relaxed);
        c_.lat_us[static_cast<std::size_t>(s)].push_back(clamp32(rx - seq));
        c_.klat_us[static_cast<std::size_t>(s)].push_back(clamp32(krx - seq));
        if (index_ == 0 && ts_ms) {
            // The bridge's arrival time: `ts` (ms) when the payload has none. +500 us: mid-ms.
            c_.arrival_us[static_cast<std::size_t>(s)].push_back(clamp32(*ts_ms * 1000 + 500 - seq));
        }
    }

    // Keeps a bounded number of connection attempts in flight: each ready (or failed)
    // connection opens the next one, on its own context.
    void launch_next();

    // The stream ended (`was_open`: it was delivering). The pause before the next attempt, or
    // none: a ready stream that must not reconnect, or one that never got ready and has used up
    // its attempts (counted as failed; the next connection is opened). Both transports end here.
    std::optional<std::chrono::milliseconds> next_attempt(bool was_open) {
        if (ready_) {
            if (was_open) c_.disconnects.fetch_add(1, std::memory_order_relaxed);
            if (!s_.reconnect) return std::nullopt;
            c_.reconnects.fetch_add(1, std::memory_order_relaxed);
            attempts_ = 0;
            return std::chrono::milliseconds(50);
        }
        if (attempts_ < s_.max_attempts) return std::chrono::milliseconds(200);
        g_.failed.fetch_add(1, std::memory_order_relaxed);
        launch_next();
        return std::nullopt;
    }
    bool out_of_attempts() const { return !ready_ && attempts_ >= s_.max_attempts; }

    context& c_;
    const settings& s_;
    shared_state& g_;
    std::size_t index_;
    bool ready_ = false;
    int attempts_ = 0;  // connection attempts since the stream was last ready
    int step_ = -1;
    std::uint64_t step_measured_ = 0;
    std::int64_t step_first_rx_ = 0, step_first_krx_ = 0;
    std::size_t sensor_ = 0;      // narrow: the one sensor streamed
    std::string topic_;           // narrow: its topic filter
    std::string own_name_;        // narrow: its name, as status events carry it
    std::uint64_t status_seen_ = 0, status_own_ = 0;
    std::int64_t last_id_ = 0;
    std::int64_t last_seq_ = 0;   // plain: the last reading's seq
    bool have_position_ = false;  // last_id_ holds a position to resume from
};

// An SSE, WebSocket or long-poll stream on a TCP socket (or TLS over it), on one context's thread.
// A long-poll stream is one keep-alive connection with one poll at a time: each answer's readings
// are counted as an SSE event's are, then the next poll goes out with after=<the answer's cursor>.
class connection final : public stream_base, public std::enable_shared_from_this<connection> {
public:
    connection(context& c, const settings& s, shared_state& g, std::size_t index)
        : stream_base(c, s, g, index), sock_(c.ioc) {}

    void start() override {
        ++attempts_;
        ++gen_;  // completions of an earlier attempt's socket are ignored from here on
        state_ = st::connecting;
        head_.clear();
        body_.clear();
        answered_ = false;
        // A plain server's ids are opaque: the parser keeps the last one to resume from.
        sse_.reset(s_.plain ? std::string(sse_.last_event_id()) : std::string());
        ws_.reset();
        out_.clear();
        writing_ = false;
        ws_closing_ = false;
        if (s_.tls) {
            // A fresh TLS stream per attempt. The old one is kept alive by its pending handlers
            // (each holds the shared_ptr), which complete with an error once its socket is closed.
            tls_ = std::make_shared<tls_stream>(c_.ioc, *s_.tls);
            tls_->set_verify_mode(asio::ssl::verify_peer);
            tls_->set_verify_callback(asio::ssl::host_name_verification(s_.tls_name));
            // SNI (SSL_set_tlsext_host_name, a macro with an old-style cast, spelled out)
            ::SSL_ctrl(tls_->native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                       const_cast<char*>(s_.tls_name.c_str()));
        } else {
            sock_ = tcp::socket(c_.ioc);
        }
        sock().async_connect(s_.eps[index_ % s_.eps.size()], [self = shared_from_this(), keep = tls_, gen = gen_](boost::system::error_code ec) {
            if (gen == self->gen_) self->on_connect(ec);
        });
    }

    void stop() override {
        boost::system::error_code ignored;
        if (sock().is_open()) {
            sock().set_option(asio::socket_base::linger(true, 0), ignored);  // no TIME_WAIT pile-up
            sock().close(ignored);
        }
        state_ = st::closed;
    }

    // Delivering: an SSE or WebSocket stream past its response head; a long-poll stream once the
    // first poll of this connection was answered, while polls go on.
    bool is_open() const override {
        return state_ == st::body || (answered_ && state_ == st::header);
    }

private:
    enum class st { connecting, header, body, closed };

    // The TCP socket: the plain stream's, or the one under the TLS stream.
    tcp::socket& sock() { return tls_ ? tls_->next_layer() : sock_; }

    void on_connect(boost::system::error_code ec) {
        if (ec) return on_error(ec);
        if (tls_) {
            tls_->async_handshake(asio::ssl::stream_base::client,
                                  [self = shared_from_this(), keep = tls_, gen = gen_](boost::system::error_code e) {
                                      if (gen != self->gen_) return;
                                      if (e) return self->on_error(e);
                                      self->log_tls_once();
                                      self->send_request();
                                      self->do_read();
                                  });
            return;
        }
        const int one = 1;
        ::setsockopt(sock_.native_handle(), SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
        send_request();
        do_read();
    }

    // The negotiated protocol and cipher, once per process (every stream gets the same).
    void log_tls_once() {
        static std::atomic<bool> logged{false};
        if (logged.exchange(true)) return;
        SSL* ssl = tls_->native_handle();
        std::printf("tls: %s %s, server certificate verified for %s\n", ::SSL_get_version(ssl),
                    ::SSL_get_cipher_name(ssl), s_.tls_name.c_str());
    }

    // The stream's request (for long polling: the next poll); the caller reads the answer.
    void send_request() {
        // Long polling: a stream's first poll (no cursor yet) asks for the newest id at once; every
        // later one, on this connection or the next, waits after the cursor of the last answer.
        std::string req = s_.kind == transport::longpoll
                              ? lp::request_head(s_.host, s_.narrow ? topic_ : s_.topic, poll_cursor_,
                                                 poll_cursor_.empty() ? 0 : lp::wait_s)
                          : s_.narrow && s_.kind == transport::sse ? sse::request_head(s_.host, topic_, s_.sse_query)
                                                                   : s_.request_head;
        req += s_.auth_header;
        if (s_.kind == transport::ws) {
            req += ws::key_header(c_.rng);
        } else if (s_.kind == transport::sse && (s_.plain ? !sse_.last_event_id().empty() : last_id_ > 0)) {
            req += "Last-Event-ID: ";
            req += s_.plain ? sse_.last_event_id() : std::to_string(last_id_);
            req += "\r\n";
        }
        req += "\r\n";
        state_ = st::header;
        send(std::move(req));
    }

    // Writes are queued: the request, then (WebSocket) the subscribe message, pongs, a close reply.
    void send(std::string bytes) {
        out_ += bytes;
        if (!writing_) flush();
    }

    void flush() {
        if (out_.empty()) return;
        writing_ = true;
        auto buf = std::make_shared<std::string>(std::move(out_));
        out_.clear();
        auto done = [self = shared_from_this(), buf, keep = tls_, gen = gen_](boost::system::error_code e, std::size_t) {
            if (gen != self->gen_) return;
            self->writing_ = false;
            if (e) return self->on_error(e);
            self->flush();
        };
        if (tls_) asio::async_write(*tls_, asio::buffer(*buf), std::move(done));
        else asio::async_write(sock_, asio::buffer(*buf), std::move(done));
    }

    // Reads with recvmsg to get the kernel's receive timestamp (SO_TIMESTAMPNS, CLOCK_REALTIME)
    // beside our own clock: on loopback the kernel stamps a segment when the bridge's write
    // passes through, so `kernel - seq` is the latency up to the bridge's write and excludes our
    // own scheduling delay. Drains to EAGAIN, then waits for readability (single-threaded
    // io_context: the next epoll_wait runs only after the wait is re-armed, so no edge is lost).
    //
    // Over TLS the kernel's stamp is out of reach (OpenSSL reads the socket into its own buffer):
    // each completed read of the TLS stream (at most one record of plaintext, or what OpenSSL had
    // buffered already) is timed by our clock alone, and counted in `reads_without_kernel_ts`.
    void do_read() {
        if (!buf_) buf_ = std::make_unique<char[]>(buf_size);
        if (tls_) {
            tls_->async_read_some(asio::buffer(buf_.get(), buf_size),
                                  [self = shared_from_this(), keep = tls_, gen = gen_](boost::system::error_code ec,
                                                                                       std::size_t n) {
                                      if (gen == self->gen_) self->on_tls_read(ec, n);
                                  });
            return;
        }
        sock_.async_wait(tcp::socket::wait_read, [self = shared_from_this(), gen = gen_](boost::system::error_code ec) {
            if (gen == self->gen_) self->on_readable(ec);
        });
    }

    void on_readable(boost::system::error_code ec) {
        if (ec) return on_error(ec);
        const int fd = sock_.native_handle();
        for (;;) {
            iovec iov{buf_.get(), buf_size};
            alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(timespec)) * 2];
            msghdr mh{};
            mh.msg_iov = &iov;
            mh.msg_iovlen = 1;
            mh.msg_control = cbuf;
            mh.msg_controllen = sizeof cbuf;
            const ssize_t n = ::recvmsg(fd, &mh, MSG_DONTWAIT);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                return on_error(boost::system::error_code(errno, boost::system::system_category()));
            }
            if (n == 0) return on_error(asio::error::eof);
            const std::int64_t rx = now_us();
            std::int64_t krx = -1;
            for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
                if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
                    timespec ts{};
                    std::memcpy(&ts, CMSG_DATA(cm), sizeof ts);
                    krx = static_cast<std::int64_t>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
                }
            }
            if (krx < 0) c_.no_kernel_ts.fetch_add(1, std::memory_order_relaxed);
            on_bytes(buf_.get(), static_cast<std::size_t>(n), rx, krx < 0 ? rx : krx);
            if (state_ != st::header && state_ != st::body) return;
        }
        do_read();
    }

    void on_tls_read(boost::system::error_code ec, std::size_t n) {
        if (ec) return on_error(ec);
        const std::int64_t rx = now_us();
        c_.no_kernel_ts.fetch_add(1, std::memory_order_relaxed);
        on_bytes(buf_.get(), n, rx, rx);
        if (state_ == st::header || state_ == st::body) do_read();
    }

    void on_bytes(const char* p, std::size_t len, std::int64_t rx, std::int64_t krx) {
        if (state_ == st::body) return on_body(p, len, rx, krx);
        head_.append(p, len);
        const auto end = head_.find("\r\n\r\n");
        if (end == std::string::npos) {
            if (head_.size() > 16384) return on_error(asio::error::message_size);
            return;
        }
        const char* want = s_.kind == transport::ws ? " 101" : " 200";
        if ((head_.rfind("HTTP/1.1", 0) != 0 && head_.rfind("HTTP/1.0", 0) != 0) || head_.compare(8, 4, want) != 0) {
            if (!bad_status_logged_) {
                bad_status_logged_ = true;
                std::fprintf(stderr, "stream-bench: connection %zu: %s\n", index_,
                             head_.substr(0, head_.find("\r\n")).c_str());
            }
            return on_error(asio::error::connection_refused);
        }
        if (s_.kind == transport::longpoll) {
            // The answer's body is Content-Length bytes (the bridge never sends one chunked).
            const auto n = lp::content_length(std::string_view(head_).substr(0, end));
            if (!n || *n > max_poll_body) {
                log_protocol_error(n ? "a long-poll answer over 64 MiB" : "a long-poll answer without Content-Length");
                return on_error(asio::error::invalid_argument);
            }
            body_left_ = *n;
        }
        state_ = st::body;
        const std::string rest = head_.substr(end + 4);
        head_.clear();
        if (s_.plain) mark_ready();  // no `retry:` hint to wait for; the stream is open
        if (s_.kind == transport::ws) {
            // Resuming: `after` = the last id seen (or the cursor the first subscription started
            // at), the WebSocket counterpart of Last-Event-ID.
            std::string frame;
            ws::append_client_frame(frame, ws::opcode::text,
                                    ws::subscribe_message(s_.narrow ? topic_ : s_.topic, have_position_ ? std::optional(last_id_) : std::nullopt),
                                    c_.rng);
            send(std::move(frame));
        }
        if (!rest.empty() || s_.kind == transport::longpoll) on_body(rest.data(), rest.size(), rx, krx);
    }

    void on_body(const char* p, std::size_t n, std::int64_t rx, std::int64_t krx) {
        if (s_.kind == transport::longpoll) return on_poll_body(p, n, rx, krx);
        if (s_.kind == transport::sse) {
            sse_sink sink(*this, rx, krx);
            if (!sse_.feed(std::string_view(p, n), sink) && sse_.overflowed() && state_ == st::body) {
                log_protocol_error("an SSE line or event over the parser's limits");
                on_error(asio::error::message_size);
            }
            return;
        }
        const bool ok = ws_.feed(
            p, n,
            [&](ws::opcode op, std::string_view m) {
                on_ws_message(op, m, rx, krx);
                return state_ == st::body;
            },
            [&](ws::opcode op, std::string_view m) {
                on_ws_control(op, m);
                return state_ == st::body;
            });
        if (!ok && state_ == st::body) {
            log_protocol_error((std::string("WebSocket protocol error: ") + (ws_.error() ? ws_.error() : "?")).c_str());
            on_error(asio::error::invalid_argument);
        }
    }

    // The first protocol error of this stream goes to stderr (the stream then reconnects).
    void log_protocol_error(const char* what) {
        if (protocol_error_logged_) return;
        protocol_error_logged_ = true;
        std::fprintf(stderr, "stream-bench: connection %zu: %s\n", index_, what);
    }

    // ---- long polling: one answer per poll, then the next poll ----

    // Collects the answer's body; once whole, its readings are counted, timed by the read that
    // completed it (as an SSE event is by the read that completes it), and the next poll is sent.
    void on_poll_body(const char* p, std::size_t n, std::int64_t rx, std::int64_t krx) {
        if (n > body_left_) {
            // Nothing was asked for beyond this answer.
            log_protocol_error("bytes after a long-poll answer");
            return on_error(asio::error::invalid_argument);
        }
        body_.append(p, n);
        body_left_ -= n;
        if (body_left_ > 0) return;
        if (const char* why = lp::parse_answer(body_, answer_)) {
            log_protocol_error(why);
            return on_error(asio::error::invalid_argument);
        }
        body_.clear();
        answered_ = true;
        for (const lp::reading& r : answer_.readings) {
            on_id(r.id);
            if (r.seq) on_reading_seq(*r.seq, index_ == 0 ? std::optional<std::int64_t>(r.ts) : std::nullopt, rx, krx);
        }
        // A later poll's wait ran out (not the first poll's timeout=0): the counterpart of a heartbeat.
        if (answer_.readings.empty() && ready_) ++c_.heartbeats;
        if (answer_.reset) ++c_.other_events;
        // The first answer (timeout=0) gives the stream its starting cursor: every reading after
        // it is owed from here on, across reconnects, as after an SSE stream's `retry:`.
        poll_cursor_ = answer_.cursor;
        mark_ready();
        send_request();
    }

    // ---- Server-Sent Events: retry (the stream is open), reading and status events, comments ----

    // Hands the events of one read to the connection with that read's receive times. The parser
    // lends the views without copying them, so this path allocates nothing per event. Stops the
    // read once the connection is no longer streaming (it failed and will reconnect).
    class sse_sink final : public telemetry::sse::handler {
    public:
        sse_sink(connection& conn, std::int64_t rx, std::int64_t krx) : conn_(conn), rx_(rx), krx_(krx) {}
        bool on_event(const telemetry::sse::event& ev) override {
            conn_.on_sse_event(ev, rx_, krx_);
            return conn_.state_ == st::body;
        }
        bool on_retry(std::chrono::milliseconds) override {
            conn_.mark_ready();
            return conn_.state_ == st::body;
        }
        bool on_comment(std::string_view) override {
            ++conn_.c_.heartbeats;
            return true;
        }

    private:
        connection& conn_;
        std::int64_t rx_, krx_;
    };

    void on_sse_event(const telemetry::sse::event& ev, std::int64_t rx, std::int64_t krx) {
        if (s_.plain) {
            if (ev.type == "message") on_reading(ev.data, rx, krx);
            else ++c_.other_events;
            return;
        }
        if (ev.type == "reading") {
            std::int64_t id = 0;
            if (parse_i64(ev.id, id)) on_id(id);
            on_reading(ev.data, rx, krx);
        } else if (ev.type == "status") {
            on_status(ev.data, rx);
        } else {
            ++c_.other_events;
        }
    }

    // ---- WebSocket: {"op":"subscribed"} (the stream is open), {"op":"reading"}, others ----

    void on_ws_message(ws::opcode op, std::string_view m, std::int64_t rx, std::int64_t krx) {
        if (ws_closing_) return;
        if (op != ws::opcode::text) {
            ++c_.other_events;
            return;
        }
        const std::string_view kind = json_string_field(m, "\"op\":\"");
        if (kind == "reading") {
            std::int64_t id = 0;
            if (json_int_field(m, "\"id\":", id)) on_id(id);
            on_reading(m, rx, krx);
        } else if (kind == "subscribed") {
            // The first subscription starts at `cursor`: readings after it are owed from then
            // on, across reconnects.
            std::int64_t cursor = 0;
            // The cursor is `N@E` (docs/api.md 2.1); only its id matters here.
            if (!have_position_ && (json_int_field(m, "\"cursor\":\"", cursor) || json_int_field(m, "\"cursor\":", cursor))) {
                last_id_ = cursor;
                have_position_ = true;
            }
            mark_ready();
        } else if (kind == "status") {
            on_status(m, rx);
        } else {
            ++c_.other_events;
            if (kind == "error" && !ws_error_logged_) {
                ws_error_logged_ = true;
                std::fprintf(stderr, "stream-bench: connection %zu: %.*s\n", index_, static_cast<int>(m.size()), m.data());
            }
        }
    }

    void on_ws_control(ws::opcode op, std::string_view payload) {
        if (op == ws::opcode::ping) {
            ++c_.heartbeats;
            if (ws_closing_) return;
            std::string frame;
            ws::append_client_frame(frame, ws::opcode::pong, payload, c_.rng);
            send(std::move(frame));
        } else if (op == ws::opcode::close) {
            // Echo the status code and wait for the server to end the TCP connection (on_error
            // then counts the disconnect and reconnects).
            if (ws_closing_) return;
            ws_closing_ = true;
            std::string frame;
            ws::append_client_frame(frame, ws::opcode::close, payload.size() >= 2 ? payload.substr(0, 2) : std::string_view(),
                                    c_.rng);
            send(std::move(frame));
        }
    }

    void on_error(boost::system::error_code ec) {
        if (state_ == st::closed) return;
        const bool was_open = is_open();
        boost::system::error_code ignored;
        sock().close(ignored);
        state_ = st::closed;
        if (g_.stopping.load()) return;
        if (out_of_attempts() && !failure_logged_) {
            failure_logged_ = true;
            std::fprintf(stderr, "stream-bench: connection %zu failed: %s\n", index_, ec.message().c_str());
        }
        if (const auto pause = next_attempt(was_open)) retry_later(*pause);
    }

    void retry_later(std::chrono::milliseconds d) {
        if (!timer_) timer_ = std::make_unique<asio::steady_timer>(c_.ioc);
        timer_->expires_after(d);
        timer_->async_wait([self = shared_from_this()](boost::system::error_code ec) {
            if (!ec && !self->g_.stopping.load()) self->start();
        });
    }

    static constexpr std::size_t buf_size = 16384;
    static constexpr std::size_t max_poll_body = 64u << 20;  // 10,000 readings are ~1.5 MB
    tcp::socket sock_;               // plain streams
    std::shared_ptr<tls_stream> tls_;  // TLS streams (--tls), over their own socket
    std::unique_ptr<asio::steady_timer> timer_;
    std::unique_ptr<char[]> buf_;
    std::string head_, out_;
    telemetry::sse::parser sse_;
    ws::frame_reader ws_;
    std::string body_;          // long polling: the answer's body so far
    std::size_t body_left_ = 0;  // long polling: bytes of it still to come
    std::string poll_cursor_;   // long polling: the last answer's cursor (N@E), the next `after`
    lp::answer answer_;         // long polling: the last answer, parsed
    bool answered_ = false;     // long polling: a poll on this connection was answered
    st state_ = st::connecting;
    bool writing_ = false, ws_closing_ = false;
    bool bad_status_logged_ = false, failure_logged_ = false, protocol_error_logged_ = false, ws_error_logged_ = false;
    std::uint64_t gen_ = 0;
};

// A gRPC stream: one telemetry.v1.Telemetry/Subscribe call at a time (bench/stream_grpc.hpp).
// Its events arrive on gRPC's threads and take the context's mutex; gRPC is never called with it
// held, since gRPC may run a reaction of the call inline (a cancel can run the call's end). A
// stream counts once its initial metadata arrived (the subscription is registered); it starts
// after the id in `telemetry-after`. A call that ends is followed by one with `after` = the last
// id seen, the counterpart of SSE's Last-Event-ID. No kernel receive stamp: `k_*` = receipt.
class grpc_connection final : public stream_base,
                              public grpc_sub::handler,
                              public std::enable_shared_from_this<grpc_connection> {
public:
    using stream_base::stream_base;

    void start() override {  // on the context's thread, while no call of this stream runs
        std::optional<std::int64_t> after;
        {
            const std::lock_guard lock(c_.mu);
            ++attempts_;
            if (have_position_) after = last_id_;
        }
        call_ = s_.grpc->subscribe(index_, s_.narrow ? topic_ : s_.topic, after, shared_from_this());
    }

    void stop() override {
        if (call_) call_->cancel();
    }

    bool is_open() const override { return open_; }

    void opened(std::optional<std::int64_t> after) override {
        const std::lock_guard lock(c_.mu);
        open_ = true;
        if (!have_position_ && after) {
            last_id_ = *after;
            have_position_ = true;
        }
        mark_ready();
    }

    void reading(std::int64_t id, std::optional<std::int64_t> seq, std::int64_t ts_ms, std::int64_t rx) override {
        c_.no_kernel_ts.fetch_add(1, std::memory_order_relaxed);
        const std::lock_guard lock(c_.mu);
        on_id(id);
        if (seq) on_reading_seq(*seq, ts_ms, rx, rx);
    }

    void status(std::string_view sensor, std::int64_t rx) override {
        const std::lock_guard lock(c_.mu);
        on_status_of(sensor, rx);
    }

    void heartbeat() override {
        const std::lock_guard lock(c_.mu);
        ++c_.heartbeats;
    }

    void other() override {
        const std::lock_guard lock(c_.mu);
        ++c_.other_events;
    }

    void ended(int code, const std::string& message) override {
        if (g_.stopping.load()) return;
        const std::lock_guard lock(c_.mu);
        const bool was_open = open_;
        open_ = false;
        static std::atomic<bool> logged{false};
        if (code != 0 && !logged.exchange(true))
            std::fprintf(stderr, "stream-bench: gRPC stream %zu ended with status %d: %s (first such end; others not shown)\n",
                         index_, code, message.c_str());
        if (const auto pause = next_attempt(was_open)) retry_later(*pause);
    }

private:
    void retry_later(std::chrono::milliseconds d) {
        asio::post(c_.ioc, [self = shared_from_this(), d] {
            if (!self->timer_) self->timer_ = std::make_unique<asio::steady_timer>(self->c_.ioc);
            self->timer_->expires_after(d);
            self->timer_->async_wait([self](boost::system::error_code ec) {
                if (!ec && !self->g_.stopping.load()) self->start();
            });
        });
    }

    std::shared_ptr<grpc_sub::call> call_;       // the context's thread only
    std::unique_ptr<asio::steady_timer> timer_;  // the context's thread only
    bool open_ = false;
};

void open_connection(context& c, const settings& s, shared_state& g) {
    const std::size_t i = g.next.fetch_add(1);
    if (i >= s.n || g.stopping.load()) return;
    std::shared_ptr<stream_base> conn;
    if (s.kind == transport::grpc) conn = std::make_shared<grpc_connection>(c, s, g, i);
    else conn = std::make_shared<connection>(c, s, g, i);
    c.conns.push_back(conn);
    conn->start();
}

// Posted, so that the next stream opens on the context's thread even when a gRPC thread made this
// one ready (and gRPC is never called with the context's mutex held).
void stream_base::launch_next() {
    asio::post(c_.ioc, [&c = c_, &s = s_, &g = g_] { open_connection(c, s, g); });
}

// Runs f on every context's thread and waits for all.
template <typename F>
void on_each(std::vector<std::unique_ptr<context>>& ctxs, F f) {
    std::vector<std::future<void>> done;
    for (auto& c : ctxs) {
        auto p = std::make_shared<std::promise<void>>();
        done.push_back(p->get_future());
        asio::post(c->ioc, [p, &c = *c, f] {
            {
                const std::lock_guard lock(c.mu);
                f(c);
            }
            p->set_value();
        });
    }
    for (auto& d : done) d.wait();
}

// ---- publisher ----

class ack_counter final : public mqtt::iaction_listener {
public:
    std::atomic<long> ok{0}, failed{0};
    void on_success(const mqtt::token&) override { ok.fetch_add(1, std::memory_order_relaxed); }
    void on_failure(const mqtt::token&) override { failed.fetch_add(1, std::memory_order_relaxed); }
};

// Hands one message to the client; false (counted as failed, the first failure logged) when it
// refuses. A refusal because its queue is full (the broker's Receive Maximum, 20 unacknowledged
// QoS 1 messages per client for Mosquitto, holds messages in it) is waited out for up to a
// second: a burst from our one connection stands for many devices, each with its own allowance,
// so it is delayed, never dropped.
bool publish_one(mqtt::async_client& cli, ack_counter& acks, const mqtt::message_ptr& msg) {
    static std::atomic<bool> logged{false};
    const auto give_up = std::chrono::steady_clock::now() + 1s;
    for (;;) {
        try {
            cli.publish(msg, nullptr, acks);
            return true;
        } catch (const mqtt::exception& e) {
            const int rc = e.get_return_code();
            if ((rc == MQTTASYNC_MAX_BUFFERED_MESSAGES || rc == MQTTASYNC_MAX_MESSAGES_INFLIGHT) &&
                std::chrono::steady_clock::now() < give_up) {
                std::this_thread::sleep_for(50us);
                continue;
            }
            acks.failed.fetch_add(1);
            if (!logged.exchange(true)) std::fprintf(stderr, "stream-bench: publish failed: %s\n", e.what());
            return false;
        }
    }
}

struct pub_result {
    long sent = 0;
    std::vector<long> per_sensor;  // of `sent`, how many went to each sensor
    std::int64_t first_seq = 0, last_seq = 0;
    double late_max_ms = 0;  // worst lag of a publish behind its schedule
};

// Hands one reading (topic, payload) to the publisher: Paho (MQTT) or the HTTP POST client
// (--publish-http, one endpoint for all topics); false when it was not sent.
using publish_fn = std::function<bool(const std::string& topic, const std::string& payload)>;

// Publishes at `rate`/s for `seconds`; seq = system_clock us at publish. A publisher that falls
// `seconds` behind its schedule (the broker acknowledging slower than the rate, the client's
// queue full) stops there, so a step never publishes for more than twice its duration.
pub_result publish_for(const publish_fn& send, const std::string& prefix, int sensors, double rate, double seconds,
                       std::int64_t& sensor_rr) {
    pub_result res;
    res.per_sensor.assign(static_cast<std::size_t>(sensors), 0);
    const auto period = std::chrono::duration<double>(1.0 / rate);
    const auto start = std::chrono::steady_clock::now();
    const auto end = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                 std::chrono::duration<double>(seconds));
    std::string payload;
    for (long i = 0;; ++i) {
        const auto due = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(period * static_cast<double>(i));
        if (due >= end || std::chrono::steady_clock::now() >= end + (end - start)) break;
        std::this_thread::sleep_until(due);
        const double late = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - due).count();
        res.late_max_ms = std::max(res.late_max_ms, late);
        const auto sensor = static_cast<std::size_t>(sensor_rr++ % sensors);
        const std::string topic = reading_topic(prefix, sensor);
        const std::int64_t seq = now_us();
        payload = "{\"value\":21.5,\"seq\":" + std::to_string(seq) + "}";
        if (!send(topic, payload)) continue;
        if (res.sent == 0) res.first_seq = seq;
        res.last_seq = seq;
        ++res.sent;
        ++res.per_sensor[sensor];
    }
    return res;
}

// Every sensor comes online, as sensor-sim does on (re)connecting: a retained `online` at QoS 1
// on <prefix>/bench<k>/status, all at once (after a broker restart they reconnect together).
// Returns how many were handed to the client.
long publish_online(mqtt::async_client& cli, ack_counter& acks, const std::string& prefix, int sensors) {
    long sent = 0;
    for (std::size_t k = 0; k < static_cast<std::size_t>(sensors); ++k)
        if (publish_one(cli, acks, mqtt::make_message(prefix + '/' + sensor_name(k) + "/status", "online", 1, true))) ++sent;
    return sent;
}

struct percentiles {
    double p50 = 0, p99 = 0, max = 0, mean = 0;
    std::size_t n = 0;
};

percentiles summarize(std::vector<std::int32_t>& v) {
    percentiles p;
    p.n = v.size();
    if (v.empty()) return p;
    std::sort(v.begin(), v.end());
    auto at = [&](double q) {
        const auto i = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size()))) - 1;
        return static_cast<double>(v[std::min(i, v.size() - 1)]) / 1000.0;
    };
    p.p50 = at(0.50);
    p.p99 = at(0.99);
    p.max = static_cast<double>(v.back()) / 1000.0;
    double sum = 0;
    for (auto x : v) sum += x;
    p.mean = sum / static_cast<double>(v.size()) / 1000.0;
    return p;
}

// Seconds the threads of a process (pid 0: ourselves) spent runnable but waiting for a CPU, summed
// (the second field of /proc/PID/task/TID/schedstat); -1 when it cannot be read. On a shared
// machine this says how much of a window's latency is queueing for the cores.
double proc_runq_wait_s(int pid) {
    std::error_code ec;
    const std::filesystem::path dir = pid == 0 ? "/proc/self/task" : "/proc/" + std::to_string(pid) + "/task";
    double ns = 0;
    bool any = false;
    for (const auto& t : std::filesystem::directory_iterator(dir, ec)) {
        std::ifstream f(t.path() / "schedstat");
        double on_cpu = 0, waiting = 0;
        if (f >> on_cpu >> waiting) ns += waiting, any = true;
    }
    return any ? ns / 1e9 : -1;
}

struct cpu_snap {
    double self = 0, self_wait = 0;
    std::vector<double> watched, watched_wait;
};

cpu_snap take_cpu(const std::vector<int>& pids) {
    cpu_snap s;
    s.self = self_cpu_s();
    s.self_wait = proc_runq_wait_s(0);
    for (int p : pids) {
        s.watched.push_back(proc_cpu_s(p));
        s.watched_wait.push_back(proc_runq_wait_s(p));
    }
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"stream-bench: SSE / WebSocket / gRPC / long-poll latency, throughput and idle-memory benchmark for broker-bridge"};
    std::string host = "127.0.0.1";
    std::vector<int> ports;
    std::string mqtt_url = "tcp://127.0.0.1:1883";
    std::string prefix = "sensors";
    std::string topic = "#";
    std::string sse_query;
    std::size_t subscribers = 100;
    std::vector<double> rates{100};
    double duration = 10, warmup = 1, drain = 5, drain_max = 30, settle = 1, connect_timeout = 120, idle_hold = 0;
    double first_within = 5;
    int qos = 1, sensors = 10, threads = 1, parallel = 200;
    bool no_reconnect = false, narrow = false, status_online = false;
    std::string transport_name = "sse";
    int grpc_port = 0, grpc_channels = 0;
    std::vector<int> watch;
    bool use_tls = false;
    std::string ca_file, tls_name = "localhost", token;
    std::string path, publish_http;
    app.add_option("--host", host, "bridge HTTP address")->capture_default_str();
    app.add_option("--port", ports, "bridge HTTP port; several (comma-separated): streams spread round-robin")
        ->required()
        ->delimiter(',');
    app.add_option("--mqtt", mqtt_url, "broker URL the bridge reads from")->capture_default_str();
    app.add_option("--prefix", prefix, "topic prefix")->capture_default_str();
    app.add_option("--topic", topic, "the stream's topic filter (empty: none given, i.e. #)")->capture_default_str();
    app.add_option("--transport", transport_name,
                   "sse: GET /api/v1/stream; ws: WebSocket GET /api/v1/ws; grpc: Telemetry/Subscribe on --grpc-port; "
                   "longpoll: GET /api/v1/updates, one poll after another")
        ->capture_default_str()
        ->check(CLI::IsMember({"sse", "ws", "grpc", "longpoll"}));
    app.add_option("--grpc-port", grpc_port, "with --transport grpc: the bridge's gRPC port (plaintext)");
    app.add_option("--grpc-channels", grpc_channels,
                   "with --transport grpc: HTTP/2 connections the streams are spread over (0: one per 100 streams)")
        ->capture_default_str();
    app.add_option("--subscribers,-n", subscribers, "streaming connections")->capture_default_str();
    app.add_option("--rate", rates, "readings/s in total; several (comma-separated) = steps")->delimiter(',');
    app.add_option("--duration", duration, "measured seconds per step")->capture_default_str();
    app.add_option("--warmup", warmup, "unmeasured seconds of publishing before each step")->capture_default_str();
    app.add_option("--drain", drain, "after publishing, give up after this long without progress")->capture_default_str();
    app.add_option("--drain-max", drain_max, "after publishing, give up after this long in all")->capture_default_str();
    app.add_option("--settle", settle, "seconds to wait after connecting")->capture_default_str();
    app.add_option("--connect-timeout", connect_timeout, "seconds to open every connection")->capture_default_str();
    app.add_option("--idle-hold", idle_hold, "idle mode: hold the connections this long, publish nothing");
    app.add_option("--qos", qos, "publish QoS (0 or 1)")->capture_default_str()->check(CLI::Range(0, 1));
    app.add_option("--sensors", sensors, "distinct sensors published to, round-robin")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    app.add_option("--sse-query", sse_query, "further query parameters on SSE requests, e.g. bucket=1m");
    app.add_flag("--narrow", narrow, "subscriber i streams only sensor i mod --sensors (instead of --topic)");
    app.add_flag("--status-online", status_online,
                 "first step: every sensor publishes a retained `online` status, then readings at once (no warm-up)");
    app.add_option("--first-within", first_within, "with --status-online: count streams with a reading within this many s")
        ->capture_default_str();
    app.add_option("--threads", threads, "receiving threads (one io_context each)")->capture_default_str();
    app.add_option("--parallel", parallel, "connection attempts in flight while connecting")->capture_default_str();
    app.add_flag("--no-reconnect", no_reconnect, "do not reconnect streams the bridge closes");
    app.add_flag("--tls", use_tls, "streams over TLS (https/wss), the server certificate verified");
    app.add_option("--ca-file", ca_file, "with --tls: PEM file of the CA to verify against (default: the system's)")
        ->check(CLI::ExistingFile);
    app.add_option("--tls-name", tls_name, "with --tls: SNI, and the name the certificate must carry")->capture_default_str();
    app.add_option("--token", token, "sent as Authorization: Bearer <token> on every stream request");
    app.add_option("--path", path,
                   "SSE from another server at this path (e.g. Nchan's /sub/bench): readings are plain data: events");
    app.add_option("--publish-http", publish_http,
                   "POST readings to this URL (e.g. Nchan's http://127.0.0.1:PORT/pub/bench) instead of MQTT");
    app.add_option("--watch-pid", watch, "report CPU (and idle: VmRSS) of these processes")->delimiter(',');
    CLI11_PARSE(app, argc, argv);
    if (rates.empty() || static_cast<int>(rates.size()) > max_steps) {
        std::fprintf(stderr, "stream-bench: 1..%d rates\n", max_steps);
        return 2;
    }
    const bool idle = idle_hold > 0;
    const bool plain = !path.empty();
    if (plain && (transport_name != "sse" || narrow || !sse_query.empty() || path.front() != '/')) {
        std::fprintf(stderr, "stream-bench: --path is an absolute path, for SSE, without --narrow or --sse-query\n");
        return 2;
    }
    if (!publish_http.empty() && (status_online || narrow)) {
        // One endpoint for every reading: no sensor topics to stream narrowly, no retained status.
        std::fprintf(stderr, "stream-bench: --publish-http goes without --status-online and --narrow\n");
        return 2;
    }
    const bool use_grpc = transport_name == "grpc";
    if (use_grpc && (grpc_port <= 0 || use_tls || !sse_query.empty())) {
        // TLS for gRPC is not implemented here; --sse-query is SSE's.
        std::fprintf(stderr, "stream-bench: --transport grpc needs --grpc-port and goes without --tls and --sse-query\n");
        return 2;
    }
    if (transport_name == "longpoll" && !sse_query.empty()) {
        std::fprintf(stderr, "stream-bench: --sse-query is SSE's; --transport longpoll goes without it\n");
        return 2;
    }
    threads = std::max(1, threads);
    std::setvbuf(stdout, nullptr, _IOLBF, 0);

    settings s;
    for (int port : ports) s.eps.emplace_back(asio::ip::make_address(host), static_cast<unsigned short>(port));
    s.n = subscribers;
    s.reconnect = !no_reconnect;
    s.kind = use_grpc                     ? transport::grpc
             : transport_name == "ws"       ? transport::ws
             : transport_name == "longpoll" ? transport::longpoll
                                            : transport::sse;
    s.host = host;
    s.topic = topic.empty() ? "#" : topic;
    s.prefix = prefix;
    s.sensors = sensors;
    s.narrow = narrow;
    s.plain = plain;
    s.sse_query = sse_query;
    // Long polling builds each poll's head itself (its `after` changes from poll to poll).
    s.request_head = s.kind == transport::ws ? ws::upgrade_head(host)
                     : plain               ? sse::request_head(host, "#", {}, path)
                                           : sse::request_head(host, topic, sse_query);
    if (!token.empty()) s.auth_header = "Authorization: Bearer " + token + "\r\n";
    // One client context for every stream (OpenSSL's SSL_CTX is shared safely between threads).
    std::optional<asio::ssl::context> tls_ctx;
    if (use_tls) {
        tls_ctx.emplace(asio::ssl::context::tls_client);
        tls_ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                             asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                             asio::ssl::context::no_tlsv1_1);
        try {
            if (ca_file.empty()) tls_ctx->set_default_verify_paths();
            else tls_ctx->load_verify_file(ca_file);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "stream-bench: %s: %s\n", ca_file.c_str(), e.what());
            return 2;
        }
        s.tls = &*tls_ctx;
        s.tls_name = tls_name;
    }
    // gRPC: the channels, before any stream; destroyed in shutdown() after the contexts' threads.
    std::unique_ptr<grpc_sub::client> grpc_client;
    if (use_grpc) {
        const int channels = grpc_channels > 0 ? grpc_channels : static_cast<int>((subscribers + 99) / 100);
        grpc_client = std::make_unique<grpc_sub::client>(host + ":" + std::to_string(grpc_port), channels, token);
        s.grpc = grpc_client.get();
        std::printf("grpc: %d channels to %s:%d\n", grpc_client->channels(), host.c_str(), grpc_port);
    }
    shared_state g;

    const long bench_rss0 = proc_rss_kib(0);
    std::vector<long> rss0;
    for (int p : watch) rss0.push_back(proc_rss_kib(p));

    // The publisher first (latency mode), so its connection is not part of any window. MQTT:
    // messages beyond the broker's Receive Maximum wait in the client; room for a whole status
    // burst. HTTP: each POST is answered before the next, so its acknowledgement is counted at once.
    const int max_buffered = std::max(10000, sensors);
    std::unique_ptr<mqtt::async_client> pub;
    std::unique_ptr<stream_bench::http_pub::publisher> http_pub;
    ack_counter acks;
    publish_fn send;
    if (!idle && !publish_http.empty()) {
        try {
            http_pub = std::make_unique<stream_bench::http_pub::publisher>(publish_http);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "stream-bench: %s\n", e.what());
            return 1;
        }
        send = [&http_pub, &acks, &publish_http](const std::string&, const std::string& payload) {
            if (http_pub->post(payload)) {
                acks.ok.fetch_add(1, std::memory_order_relaxed);
                return true;
            }
            acks.failed.fetch_add(1, std::memory_order_relaxed);
            static std::atomic<bool> logged{false};
            if (!logged.exchange(true))
                std::fprintf(stderr, "stream-bench: POST to %s failed: %s\n", publish_http.c_str(),
                             http_pub->error().empty() ? "not a 2xx answer" : http_pub->error().c_str());
            return false;
        };
    } else if (!idle) {
        send = [&pub, &acks, qos](const std::string& to, const std::string& payload) {
            return publish_one(*pub, acks, mqtt::make_message(to, payload, qos, false));
        };
        try {
            pub = std::make_unique<mqtt::async_client>(mqtt_url, "stream-bench-pub-" + std::to_string(getpid()),
                                                       mqtt::create_options(MQTTVERSION_5, max_buffered));
            mqtt::connect_options o;
            o.set_mqtt_version(MQTTVERSION_5);
            o.set_clean_start(true);
            o.set_keep_alive_interval(30s);
            o.set_connect_timeout(10s);
            o.set_max_inflight(65535);
            if (!pub->connect(o)->wait_for(15s)) throw std::runtime_error("connect timed out");
        } catch (const std::exception& e) {
            std::fprintf(stderr, "stream-bench: MQTT connect to %s failed: %s\n", mqtt_url.c_str(), e.what());
            return 1;
        }
    }

    std::vector<std::unique_ptr<context>> ctxs;
    for (int i = 0; i < threads; ++i) ctxs.push_back(std::make_unique<context>());
    std::vector<std::thread> io;
    std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
    for (auto& c : ctxs) guards.push_back(asio::make_work_guard(c->ioc));
    for (auto& c : ctxs) io.emplace_back([&ioc = c->ioc] { ioc.run(); });

    // Connect: `parallel` attempts in flight, spread over the contexts.
    const double t_conn0 = mono_s();
    for (int i = 0; i < parallel; ++i) {
        auto& c = *ctxs[static_cast<std::size_t>(i % threads)];
        asio::post(c.ioc, [&c, &s, &g] { open_connection(c, s, g); });
    }
    while (g.ready.load() + g.failed.load() < subscribers && mono_s() - t_conn0 < connect_timeout)
        std::this_thread::sleep_for(10ms);
    const double connect_s = mono_s() - t_conn0;
    const std::size_t ready = g.ready.load();
    std::printf("connected %zu/%zu streams in %.2f s (failed %zu)\n", ready, subscribers, connect_s, g.failed.load());
    int rc = 0;
    if (ready < subscribers) rc = 1;

    auto shutdown = [&] {
        g.stopping = true;
        on_each(ctxs, [](context& c) {
            for (auto& cn : c.conns) cn->stop();
        });
        guards.clear();
        for (auto& c : ctxs) c->ioc.stop();
        for (auto& t : io) t.join();
        grpc_client.reset();  // waits for the end of every call, whose handlers use the contexts
    };

    if (idle) {
        std::this_thread::sleep_for(std::chrono::duration<double>(settle));
        std::vector<long> rss1;
        for (int p : watch) rss1.push_back(proc_rss_kib(p));
        const long bench_rss1 = proc_rss_kib(0);
        std::printf("READY streams=%zu\n", ready);
        std::this_thread::sleep_for(std::chrono::duration<double>(idle_hold));
        std::size_t open = 0;
        std::mutex mu;
        on_each(ctxs, [&open, &mu](context& c) {
            std::size_t n = 0;
            for (auto& cn : c.conns) n += cn->is_open() ? 1 : 0;
            const std::lock_guard lock(mu);
            open += n;
        });
        std::vector<long> rss2;
        for (int p : watch) rss2.push_back(proc_rss_kib(p));
        std::uint64_t disc = 0;
        for (auto& c : ctxs) disc += c->disconnects.load();
        std::printf("RESULT mode=idle transport=%s tls=%s streams=%zu open_after_hold=%zu hold_s=%.0f connect_s=%.2f disconnects=%" PRIu64
                    " bench_rss_kib=%ld->%ld bench_kib_per_stream=%.2f",
                    transport_name.c_str(), use_tls ? "yes" : "no", ready, open, idle_hold, connect_s, disc, bench_rss0, bench_rss1,
                    ready ? static_cast<double>(bench_rss1 - bench_rss0) / static_cast<double>(ready) : 0.0);
        for (std::size_t i = 0; i < watch.size(); ++i)
            std::printf(" pid%d_rss_kib=%ld->%ld->%ld pid%d_kib_per_stream=%.2f", watch[i], rss0[i], rss1[i], rss2[i],
                        watch[i],
                        ready ? static_cast<double>(rss2[i] - rss0[i]) / static_cast<double>(ready) : 0.0);
        std::printf("\n");
        shutdown();
        return rc;
    }

    std::this_thread::sleep_for(std::chrono::duration<double>(settle));
    std::int64_t sensor_rr = 0;
    long published_total = 0;
    for (std::size_t si = 0; si < rates.size(); ++si) {
        const int step = static_cast<int>(si);
        const double rate = rates[si];
        // Sensors coming online publish their first reading inside the window: no warm-up.
        const bool coming_online = status_online && si == 0;
        // Warm-up: published before the window opens, so never measured.
        if (warmup > 0 && !coming_online) {
            const pub_result w = publish_for(send, prefix, sensors, rate, warmup, sensor_rr);
            published_total += w.sent;  // wait for the warm-up's acks: not counted as this step's
            const double ta = mono_s();
            while (qos > 0 && acks.ok.load() + acks.failed.load() < published_total && mono_s() - ta < 5)
                std::this_thread::sleep_for(1ms);
        }
        std::uint64_t readings0 = 0, disc0 = 0, reco0 = 0, order0 = 0;
        for (auto& c : ctxs) {
            readings0 += c->readings.load();
            disc0 += c->disconnects.load();
            reco0 += c->reconnects.load();
            order0 += c->order_errors.load();
            c->measured.store(0);
        }
        const long acked0 = acks.ok.load(), nacked0 = acks.failed.load();
        g.win_start[step] = now_us();
        g.step = step;
        const cpu_snap cpu0 = take_cpu(watch);
        const double t0 = mono_s();
        const std::int64_t t0_us = now_us();  // the step's first publish (status or reading)
        const long status_sent = coming_online ? publish_online(*pub, acks, prefix, sensors) : 0;
        published_total += status_sent;
        pub_result pr = publish_for(send, prefix, sensors, rate, duration, sensor_rr);
        g.win_end[step] = pr.last_seq + 1;
        published_total += pr.sent;
        const double t_pub = mono_s();
        const double pub_s = t_pub - t0;
        std::atomic<std::uint64_t> owed{0};
        on_each(ctxs, [&](context& c) {
            for (auto& cn : c.conns)
                if (cn->is_ready()) owed.fetch_add(cn->owed(pr.per_sensor, pr.sent), std::memory_order_relaxed);
        });
        const std::uint64_t expected = owed.load();
        // Drain: until every stream has every measured reading, or no progress for `drain` s. A
        // status event is progress too: readings may wait behind a burst of them. With sensors
        // coming online, also until status events stop (1 s without one), so that all are counted.
        std::uint64_t got = 0, last_got = 0, events = 0, last_events = 0;
        double last_progress = mono_s(), last_event = last_progress;
        for (;;) {
            got = 0;
            events = 0;
            for (auto& c : ctxs) {
                got += c->measured.load();
                events += c->status_events.load(std::memory_order_relaxed);
            }
            const double now = mono_s();
            if (events != last_events) last_event = now;
            if (got != last_got || events != last_events) last_progress = now, last_got = got, last_events = events;
            const bool settled = got >= expected && (!coming_online || now - last_event > 1.0);
            if (settled || now - last_progress > drain || now - t_pub > drain_max) break;
            std::this_thread::sleep_for(5ms);
        }
        const cpu_snap cpu1 = take_cpu(watch);
        const double t1 = mono_s();
        std::int64_t last_rx = 0;
        std::uint64_t readings1 = 0, disc1 = 0, reco1 = 0, order1 = 0;
        for (auto& c : ctxs) {
            last_rx = std::max(last_rx, c->last_rx_us.load());
            readings1 += c->readings.load();
            disc1 += c->disconnects.load();
            reco1 += c->reconnects.load();
            order1 += c->order_errors.load();
        }
        // Collect latencies and per-stream completeness on the contexts' threads.
        std::vector<std::int32_t> lat, klat, arr;
        std::size_t short_streams = 0, over_streams = 0;
        std::uint64_t hb = 0, status = 0, other = 0;
        // How soon readings flowed: per stream, its first reading of the window after the step's
        // first publish; and the presence events each stream received (since connecting).
        std::vector<std::int32_t> first_us;
        std::int64_t first_rx = 0, first_krx = 0, last_status_rx = 0;
        std::uint64_t status_min = std::numeric_limits<std::uint64_t>::max(), status_max = 0;
        std::size_t own_status_streams = 0, first_within_n = 0, first_within_k = 0;
        const auto within_us = static_cast<std::int64_t>(first_within * 1e6);
        g.step = -1;  // later arrivals of this window are not counted
        std::mutex mu;
        on_each(ctxs, [&](context& c) {
            const std::lock_guard lock(mu);
            auto& l = c.lat_us[si];
            lat.insert(lat.end(), l.begin(), l.end());
            std::vector<std::int32_t>().swap(l);
            auto& k = c.klat_us[si];
            klat.insert(klat.end(), k.begin(), k.end());
            std::vector<std::int32_t>().swap(k);
            auto& a = c.arrival_us[si];
            arr.insert(arr.end(), a.begin(), a.end());
            for (auto& cn : c.conns) {
                if (!cn->is_ready()) continue;
                const auto m = cn->measured(step);
                const auto want = cn->owed(pr.per_sensor, pr.sent);
                if (m < want) ++short_streams;
                if (m > want) ++over_streams;
                if (const std::int64_t f = cn->first_rx(step); f > 0) {
                    first_us.push_back(clamp32(f - t0_us));
                    if (first_rx == 0 || f < first_rx) first_rx = f;
                    if (f - t0_us <= within_us) ++first_within_n;
                    // The kernel's stamp: when the bridge wrote it, before our own reading delay.
                    const std::int64_t fk = cn->first_krx(step);
                    if (first_krx == 0 || fk < first_krx) first_krx = fk;
                    if (fk - t0_us <= within_us) ++first_within_k;
                }
                status_min = std::min(status_min, cn->status_seen());
                status_max = std::max(status_max, cn->status_seen());
                if (cn->status_own() > 0) ++own_status_streams;
            }
            hb += c.heartbeats;
            other += c.other_events;
            status += c.status_events.load(std::memory_order_relaxed);
            last_status_rx = std::max(last_status_rx, c.last_status_rx_us);
        });
        if (status_min > status_max) status_min = 0;
        const percentiles pf = summarize(first_us);
        const percentiles p = summarize(lat);
        const percentiles pa = summarize(arr);
        const percentiles pk = summarize(klat);
        std::uint64_t no_kts = 0;
        for (auto& c : ctxs) no_kts += c->no_kernel_ts.load();
        const double span_s = std::max(1e-6, static_cast<double>(last_rx - t0_us) / 1e6);
        const double wall = t1 - t0;
        const double deliveries_per_s = static_cast<double>(readings1 - readings0) / span_s;
        const auto ms_after = [](std::int64_t t_us, std::int64_t from_us) {
            return t_us > 0 ? static_cast<double>(t_us - from_us) / 1000.0 : -1.0;
        };
        // Wait for the publisher's acknowledgements (QoS 1) of this step.
        if (qos > 0) {
            const double ta = mono_s();
            while (acks.ok.load() + acks.failed.load() - acked0 - nacked0 < pr.sent + status_sent && mono_s() - ta < 5)
                std::this_thread::sleep_for(5ms);
        }
        std::printf("RESULT mode=latency transport=%s server=%s publisher=%s tls=%s auth=%s step=%d subscribers=%zu rate=%.0f qos=%d publish_s=%.2f published=%ld "
                    "acked=%ld publish_failed=%ld pub_late_max_ms=%.1f expected=%" PRIu64 " received=%" PRIu64
                    " complete=%s short_streams=%zu dup_streams=%zu p50_ms=%.3f p99_ms=%.3f max_ms=%.3f mean_ms=%.3f "
                    "k_p50_ms=%.3f k_p99_ms=%.3f k_max_ms=%.3f reads_without_kernel_ts=%" PRIu64 " "
                    "to_bridge_p50_ms=%.2f to_bridge_p99_ms=%.2f to_bridge_max_ms=%.2f "
                    "deliveries=%" PRIu64 " deliveries_per_s=%.0f offered_per_s=%.0f span_s=%.2f wall_s=%.2f "
                    "disconnects=%" PRIu64 " reconnects=%" PRIu64 " order_errors=%" PRIu64 " heartbeats=%" PRIu64
                    " status_events=%" PRIu64 " other_events=%" PRIu64 " bench_cpu_s=%.2f bench_cpu_pct=%.0f bench_runq_wait_s=%.2f",
                    transport_name.c_str(), plain ? "plain" : "bridge", http_pub ? "http" : "mqtt", use_tls ? "yes" : "no",
                    token.empty() ? "no" : "token", step, ready, rate, qos, pub_s, pr.sent, acks.ok.load() - acked0, acks.failed.load() - nacked0,
                    pr.late_max_ms, expected, got, got == expected ? "yes" : "no", short_streams, over_streams,
                    p.p50, p.p99, p.max, p.mean, pk.p50, pk.p99, pk.max, no_kts, pa.p50, pa.p99, pa.max, readings1 - readings0, deliveries_per_s,
                    rate * static_cast<double>(expected) / static_cast<double>(std::max(1L, pr.sent)), span_s, wall, disc1 - disc0, reco1 - reco0, order1 - order0,
                    hb, status, other, cpu1.self - cpu0.self, 100.0 * (cpu1.self - cpu0.self) / wall, cpu1.self_wait - cpu0.self_wait);
        for (std::size_t i = 0; i < watch.size(); ++i) {
            const double d = cpu1.watched[i] - cpu0.watched[i];
            std::printf(" pid%d_cpu_s=%.2f pid%d_cpu_pct=%.0f pid%d_cpu_us_per_delivery=%.1f pid%d_runq_wait_s=%.2f", watch[i], d,
                        watch[i], 100.0 * d / wall, watch[i],
                        readings1 > readings0 ? d * 1e6 / static_cast<double>(readings1 - readings0) : 0.0, watch[i],
                        cpu1.watched_wait[i] - cpu0.watched_wait[i]);
        }
        // Times are from the step's first publish (with --status-online: the first status).
        const auto share = [ready](std::size_t n) { return ready ? static_cast<double>(n) / static_cast<double>(ready) : 0.0; };
        std::printf(" narrow=%s status_published=%ld first_reading_ms=%.1f first_reading_k_ms=%.1f "
                    "first_reading_after_reading_pub_ms=%.1f "
                    "stream_first_reading_p50_ms=%.1f stream_first_reading_p99_ms=%.1f stream_first_reading_max_ms=%.1f "
                    "streams_without_reading=%zu first_within_s=%g streams_reading_within=%zu streams_reading_within_frac=%.3f "
                    "streams_reading_within_k_frac=%.3f "
                    "status_per_stream_mean=%.1f status_per_stream_min=%" PRIu64 " status_per_stream_max=%" PRIu64
                    " streams_with_own_status=%zu last_status_ms=%.1f",
                    narrow ? "yes" : "no", status_sent, ms_after(first_rx, t0_us), ms_after(first_krx, t0_us),
                    ms_after(first_rx, pr.first_seq), pf.p50, pf.p99, pf.max, ready - first_us.size(), first_within,
                    first_within_n, share(first_within_n), share(first_within_k),
                    ready ? static_cast<double>(status) / static_cast<double>(ready) : 0.0, status_min, status_max,
                    own_status_streams, ms_after(last_status_rx, t0_us));
        std::printf("\n");
        if (got != expected) rc = 1;
        if (si + 1 < rates.size()) std::this_thread::sleep_for(1s);
    }
    try {
        if (pub) pub->disconnect()->wait_for(5s);
    } catch (const std::exception&) {
    }
    shutdown();
    return rc;
}
