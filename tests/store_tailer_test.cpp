// The store tailer (pipeline/store_tailer) against a real PostgreSQL cluster that goes away and
// comes back: what this replica committed just before still reaches its hub, and the outage is
// logged once, with its end, not at every retry.
#include "core/metrics.hpp"
#include "live/hub.hpp"
#include "pipeline/hub_feed.hpp"
#include "pipeline/series_cap.hpp"
#include "pipeline/store_tailer.hpp"
#include "postgresql.hpp"

#include "integration/pg_cluster.hpp"

#include <doctest/doctest.h>

#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace telemetry;
using namespace telemetry::bridge;
using telemetry::testing::eventually;
using telemetry::testing::shared_pg_cluster;
using namespace std::chrono_literals;

namespace {

std::string db_name(const std::string& url) { return url.substr(url.rfind('/') + 1); }

// Every log line from construction to destruction.
class log_capture {
public:
    log_capture() : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(1000)) {
        spdlog::default_logger()->sinks().push_back(sink_);
    }
    ~log_capture() {
        auto& sinks = spdlog::default_logger()->sinks();
        sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
    }
    std::size_t count(const std::string& text) const {
        const auto lines = sink_->last_formatted();
        return static_cast<std::size_t>(
            std::count_if(lines.begin(), lines.end(), [&](const std::string& l) { return l.find(text) != std::string::npos; }));
    }

private:
    std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
};

// What the hub says about the sensor's presence (through its overview, as /sensors shows it;
// a key of its own each time, so that the overview is built, not taken from the cache).
std::optional<bool> online(hub& live, const std::string& sensor) {
    static int calls = 0;
    std::optional<bool> found;
    live.series().overview("test-" + std::to_string(++calls), [&](const std::vector<series_row>& rows, std::time_t) -> series_table::derived {
        for (const auto& r : rows)
            if (r.sensor == sensor) found = r.online;
        return nullptr;
    });
    return found;
}

// Nobody can connect to the database, and whoever was connected is cut off (or, with `false`,
// connections are allowed again).
void block_connections(const std::string& url, bool blocked) {
    auto& pg = shared_pg_cluster();
    pg.psql("postgres", "ALTER DATABASE " + db_name(url) + " ALLOW_CONNECTIONS " + (blocked ? "false" : "true"));
    if (blocked)
        pg.psql("postgres", "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '" +
                                db_name(url) + "'");
}

}  // namespace

TEST_CASE("replicas - store tailer: presence committed as PostgreSQL goes away reaches the hub, the outage is logged once") {
    const std::string url = shared_pg_cluster().create_database();
    {
        storage::postgresql_writer w(url, "replica-a");
        reading r;
        r.sensor = "door";
        r.metric = "open";
        r.ts = 1'700'000'000'000;
        r.value = 1;
        w.insert(std::vector<reading>{r});
    }
    storage_config store;
    store.engine = "postgresql";
    store.url = url;
    hub live("sensors", 1000);
    metrics stats;
    hub_feed feed(live, stats);
    series_cap series(10);
    store_tailer tailer(store, feed, series);
    log_capture log;
    tailer.start(0);
    REQUIRE(eventually([&] { return live.newest_id() >= 1; }, 30s));
    CHECK(series.size() == 1);  // the tailer counts the series it reads against ingest.max_series
    CHECK_FALSE(online(live, "door").has_value());

    const std::string failed = "storage: reading new readings after id";
    block_connections(url, true);
    REQUIRE(eventually([&] { return log.count(failed) >= 1; }, 30s));
    // The committer stored a presence change just before the database went away; the tailer's
    // next reads fail (through a few retries with backoff, up to 2 s apart).
    std::vector<reading> none;
    std::vector<status_event> changes{{"door", true}};
    tailer.committed(none, changes);
    std::this_thread::sleep_for(5s);
    CHECK_FALSE(online(live, "door").has_value());

    block_connections(url, false);
    CHECK_MESSAGE(eventually([&] { return online(live, "door") == std::optional<bool>(true); }, 30s),
                  "the presence change taken for a failed read is applied after the next one");
    REQUIRE(eventually([&] { return log.count("storage: reading new readings works again after") == 1; }, 30s));
    CHECK_MESSAGE(log.count(failed) == 1, log.count(failed) << " failure lines for one outage");
    tailer.stop();
}
