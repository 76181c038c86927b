// The PostgreSQL writer: batches copied in, ids assigned under the id lock, presence, readiness.
#include "pg_connection.hpp"
#include "pg_schema.hpp"
#include "postgresql.hpp"

#include <algorithm>
#include <chrono>
#include <charconv>
#include <cmath>
#include <stdexcept>
#include <string>

namespace telemetry::storage {

namespace {

// The batch, copied in before the id lock is taken so that the lock covers only the insert-select
// and the commit. Session-local; emptied by every commit. READ COMMITTED whatever the database's
// default: the insert-select below relies on a snapshot per statement.
constexpr const char* sql_begin_batch =
    "BEGIN ISOLATION LEVEL READ COMMITTED; CREATE TEMP TABLE IF NOT EXISTS incoming("
    "ord integer NOT NULL, sensor text NOT NULL, metric text NOT NULL, ts bigint NOT NULL, "
    "value double precision NOT NULL, seq bigint, unit text NOT NULL) ON COMMIT DELETE ROWS";
constexpr const char* sql_copy_batch =
    "COPY incoming(ord, sensor, metric, ts, value, seq, unit) FROM STDIN";
// New series in name order: two writers creating the same two series wait for each other in the
// same order, never in a cycle.
constexpr const char* sql_add_series =
    "INSERT INTO series(sensor, metric) SELECT DISTINCT sensor, metric FROM incoming "
    "ORDER BY sensor, metric ON CONFLICT DO NOTHING";
// The id lock: held until the commit. Other writers queue here.
constexpr const char* sql_lock_ids = "SELECT next_id FROM id_counter FOR UPDATE";
// A separate statement after the lock, so that (READ COMMITTED) its snapshot is taken after the
// lock was granted and sees every batch committed before: the redelivery check is exact and ids
// continue from the committed counter. Skipped redeliveries (stored, or earlier in this batch)
// consume no id; ids follow the batch order.
constexpr const char* sql_insert_batch = R"sql(
WITH batch AS (
    SELECT b.ord, s.series_id, b.ts, b.value, b.seq, b.unit,
           row_number() OVER (PARTITION BY s.series_id, b.seq, b.ts ORDER BY b.ord) AS copy_no
    FROM incoming b JOIN series s ON s.sensor = b.sensor AND s.metric = b.metric
), fresh AS (
    SELECT * FROM batch x
    WHERE (x.seq IS NULL OR x.copy_no = 1)
      AND NOT EXISTS (SELECT 1 FROM readings r
                      WHERE r.series_id = x.series_id AND r.seq = x.seq AND r.ts = x.ts)
), ins AS (
    INSERT INTO readings(id, series_id, ts, value, seq, unit)
    SELECT $1 + row_number() OVER (ORDER BY ord) - 1, series_id, ts, value, seq, unit FROM fresh
    ON CONFLICT (series_id, seq, ts) WHERE seq IS NOT NULL DO NOTHING
    RETURNING id, series_id, ts, value, seq, unit
), bump AS (
    UPDATE id_counter SET next_id = coalesce((SELECT max(id) FROM ins) + 1, next_id)
)
SELECT s.sensor, s.metric, ins.id, ins.ts, ins.value, ins.unit, ins.seq
FROM ins JOIN series s ON s.series_id = ins.series_id ORDER BY ins.id
)sql";

// In the batch's transaction: the journal numbers up to `position` are committed.
constexpr const char* sql_record_journal =
    "INSERT INTO replica_journal(replica, position) VALUES($1, $2) ON CONFLICT(replica) DO UPDATE "
    "SET position = greatest(replica_journal.position, excluded.position)";

}  // namespace

struct postgresql_writer::impl {
    detail::pg_connection conn;
    std::string replica;
    const std::string notify = std::string("NOTIFY ") + postgresql_readings_channel;
    std::string rows;  // reused COPY buffer
    std::chrono::nanoseconds lock_held{0};

    impl(const std::string& conninfo, std::string name) : conn(conninfo), replica(std::move(name)) {
        detail::pg_migrate(conn);
    }

    void copy_row(std::size_t ord, const reading& r) {
        rows += std::to_string(ord);
        rows += '\t';
        detail::copy_text(rows, r.sensor);
        rows += '\t';
        detail::copy_text(rows, r.metric);
        rows += '\t';
        rows += std::to_string(r.ts);
        rows += '\t';
        char buf[32];
        auto [end, ec] = std::to_chars(buf, buf + sizeof buf, r.value);
        rows.append(buf, end);
        rows += '\t';
        rows += r.seq ? std::to_string(*r.seq) : std::string("\\N");
        rows += '\t';
        detail::copy_text(rows, r.unit);
        rows += '\n';
    }

    std::vector<reading> insert(std::span<const reading> rs) {
        rows.clear();
        for (std::size_t i = 0; i < rs.size(); ++i) copy_row(i, rs[i]);
        detail::pg_transaction txn(conn, sql_begin_batch);
        conn.copy_in(sql_copy_batch, rows);
        conn.query(sql_add_series);
        auto lock = conn.query(sql_lock_ids);
        const auto locked_at = std::chrono::steady_clock::now();
        const std::int64_t first = lock.int64(0, 0);
        auto res = conn.query(sql_insert_batch, detail::pg_params().add(first));
        std::int64_t journaled = 0;
        for (const auto& r : rs) journaled = std::max(journaled, r.id);
        if (!replica.empty() && journaled > 0)
            conn.query(sql_record_journal, detail::pg_params().add(std::string_view(replica)).add(journaled));
        // Delivered to listeners when (and only if) the transaction commits.
        if (res.rows() > 0) conn.exec(notify.c_str());
        txn.commit();
        lock_held += std::chrono::steady_clock::now() - locked_at;
        std::vector<reading> stored;
        stored.reserve(static_cast<std::size_t>(res.rows()));
        for (int i = 0; i < res.rows(); ++i)
            stored.push_back(detail::reading_at(res, i, 2, res.text(i, 0), res.text(i, 1)));
        return stored;
    }
};

postgresql_writer::postgresql_writer(const std::string& conninfo, std::string replica)
    : impl_(std::make_unique<impl>(conninfo, std::move(replica))) {}
postgresql_writer::~postgresql_writer() = default;

std::vector<reading> postgresql_writer::insert(std::span<const reading> readings) {
    for (const auto& r : readings)
        if (!std::isfinite(r.value)) throw std::invalid_argument("storage: reading value is not finite");
    if (readings.empty()) return {};
    return impl_->insert(readings);
}

bool postgresql_writer::set_status(std::string_view sensor, bool online, std::int64_t at_ms) {
    auto r = impl_->conn.query(
        "INSERT INTO sensors(sensor, online, changed_at) VALUES($1, $2, $3) "
        "ON CONFLICT(sensor) DO UPDATE SET online = excluded.online, changed_at = excluded.changed_at "
        "WHERE sensors.online <> excluded.online",
        detail::pg_params().add(sensor).add(std::string_view(online ? "true" : "false")).add(at_ms));
    return r.affected() > 0;
}

bool postgresql_writer::writable() {
    try {
        impl_->conn.query(
            "INSERT INTO meta(key, value) VALUES('writable_check', 1) "
            "ON CONFLICT(key) DO UPDATE SET value = meta.value + 1");
        return true;
    } catch (const storage_error&) {
        return false;
    }
}

}  // namespace telemetry::storage

namespace telemetry::storage {

std::int64_t postgresql_writer::next_journal_id() {
    if (impl_->replica.empty()) return 1;
    auto r = impl_->conn.query("SELECT position FROM replica_journal WHERE replica = $1",
                               detail::pg_params().add(std::string_view(impl_->replica)));
    return r.rows() == 0 ? 1 : r.int64(0, 0) + 1;
}

std::chrono::nanoseconds postgresql_writer::id_lock_held() const { return impl_->lock_held; }

bool postgresql_writer::power_safe() {
    auto r = impl_->conn.query("SELECT current_setting('synchronous_commit')");
    return r.text(0, 0) != "off";
}

}  // namespace telemetry::storage
