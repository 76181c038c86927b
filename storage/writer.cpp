// The single writer: idempotent batched inserts with their per-minute rollups, presence, readiness.
#include "checkpointer.hpp"
#include "database.hpp"
#include "statement.hpp"

#include <algorithm>
#include <optional>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace telemetry::storage {

namespace {

constexpr const char* sql_insert_reading =
    "INSERT INTO readings(id, series_id, ts, value, seq, unit) VALUES(?1, ?2, ?3, ?4, ?5, ?6)";
// A reading with a seq is a redelivery when its series already has that (seq, ts). Looked up
// through readings_by_series_ts, which every insert writes anyway (schema v4 dropped the unique
// index that used to catch it), and only for a ts not newer than the series' newest: sensors
// publish in time order, so almost every reading skips it. Only this writer inserts, so nothing
// comes between the check and the insert.
constexpr const char* sql_find_redelivery = "SELECT 1 FROM readings WHERE series_id = ?1 AND ts = ?2 AND seq = ?3";
constexpr const char* sql_upsert_rollup =
    "INSERT INTO rollup_1m(series_id, minute, n, vmin, vmax, vsum) VALUES(?1, ?2, ?3, ?4, ?5, ?6) "
    "ON CONFLICT(series_id, minute) DO UPDATE SET n = n + excluded.n, "
    "vmin = min(vmin, excluded.vmin), vmax = max(vmax, excluded.vmax), vsum = vsum + excluded.vsum";

// One minute's contribution of the current transaction to rollup_1m.
struct minute_acc {
    std::int64_t series_id = 0, minute = 0, n = 0;
    double min = 0, max = 0, sum = 0;
};

}  // namespace

// Invariant: next_id is greater than every id stored or ever stored (retired_max_id) and is only
// advanced for committed readings (restored on rollback). series_ids holds committed series only.
struct writer::impl {
    connection conn;
    detail::statement_cache stmts;  // declared after conn: finalized before the close
    std::int64_t next_id = 1;
    struct series_entry {
        std::int64_t id = 0;
        std::int64_t newest_ts = std::numeric_limits<std::int64_t>::min();  // of any reading stored
    };
    std::unordered_map<std::string, series_entry> series_ids;  // sensor '\0' metric -> its row
    std::string key;                                           // reused lookup buffer
    std::vector<minute_acc> minutes;                           // reused per transaction
    std::optional<checkpointer> checkpoints;                   // after conn: stopped before the close

    explicit impl(const std::filesystem::path& file)
        : conn(file, connection::mode::read_write), stmts(conn.handle()) {
        migrate(conn);
        checkpoints.emplace(conn.handle(), file, wal_checkpoint_pages);
        auto q = stmts.use(
            "SELECT max(coalesce((SELECT max(id) FROM readings), 0),"
            " coalesce((SELECT value FROM meta WHERE key = 'retired_max_id'), 0))");
        if (q.step()) next_id = q.int64(0) + 1;
    }

    series_entry& series(const std::string& sensor, const std::string& metric) {
        key.assign(sensor).push_back('\0');
        key.append(metric);
        if (auto it = series_ids.find(key); it != series_ids.end()) return it->second;
        stmts.use("INSERT INTO series(sensor, metric) VALUES(?1, ?2) ON CONFLICT DO NOTHING")
            .bind(1, sensor)
            .bind(2, metric)
            .run();
        series_entry e;
        {
            auto q = stmts.use("SELECT series_id FROM series WHERE sensor = ?1 AND metric = ?2");
            q.bind(1, sensor).bind(2, metric);
            if (!q.step()) throw storage_error("storage: series row vanished after insert");
            e.id = q.int64(0);
        }
        auto q = stmts.use("SELECT max(ts) FROM readings WHERE series_id = ?1");
        q.bind(1, e.id);
        if (q.step() && !q.is_null(0)) e.newest_ts = q.int64(0);
        return series_ids.emplace(key, e).first->second;
    }

    bool stored_already(const series_entry& s, const reading& r) {
        if (!r.seq || r.ts > s.newest_ts) return false;
        auto q = stmts.use(sql_find_redelivery);
        q.bind(1, s.id).bind(2, r.ts).bind(3, *r.seq);
        return q.step();
    }

    void add_to_rollup(std::int64_t sid, std::int64_t ts, double v) {
        const std::int64_t m = detail::minute_of(ts);
        // Batches are usually one series in time order: the last entry is almost always the hit.
        for (auto it = minutes.rbegin(); it != minutes.rend(); ++it) {
            if (it->series_id == sid && it->minute == m) {
                ++it->n;
                it->min = std::min(it->min, v);
                it->max = std::max(it->max, v);
                it->sum += v;
                return;
            }
            if (minutes.size() > 64) break;  // bound the search; a second entry is only slower
        }
        minutes.push_back({sid, m, 1, v, v, v});
    }

    std::vector<reading> insert(std::span<const reading> rs) {
        for (const auto& r : rs)
            if (!std::isfinite(r.value))
                throw std::invalid_argument("storage: reading value is not finite");
        std::vector<reading> stored;
        stored.reserve(rs.size());
        minutes.clear();
        const std::int64_t first_id = next_id;
        try {
            detail::transaction txn(stmts, detail::transaction::kind::write);
            for (const auto& r : rs) {
                series_entry& series_row = series(r.sensor, r.metric);
                if (stored_already(series_row, r)) continue;  // a redelivery
                const std::int64_t sid = series_row.id;
                auto q = stmts.use(sql_insert_reading);
                // A reading that already carries an id (assigned when it was journaled) keeps it.
                const std::int64_t id = r.id > 0 ? std::max(r.id, next_id) : next_id;
                if (r.id > 0 && r.id < next_id)
                    throw std::invalid_argument("storage: journaled id is below ids already handed out");
                q.bind(1, id).bind(2, sid).bind(3, r.ts).bind(4, r.value).bind(5, r.seq).bind(
                    6, r.unit);
                q.run();
                series_row.newest_ts = std::max(series_row.newest_ts, r.ts);
                stored.push_back(r);
                stored.back().id = id;
                next_id = id + 1;
                add_to_rollup(sid, r.ts, r.value);
            }
            for (const auto& m : minutes)
                stmts.use(sql_upsert_rollup)
                    .bind(1, m.series_id)
                    .bind(2, m.minute)
                    .bind(3, m.n)
                    .bind(4, m.min)
                    .bind(5, m.max)
                    .bind(6, m.sum)
                    .run();
            txn.commit();
        } catch (...) {
            // Nothing of this transaction is stored: hand its ids out again and forget series
            // rows it may have created (and newest ts it raised).
            next_id = first_id;
            series_ids.clear();
            throw;
        }
        return stored;
    }
};

writer::writer(const std::filesystem::path& file, bool power_safe) : impl_(std::make_unique<impl>(file)) {
    if (power_safe) impl_->conn.exec("PRAGMA synchronous=FULL");
}

int writer::synchronous() {
    auto q = impl_->stmts.use("PRAGMA synchronous");
    return q.step() ? static_cast<int>(q.int64(0)) : -1;
}
writer::~writer() = default;

std::vector<reading> writer::insert(std::span<const reading> readings) {
    if (readings.empty()) return {};
    return impl_->insert(readings);
}

bool writer::set_status(std::string_view sensor, bool online, std::int64_t at_ms) {
    detail::transaction txn(impl_->stmts, detail::transaction::kind::write);
    auto q = impl_->stmts.use(
        "INSERT INTO sensors(sensor, online, changed_at) VALUES(?1, ?2, ?3) "
        "ON CONFLICT(sensor) DO UPDATE SET online = excluded.online, "
        "changed_at = excluded.changed_at WHERE online <> excluded.online");
    q.bind(1, sensor).bind(2, std::int64_t{online ? 1 : 0}).bind(3, at_ms);
    q.run();
    const bool changed = q.changes() > 0;
    txn.commit();
    return changed;
}

std::int64_t writer::next_id() const { return impl_->next_id; }

bool writer::writable() {
    try {
        detail::transaction txn(impl_->stmts, detail::transaction::kind::write);
        impl_->stmts
            .use("INSERT INTO meta(key, value) VALUES('writable_check', 1) "
                 "ON CONFLICT(key) DO UPDATE SET value = value + 1")
            .run();
        txn.commit();
        return true;
    } catch (...) {
        return false;
    }
}

}  // namespace telemetry::storage
