// Tests of the group committer on real files: journal compaction under a full disk.
#include "pipeline/committer.hpp"

#include "core/metrics.hpp"
#include "live/hub.hpp"
#include "small_fs.hpp"
#include "temp_dir.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <thread>

using namespace telemetry;
using namespace telemetry::bridge;
using telemetry::testing::open_descriptors;
using telemetry::testing::small_fs;
using telemetry::testing::temp_dir;

namespace {

std::vector<reading> message(int first, int n) {
    std::vector<reading> out;
    for (int i = 0; i < n; ++i) {
        reading r;
        r.sensor = std::string(1, static_cast<char>('a' + (first + i) % 10));
        r.metric = "temperature";
        r.ts = 1'700'000'000'000 + first + i;
        r.value = 20.0;
        r.seq = first + i;
        out.push_back(std::move(r));
    }
    return out;
}

}  // namespace

TEST_CASE("committer - failed compactions on a full disk leak no descriptor, however many commits") {
    constexpr std::uint64_t reserve = 4 << 20;  // compacted above 1 MiB
    small_fs fs(reserve + (2 << 20));  // the journal fits, the copy a compaction writes does not
    SKIP_UNLESS_MOUNTED(fs);
    temp_dir dir;
    storage::writer w(dir / "t.db");
    w.insert(message(0, 1));  // SQLite opens its WAL files now, not during the commits we count
    hub live("sensors", 1000);
    metrics stats;
    hub_feed feed(live, stats);
    committer c(w, fs / "t.db.ingest-journal", reserve, feed, stats);
    c.recover();
    // Queued before the writer starts: every commit (at most 1000 readings) then ends with the
    // journal above its compaction threshold and readings still pending, so each one compacts.
    constexpr int total = 60'000;  // about 3.9 MB in the journal
    for (int i = 1; i <= total; i += 1000) c.submit(message(i, 1000));
    const auto before = open_descriptors();
    c.start();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (stats.readings_stored.load() < total && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    c.stop();
    CHECK(stats.readings_stored.load() == total);
    CHECK(open_descriptors() == before);
}

// ingest.sync: the MQTT callback acknowledges when submit() returns, so the sync must be counted
// by then, one per message; the writer must be at synchronous=FULL. (A power cut itself cannot be
// simulated here.)
TEST_CASE("committer - with sync each submit is synced before it returns, and SQLite runs FULL") {
    temp_dir dir;
    hub live("sensors", 1000);
    {
        storage::writer normal(dir / "n.db");
        CHECK(normal.synchronous() == 1);
        metrics stats;
        hub_feed feed(live, stats);
        committer off(normal, dir / "n.db.ingest-journal", 1 << 20, feed, stats);
        off.recover();
        off.submit(message(0, 3), 11);
        CHECK(stats.journal_syncs.load() == 0);
        off.stop();
        // A journal that survives power cuts in front of a writer that does not would drop
        // readings SQLite may lose: refused.
        metrics other;
        hub_feed other_feed(live, other);
        CHECK_THROWS_AS(committer(normal, dir / "x.ingest-journal", 1 << 20, other_feed, other, 100'000, true),
                        storage::storage_error);
    }
    storage::writer w(dir / "t.db", true);
    CHECK(w.synchronous() == 2);
    metrics stats;
    hub_feed feed(live, stats);
    committer c(w, dir / "t.db.ingest-journal", 1 << 20, feed, stats, 100'000, true);
    c.recover();
    const auto opened = stats.journal_syncs.load();
    c.start();
    for (int i = 1; i <= 50; ++i) {
        c.submit(message(i * 10, 2), 1000 + static_cast<std::uint64_t>(i));
        // What the broker's PUBACK waits for: this message's sync, counted before submit() returned.
        CHECK(stats.journal_syncs.load() >= opened + static_cast<std::uint64_t>(i));
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (stats.readings_stored.load() < 100 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    c.stop();
    CHECK(stats.readings_stored.load() == 100);
    CHECK(c.redelivered(1050));
}
