// Wires the bridge together: storage -> ingest -> hub -> HTTP, and runs it until a signal.
#include "bridge.hpp"

#include "core/auth.hpp"
#include "grpc/grpc_server.hpp"

#include "pipeline/committer.hpp"
#include "pipeline/hub_feed.hpp"
#include "pipeline/store_tailer.hpp"
#include "pipeline/stores.hpp"
#include "net/listener.hpp"
#include "net/tls_identity.hpp"
#include "pipeline/catch_up.hpp"
#include "http/router.hpp"
#include "live/hub.hpp"
#include "pipeline/ingest.hpp"
#include "core/metrics.hpp"
#include "pipeline/query_pool.hpp"
#include "pipeline/retention_worker.hpp"
#include "republish/mqtt_republisher.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <spdlog/spdlog.h>

#include <functional>
#include <future>
#include <thread>

namespace telemetry::bridge {

namespace asio = boost::asio;

namespace {

// Queued storage queries beyond this are refused with 503 rather than queued without bound.
constexpr std::size_t max_queued_queries = 1024;
constexpr std::size_t committer_max_pending = 100'000;  // committer default (docs/api.md 1.5)


// The HTTP listener; when its address cannot be used, the error also says what the operator can
// change.
std::shared_ptr<http::listener> open_listener(http::io_shards& io, const http_config& h,
                                              http::session_context& ctx) {
    boost::system::error_code ec;
    const auto addr = asio::ip::make_address(h.host, ec);
    if (ec) throw config_error("http.listen host '" + h.host + "' is not an IP address");
    try {
        return std::make_shared<http::listener>(io, asio::ip::tcp::endpoint(addr, h.port), ctx);
    } catch (const http::listen_error& e) {
        const bool taken = e.code == asio::error::address_in_use;
        throw http::listen_error(std::string(e.what()) + (taken ? "; stop what uses it, or set" : "; set") +
                                     " another address: [http] listen in the configuration, or --http "
                                     "HOST:PORT",
                                 e.code);
    }
}

std::unique_ptr<http::tls_identity> open_tls(const http_config& h) {
    if (!h.tls()) return nullptr;
    auto id = std::make_unique<http::tls_identity>(h.tls_cert, h.tls_key);
    spdlog::info("http: TLS on (HTTPS and WSS) with {}", h.tls_cert.string());
    return id;
}

// Retention runs on SQLite only so far; with PostgreSQL the operator is told that nothing is
// deleted.
std::unique_ptr<retention_worker> open_retention(const storage_config& s, hub& live) {
    if (s.postgresql()) {
        if (s.retention_days > 0)
            spdlog::warn("storage: retention is not implemented for PostgreSQL yet: storage.retention_days = {} "
                         "is ignored and every reading is kept",
                         s.retention_days);
        return nullptr;
    }
    return std::make_unique<retention_worker>(s.db_path, s.retention_days, s.retention_interval,
                                              s.retention_chunk, live);
}

}  // namespace

// Members are declared in dependency order: each is built after, and destroyed before, what it uses.
struct bridge::parts {
    explicit parts(config c)
        : cfg(std::move(c)),
          store_lock(hold_store(cfg)),
          writer(open_writer(cfg, cfg.ingest.sync)),
          live(cfg.mqtt.topic_prefix, cfg.hub.window),
          feed(live, stats),
          series(cfg.ingest.max_series),
          tailer(cfg.storage.postgresql() ? std::make_unique<store_tailer>(cfg.storage, feed, series) : nullptr),
          commits(*writer, journal_path(cfg.storage.db_path), cfg.ingest.journal_reserve_mb << 20,
                  tailer ? static_cast<commit_sink&>(*tailer) : feed, stats, committer_max_pending, cfg.ingest.sync),
          queries([this] { return open_reader(cfg.storage); }, cfg.storage.query_threads, max_queued_queries),
          retention(open_retention(cfg.storage, live)),
          catchup(live, queries),
          auth(cfg.auth),
          routes(live, stats, cfg, auth, [this] { return mqtt.subscribed(); },
                 [this] { return commits.health().writable(); }),
          connections(cfg.http.max_connections, cfg.http.max_connections_per_address),
          tls(open_tls(cfg.http)),
          stream_budget(cfg.stream.max_total_queue_bytes, std::min<std::size_t>(64 * 1024, cfg.stream.max_queue_bytes)),
          ctx{routes, live, queries, catchup, connections, stats, cfg.http, cfg.stream, stream_budget, tls.get()},
          mqtt(cfg.mqtt, cfg.ingest, commits, series, stats) {
        spdlog::info("storage: {}", describe_store(cfg.storage));
        // A shared subscription hands one sensor's readings to several replicas, which commit
        // them in any order: a step in `seq` by id is no sign of loss there.
        live.series().count_seq_gaps(cfg.mqtt.shared_group.empty());
        commits.recover();  // readings acknowledged but not yet in storage when we last stopped
        if (cfg.ingest.sync)
            spdlog::info("ingest: sync on: each reading is on stable storage before its PUBACK (journal msync, "
                         "SQLite synchronous=FULL)");
        if (cfg.auth.enabled())
            spdlog::info("auth: on ({} static tokens, {} JWT keys)", cfg.auth.tokens.size(), cfg.auth.jwt_hs256_keys.size());
        else
            spdlog::warn("auth: off: anyone who reaches {}:{} reads every reading", cfg.http.host, cfg.http.port);
        load_hub();
        // After the hub is loaded: a first start republishes what is committed from now on.
        if (cfg.mqtt_out.enabled()) republish = std::make_unique<mqtt_republisher>(cfg, live, catchup, stats);
        http = open_listener(io, cfg.http, ctx);
        if (cfg.grpc.enabled())
            grpc = std::make_unique<grpc_server>(grpc_parts{cfg, live, catchup, queries, io, stats, stream_budget, auth, tls.get()});
    }

    void load_hub() {
        const auto reader = open_reader(cfg.storage);
        auto& r = *reader;
        const auto stored = r.all_series();
        const std::int64_t max_id = r.max_id();
        const std::int64_t tail_after =
            std::max<std::int64_t>(0, max_id - static_cast<std::int64_t>(cfg.hub.window));
        auto tail = r.after_id(tail_after, cfg.hub.window);
        spdlog::info("storage: {} series, newest id {}, {} recent readings in memory", stored.size(),
                     max_id, tail.size());
        for (const auto& s : stored) series.know(s.sensor, s.metric);
        if (stored.size() >= cfg.ingest.max_series)
            spdlog::warn("ingest: {} series in storage, ingest.max_series is {}: readings of new series are rejected",
                         stored.size(), cfg.ingest.max_series);
        live.load(stored, max_id, std::move(tail), tail_after, r.retired_unattributed());
        live.set_epoch(r.epoch());
        spdlog::info("storage: epoch {} (cursors look like {}{})", live.epoch_text(), max_id, live.at_epoch());
    }

    config cfg;
    metrics stats;
    std::unique_ptr<storage::exclusive_use> store_lock;  // SQLite: no other bridge on the file
    std::unique_ptr<storage::store_writer> writer;
    hub live;
    hub_feed feed;
    series_cap series;  // ingest.max_series: stored series, and with PostgreSQL every replica's
    std::unique_ptr<store_tailer> tailer;  // PostgreSQL: the hub is fed from the shared table
    committer commits;
    query_pool queries;
    std::unique_ptr<retention_worker> retention;  // SQLite only so far
    catch_up catchup;
    authenticator auth;
    http::router routes;
    http::connection_gauge connections;
    std::unique_ptr<http::tls_identity> tls;
    http::send_budget stream_budget;
    http::session_context ctx;
    ingest mqtt;
    http::io_shards io{cfg.http.threads, cfg.stream.max_queue_events};  // one I/O thread per shard
    std::shared_ptr<http::listener> http;
    std::unique_ptr<mqtt_republisher> republish;  // [mqtt_out]; null when off
    std::unique_ptr<grpc_server> grpc;  // [grpc] listen; its streams run on io's shards
};

bridge::bridge(config c) : p_(std::make_unique<parts>(std::move(c))) {}

bridge::~bridge() = default;

asio::ip::tcp::endpoint bridge::http_endpoint() const { return p_->http->local_endpoint(); }

std::uint16_t bridge::grpc_port() const { return p_->grpc ? p_->grpc->port() : 0; }

const std::string& bridge::grpc_host() const { return p_->cfg.grpc.host; }

int bridge::run() {
    auto& p = *p_;
    std::promise<int> stop_signal;
    asio::signal_set signals(p.io.first().context(), SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
        if (!ec) stop_signal.set_value(sig);
    });

    // SIGHUP reads the certificate and key again (a renewed certificate): new connections get
    // it, open streams keep theirs.
    asio::signal_set reload(p.io.first().context(), SIGHUP);
    std::function<void()> await_reload = [&] {
        reload.async_wait([&](const boost::system::error_code& ec, int) {
            if (ec) return;
            if (!p.tls) {
                spdlog::info("received SIGHUP: no TLS certificate to reload");
            } else if (auto err = p.tls->reload(); err.empty()) {
                p.stats.http_tls_reloads.fetch_add(1, std::memory_order_relaxed);
                if (p.grpc) p.grpc->identity_changed();
                spdlog::info("received SIGHUP: TLS certificate reloaded from {}", p.cfg.http.tls_cert.string());
            } else {
                spdlog::error("received SIGHUP: TLS certificate NOT reloaded, the previous one stays in use: {}", err);
            }
            await_reload();
        });
    };
    await_reload();

    p.http->run();
    if (p.retention) p.retention->start();
    p.live.set_batching(&p.io);  // before the first commit reaches the hub
    if (p.tailer) p.tailer->start(p.live.newest_id());
    p.commits.start();
    p.mqtt.start();
    if (p.republish) p.republish->start();
    p.io.run();

    const int sig = stop_signal.get_future().get();
    spdlog::info("received signal {}: stopping", sig);

    // 1. Stop taking work: no new connections, no new MQTT messages (the callback in progress
    //    finishes its commit first; what the broker still holds stays queued for our session).
    p.http->stop();
    p.mqtt.stop();
    p.commits.stop();  // commits everything journaled; then the hub has it all
    if (p.tailer) p.tailer->stop();  // (with PostgreSQL once the tailer has read it)
    if (p.republish) p.republish->stop();  // what it sent is acknowledged (or sent again next start)
    // 2. Answer parked long polls, send streams their retry hint, and give in-flight answers a
    //    moment to be written.
    p.live.release_all();
    if (p.grpc) p.grpc->stop(std::chrono::seconds(1));  // its streams ended with UNAVAILABLE just now
    for (int i = 0; i < 20 && p.connections.open() > 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    // 3. Stop I/O, then the background threads; storage closes last (parts' destructor).
    p.io.stop();
    p.queries.stop();
    if (p.retention) p.retention->stop();
    spdlog::info("stopped cleanly; newest id {}", p.live.newest_id());
    return 0;
}

}  // namespace telemetry::bridge
