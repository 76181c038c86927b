// The writer's WAL checkpoints run on the checkpointer's thread (storage/checkpointer.hpp): the
// WAL still gets copied back and started over, so it stays bounded, while readers read on.
#include "checkpointer.hpp"
#include "database.hpp"

#include "temp_dir.hpp"

#include <doctest/doctest.h>

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <thread>

namespace fs = std::filesystem;
using namespace telemetry;
using namespace telemetry::storage;

TEST_CASE("checkpointer - the WAL stays bounded with checkpoints off the committing thread") {
    telemetry::testing::temp_dir dir;
    const fs::path db = dir / "telemetry.db";
    writer w(db);
    reader rd(db);
    const auto wal = fs::path(db.string() + "-wal");
    std::uintmax_t largest = 0;
    std::int64_t ts = 1'732'269'600'000;
    constexpr int batches = 400, per_batch = 1000;
    for (int b = 0; b < batches; ++b) {
        std::vector<reading> batch;
        for (int i = 0; i < per_batch; ++i) {
            reading r;
            r.sensor = "s" + std::to_string(i % 50);
            r.metric = "temperature";
            r.ts = ++ts;
            r.value = i * 0.25;
            r.seq = b * per_batch + i;
            batch.push_back(std::move(r));
        }
        REQUIRE(w.insert(batch).size() == per_batch);
        if (b % 20 == 0) (void)rd.after_id(rd.max_id() - 10, 10);  // a reader now and then
        if (fs::exists(wal)) largest = std::max(largest, fs::file_size(wal));
    }
    // 400,000 readings write far more than 16 MiB of WAL frames: without checkpoints the WAL
    // would hold them all (about 200 MB here). Checkpoints start it over.
    std::error_code ec;
    const auto db_size = fs::file_size(db, ec) + (fs::exists(wal) ? fs::file_size(wal) : 0);
    INFO("largest WAL " << largest << " bytes; database and WAL now " << db_size << " bytes");
    CHECK(db_size > 40u * 1024 * 1024);
    // At most the writer's backstop (4 x 16 MiB) and one batch beyond it.
    CHECK(largest < 80u * 1024 * 1024);
    CHECK(rd.max_id() == batches * per_batch);
}

TEST_CASE("checkpointer - its own thread checkpoints and the WAL starts over, the writer never checkpoints") {
    telemetry::testing::temp_dir dir;
    const fs::path db = dir / "plain.db";
    connection c(db, connection::mode::read_write);
    c.exec("CREATE TABLE t(x BLOB)");
    std::uintmax_t largest = 0;
    checkpointer cp(c.handle(), db, 256);  // 1 MiB: many checkpoints in a short test
    long seen = 0;
    for (int i = 0; i < 600; ++i) {
        c.exec("INSERT INTO t SELECT zeroblob(16384) FROM (SELECT 1 UNION ALL SELECT 2)");  // ~9 pages
        largest = std::max<std::uintmax_t>(largest, cp.wal_pages());
        if (cp.wal_pages() >= 256) {
            // A writer slower than the checkpoints (as live ingest is): wait for the one due now.
            for (int w = 0; w < 500 && cp.completed() == seen; ++w)
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
            REQUIRE(cp.completed() > seen);
            seen = cp.completed();
        }
    }
    INFO("largest WAL " << largest << " pages; " << cp.completed() << " checkpoints, " << cp.backstops()
                        << " by the writer");
    CHECK(cp.completed() >= 15);  // ~5,400 pages written, a checkpoint due every 256
    CHECK(cp.backstops() == 0);
    // Each checkpoint let the next commit start the WAL over: it never held much more than the
    // threshold.
    CHECK(largest < 2 * 256);
}
