// The PostgreSQL reader: series overview, latest, keyset-paginated history, grouped aggregates,
// replay by id.
#include "history_cursor.hpp"
#include "pg_connection.hpp"
#include "pg_schema.hpp"
#include "postgresql.hpp"
#include "time_math.hpp"

#include <algorithm>
#include <charconv>
#include <stdexcept>
#include <string>
#include <unordered_map>

namespace telemetry::storage {

namespace {

constexpr const char* reading_cols = "id, ts, value, unit, seq";  // as detail::reading_at reads them

// "1,2,3" (string_agg of integers) -> {1, 2, 3}.
std::vector<std::int64_t> int_list(std::string_view s) {
    std::vector<std::int64_t> out;
    const char* p = s.data();
    const char* end = s.data() + s.size();
    while (p < end) {
        std::int64_t v = 0;
        auto [next, ec] = std::from_chars(p, end, v);
        if (ec != std::errc()) throw storage_error("postgresql: bad integer list in a result");
        out.push_back(v);
        p = next + (next < end ? 1 : 0);
    }
    return out;
}

}  // namespace

// Invariant: never leaves a transaction open between calls.
struct postgresql_reader::impl {
    detail::pg_connection conn;
    // Series are never deleted, so a found id stays valid; misses are not cached.
    std::unordered_map<std::string, std::int64_t> series_ids;
    std::string key;

    explicit impl(const std::string& conninfo) : conn(conninfo) {
        const auto v = detail::pg_schema_version(conn);
        if (v != postgresql_schema_version)
            throw storage_error("storage: the database has schema version " + std::to_string(v) +
                                ", expected " + std::to_string(postgresql_schema_version) +
                                " (open a writer first)");
    }

    std::optional<std::int64_t> find_series(std::string_view sensor, std::string_view metric) {
        key.assign(sensor).push_back('\0');
        key.append(metric);
        if (auto it = series_ids.find(key); it != series_ids.end()) return it->second;
        auto r = conn.query("SELECT series_id FROM series WHERE sensor = $1 AND metric = $2",
                            detail::pg_params().add(sensor).add(metric));
        if (r.rows() == 0) return std::nullopt;
        const std::int64_t id = r.int64(0, 0);
        series_ids.emplace(key, id);
        return id;
    }

    std::int64_t scalar(const char* sql, const detail::pg_params& p = {}) {
        return conn.query(sql, p).int64(0, 0);
    }
};

postgresql_reader::postgresql_reader(const std::string& conninfo)
    : impl_(std::make_unique<impl>(conninfo)) {}
postgresql_reader::~postgresql_reader() = default;

std::vector<series_info> postgresql_reader::all_series() {
    // One statement, so one snapshot. The lateral subqueries are index lookups per series.
    auto r = impl_->conn.query(R"sql(
SELECT s.sensor, s.metric, p.online, s.retired_max_id,
       (SELECT count(*) FROM readings c WHERE c.series_id = s.series_id),
       l.id, l.ts, l.value, l.unit, l.seq,
       n.id, n.seq,
       (SELECT string_agg(t.ts::text, ',' ORDER BY t.id)
        FROM (SELECT id, ts FROM readings x WHERE x.series_id = s.series_id
              ORDER BY id DESC LIMIT 32) t)
FROM series s
LEFT JOIN sensors p ON p.sensor = s.sensor
LEFT JOIN LATERAL (SELECT id, ts, value, unit, seq FROM readings x WHERE x.series_id = s.series_id
                   ORDER BY ts DESC, id DESC LIMIT 1) l ON true
LEFT JOIN LATERAL (SELECT id, seq FROM readings x WHERE x.series_id = s.series_id
                   ORDER BY id DESC LIMIT 1) n ON true
ORDER BY s.sensor, s.metric
)sql");
    std::vector<series_info> out;
    out.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) {
        series_info si;
        si.sensor = r.text(i, 0);
        si.metric = r.text(i, 1);
        if (!r.is_null(i, 2)) si.online = r.text(i, 2) == "t";
        si.retired_max_id = r.int64(i, 3);
        si.count = r.int64(i, 4);
        if (!r.is_null(i, 5)) {
            si.latest = detail::reading_at(r, i, 5, si.sensor, si.metric);
            si.unit = si.latest->unit;
        }
        if (!r.is_null(i, 10)) {
            si.last_id = r.int64(i, 10);
            si.last_seq = r.opt_int64(i, 11);
        }
        if (!r.is_null(i, 12)) si.recent_ts = int_list(r.text(i, 12));
        out.push_back(std::move(si));
    }
    return out;
}

std::optional<reading> postgresql_reader::latest(std::string_view sensor, std::string_view metric) {
    const auto sid = impl_->find_series(sensor, metric);
    if (!sid) return std::nullopt;
    auto r = impl_->conn.query(
        (std::string("SELECT ") + reading_cols +
         " FROM readings WHERE series_id = $1 ORDER BY ts DESC, id DESC LIMIT 1").c_str(),
        detail::pg_params().add(*sid));
    if (r.rows() == 0) return std::nullopt;
    return detail::reading_at(r, 0, 0, sensor, metric);
}

std::optional<std::pair<std::int64_t, std::int64_t>> postgresql_reader::ts_span(std::string_view sensor,
                                                                                std::string_view metric) {
    const auto sid = impl_->find_series(sensor, metric);
    if (!sid) return std::nullopt;
    auto r = impl_->conn.query(
        "SELECT (SELECT ts FROM readings WHERE series_id = $1 ORDER BY ts LIMIT 1), "
        "(SELECT ts FROM readings WHERE series_id = $1 ORDER BY ts DESC LIMIT 1)",
        detail::pg_params().add(*sid));
    if (r.is_null(0, 0)) return std::nullopt;
    return std::pair{r.int64(0, 0), r.int64(0, 1)};
}

bucket_seed postgresql_reader::seed_bucket(std::string_view sensor, std::string_view metric,
                                           std::int64_t before_id, std::int64_t bucket_ms, std::int64_t ts) {
    if (bucket_ms <= 0) throw std::invalid_argument("bucket must be positive");
    bucket_seed out;
    const auto sid = impl_->find_series(sensor, metric);
    if (!sid) return out;
    auto bounds = [&](std::int64_t in_ts) {
        const std::int64_t lo = detail::sat_mul(detail::floor_div(in_ts, bucket_ms), bucket_ms);
        std::int64_t hi = 0;
        if (__builtin_add_overflow(lo, bucket_ms - 1, &hi)) hi = INT64_MAX;
        return std::pair{lo, hi};
    };
    auto of_bucket = [](const detail::pg_result& r, int row) {
        partial_bucket p;
        if (r.int64(row, 1) > 0) p = partial_bucket{r.int64(row, 1), r.real(row, 2), r.real(row, 3), r.real(row, 4)};
        return p;
    };
    // One snapshot for the three reads (a reading committed between them would count in one).
    detail::pg_transaction txn(impl_->conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    auto newest = impl_->conn.query(
        "SELECT ts FROM readings WHERE series_id = $1 AND id < $2 ORDER BY ts DESC LIMIT 1",
        detail::pg_params().add(*sid).add(before_id));
    if (newest.rows() > 0) out.newest_ts = newest.int64(0, 0);
    const auto [lo, hi] = bounds(ts);
    const auto [nlo, nhi] = bounds(out.newest_ts.value_or(ts));
    auto r = impl_->conn.query(
        "SELECT 0, count(*), min(value), max(value), sum(value) FROM readings "
        "WHERE series_id = $1 AND id < $2 AND ts BETWEEN $3 AND $4 "
        "UNION ALL "
        "SELECT 1, count(*), min(value), max(value), sum(value) FROM readings "
        "WHERE series_id = $1 AND id < $2 AND ts BETWEEN $5 AND $6 ORDER BY 1",
        detail::pg_params().add(*sid).add(before_id).add(lo).add(hi).add(nlo).add(nhi));
    txn.commit();
    out.at = of_bucket(r, 0);
    if (out.newest_ts) out.newest = of_bucket(r, 1);
    return out;
}

history_page postgresql_reader::history(const history_query& q) {
    const detail::position pos = detail::start_position(q);
    history_page page;
    const auto range = detail::inclusive_range(q.from, q.to);
    if (q.limit == 0 || !range) return page;
    const auto sid = impl_->find_series(q.sensor, q.metric);
    if (!sid) return page;
    // Keyset pagination on (ts, id), a row comparison the (series_id, ts, id) index serves.
    std::string sql = std::string("SELECT ") + reading_cols +
                      " FROM readings WHERE series_id = $1 AND ts BETWEEN $2 AND $3 AND ";
    sql += q.descending ? "(ts, id) < ($4, $5) ORDER BY ts DESC, id DESC LIMIT $6"
                        : "(ts, id) > ($4, $5) ORDER BY ts, id LIMIT $6";
    const std::size_t limit = detail::page_limit(q);
    auto r = impl_->conn.query(sql.c_str(), detail::pg_params()
                                                .add(*sid)
                                                .add(range->first)
                                                .add(range->second)
                                                .add(pos.ts)
                                                .add(pos.id)
                                                .add(static_cast<std::int64_t>(limit + 1)));
    const int rows = r.rows();
    for (int i = 0; i < rows; ++i) {
        if (page.readings.size() == limit) {
            const auto& last = page.readings.back();
            page.next = detail::encode_cursor(q, last.ts, last.id);
            break;
        }
        page.readings.push_back(detail::reading_at(r, i, 0, q.sensor, q.metric));
    }
    return page;
}

std::vector<bucket> postgresql_reader::aggregate(const aggregate_query& q) {
    if (q.bucket_ms <= 0) throw std::invalid_argument("bucket must be positive");
    std::vector<bucket> out;
    const auto range = detail::inclusive_range(q.from, q.to);
    if (!range) return out;
    const auto sid = impl_->find_series(q.sensor, q.metric);
    if (!sid) return out;
    // The bucket number floor(ts / bucket) in numeric, which cannot overflow; its start in ms
    // saturates here as in the SQLite engine.
    auto r = impl_->conn.query(
        "SELECT floor(ts::numeric / $4)::bigint AS k, count(*), min(value), max(value), sum(value) "
        "FROM readings WHERE series_id = $1 AND ts BETWEEN $2 AND $3 GROUP BY k ORDER BY k",
        detail::pg_params().add(*sid).add(range->first).add(range->second).add(q.bucket_ms));
    out.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) {
        bucket b;
        b.t = detail::sat_mul(r.int64(i, 0), q.bucket_ms);
        b.count = r.int64(i, 1);
        b.min = r.real(i, 2);
        b.max = r.real(i, 3);
        b.avg = r.real(i, 4) / static_cast<double>(b.count);
        out.push_back(b);
    }
    return out;
}

std::vector<reading> postgresql_reader::after_id(std::int64_t after, std::size_t limit) {
    std::vector<reading> out;
    if (limit == 0) return out;
    auto r = impl_->conn.query(
        "SELECT s.sensor, s.metric, r.id, r.ts, r.value, r.unit, r.seq "
        "FROM readings r JOIN series s ON s.series_id = r.series_id "
        "WHERE r.id > $1 ORDER BY r.id LIMIT $2",
        detail::pg_params().add(after).add(
            static_cast<std::int64_t>(std::min<std::size_t>(limit, INT64_MAX))));
    out.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) out.push_back(detail::reading_at(r, i, 2, r.text(i, 0), r.text(i, 1)));
    return out;
}

std::int64_t postgresql_reader::max_id() {
    // The counter moves in the transaction that stores the readings: committed ids only.
    return impl_->scalar("SELECT next_id - 1 FROM id_counter");
}

std::int64_t postgresql_reader::oldest_id() {
    return impl_->scalar("SELECT coalesce(min(id), 0) FROM readings");
}

retired_after postgresql_reader::retired_since(std::int64_t after) {
    retired_after out;
    auto r = impl_->conn.query(
        "SELECT sensor, metric FROM series WHERE retired_max_id > $1 ORDER BY series_id",
        detail::pg_params().add(after));
    for (int i = 0; i < r.rows(); ++i) out.series.emplace_back(r.text(i, 0), r.text(i, 1));
    out.unattributed = after < retired_unattributed();
    return out;
}

std::int64_t postgresql_reader::retired_unattributed() {
    return impl_->scalar(
        "SELECT coalesce((SELECT value FROM meta WHERE key = 'retired_unattributed'), 0)");
}

std::uint32_t postgresql_reader::epoch() {
    auto r = impl_->conn.query("SELECT value FROM meta WHERE key = 'epoch'");
    if (r.rows() == 0) throw storage_error("storage: the database has no epoch (open a writer first)");
    return static_cast<std::uint32_t>(r.int64(0, 0));
}

}  // namespace telemetry::storage
