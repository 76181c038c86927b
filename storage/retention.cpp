// Retention: deletes old readings in short chunked transactions, keeping rollups exact and ids
// monotonic, then returns freed pages to the filesystem a little at a time.
#include "database.hpp"
#include "statement.hpp"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

namespace telemetry::storage {

struct retainer::impl {
    connection conn;
    detail::statement_cache stmts;  // declared after conn: finalized before the close

    explicit impl(const std::filesystem::path& file)
        : conn(file, connection::mode::read_write), stmts(conn.handle()) {
        migrate(conn);
    }

    // Deletes, in one transaction, up to `chunk` of the series' oldest readings (by (ts, id))
    // with ts < cutoff. Returns how many went; `max_id` is the greatest id among them.
    std::int64_t delete_chunk(std::int64_t sid, std::int64_t cutoff, std::size_t chunk, std::int64_t& max_id) {
        detail::transaction txn(stmts, detail::transaction::kind::write);
        std::int64_t n = 0, first_ts = 0, last_ts = 0, last_id = 0;
        max_id = 0;
        {
            auto q = stmts.use(
                "SELECT ts, id FROM readings WHERE series_id = ?1 AND ts < ?2 "
                "ORDER BY ts, id LIMIT ?3");
            q.bind(1, sid).bind(2, cutoff).bind(3, static_cast<std::int64_t>(chunk));
            while (q.step()) {
                if (n++ == 0) first_ts = q.int64(0);
                last_ts = q.int64(0);
                last_id = q.int64(1);
                max_id = std::max(max_id, last_id);
            }
        }
        if (n == 0) return 0;  // the transaction rolls back: nothing was written
        // Before deleting: the writer (next start) and max_id() must never hand out or report
        // an id lower than one already used, even when the newest ids are the ones going.
        stmts
            .use("INSERT INTO meta(key, value) VALUES('retired_max_id', ?1) "
                 "ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)")
            .bind(1, max_id)
            .run();
        stmts.use("UPDATE series SET retired_max_id = max(retired_max_id, ?2) WHERE series_id = ?1")
            .bind(1, sid)
            .bind(2, max_id)
            .run();
        {
            // Exactly the prefix selected above: every row at or before (last_ts, last_id).
            auto d = stmts.use(
                "DELETE FROM readings WHERE series_id = ?1 AND ts BETWEEN ?2 AND ?3 "
                "AND (ts < ?3 OR id <= ?4)");
            d.bind(1, sid).bind(2, first_ts).bind(3, last_ts).bind(4, last_id);
            d.run();
            if (d.changes() != n)
                throw storage_error("storage: retention deleted an unexpected number of rows");
        }
        // Minutes before the last one touched were emptied completely (all their rows precede
        // (last_ts, last_id)); the last one may keep rows, so recompute it from what remains.
        const std::int64_t fm = detail::minute_of(first_ts);
        const std::int64_t lm = detail::minute_of(last_ts);
        stmts
            .use("DELETE FROM rollup_1m WHERE series_id = ?1 AND minute >= ?2 AND minute < ?3")
            .bind(1, sid)
            .bind(2, fm)
            .bind(3, lm)
            .run();
        std::int64_t left = 0;
        double mn = 0, mx = 0, sum = 0;
        {
            auto q = stmts.use(
                "SELECT count(*), min(value), max(value), sum(value) FROM readings "
                "WHERE series_id = ?1 AND ts BETWEEN ?2 AND ?3");
            q.bind(1, sid).bind(2, detail::minute_first_ts(lm)).bind(3, detail::minute_last_ts(lm));
            if (q.step()) {
                left = q.int64(0);
                mn = q.real(1);
                mx = q.real(2);
                sum = q.real(3);
            }
        }
        if (left == 0) {
            stmts.use("DELETE FROM rollup_1m WHERE series_id = ?1 AND minute = ?2")
                .bind(1, sid)
                .bind(2, lm)
                .run();
        } else {
            stmts
                .use("INSERT OR REPLACE INTO rollup_1m(series_id, minute, n, vmin, vmax, vsum) "
                     "VALUES(?1, ?2, ?3, ?4, ?5, ?6)")
                .bind(1, sid)
                .bind(2, lm)
                .bind(3, left)
                .bind(4, mn)
                .bind(5, mx)
                .bind(6, sum)
                .run();
        }
        txn.commit();
        return n;
    }

    // Gives freed pages back to the filesystem in small steps, each its own short write
    // transaction, so a concurrent writer waits at most one step.
    void vacuum_some() {
        for (int step = 0; step < 10'000; ++step) {
            std::int64_t free_pages = 0;
            {
                auto q = stmts.use("PRAGMA freelist_count");
                if (q.step()) free_pages = q.int64(0);
            }
            if (free_pages == 0) return;
            stmts.use("PRAGMA incremental_vacuum(256)").run();
        }
    }
};

retainer::retainer(const std::filesystem::path& file) : impl_(std::make_unique<impl>(file)) {}
retainer::~retainer() = default;

retention_result retainer::run(std::int64_t cutoff_ms, std::size_t chunk) {
    if (chunk == 0) chunk = 1;
    // Per series, so each chunk is a range scan of the (series_id, ts) index; a global "oldest
    // rows" query would need a ts index that every insert would pay for.
    std::vector<std::pair<std::int64_t, std::pair<std::string, std::string>>> series;
    {
        auto q = impl_->stmts.use("SELECT series_id, sensor, metric FROM series ORDER BY series_id");
        while (q.step()) series.push_back({q.int64(0), {q.text(1), q.text(2)}});
    }
    retention_result result;
    for (const auto& [sid, names] : series) {
        std::int64_t total = 0, max_id = 0;
        for (;;) {
            std::int64_t chunk_max = 0;
            const std::int64_t n = impl_->delete_chunk(sid, cutoff_ms, chunk, chunk_max);
            total += n;
            max_id = std::max(max_id, chunk_max);
            if (n < static_cast<std::int64_t>(chunk)) break;
        }
        if (total > 0) {
            result.deleted += total;
            result.deleted_per_series[names] = total;
            result.retired_per_series[names] = max_id;
        }
    }
    if (result.deleted > 0) impl_->vacuum_some();
    {
        auto q = impl_->stmts.use("SELECT coalesce((SELECT value FROM meta WHERE key = 'retired_max_id'), 0)");
        if (q.step()) result.retired_max_id = q.int64(0);
    }
    return result;
}

}  // namespace telemetry::storage
