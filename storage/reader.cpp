// Read-only queries: series overview, latest, keyset-paginated history, rollup aggregates, replay.
#include "database.hpp"
#include "history_cursor.hpp"
#include "statement.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <unordered_map>

namespace telemetry::storage {

namespace {

constexpr const char* reading_cols = "id, ts, value, unit, seq";

// Fills a reading from a row of `reading_cols`; the caller knows the series' names.
reading row_reading(const detail::query& q, std::string_view sensor, std::string_view metric) {
    reading r;
    r.id = q.int64(0);
    r.sensor = sensor;
    r.metric = metric;
    r.ts = q.int64(1);
    r.value = q.real(2);
    r.unit = q.text(3);
    if (!q.is_null(4)) r.seq = q.int64(4);
    return r;
}

// Streams (bucket start, partial aggregate) pairs arriving in time order into buckets.
class bucketer {
public:
    explicit bucketer(std::vector<bucket>& out) : out_(out) {}
    void add(std::int64_t t, std::int64_t n, double mn, double mx, double sum) {
        if (have_ && cur_.t == t) {
            cur_.count += n;
            cur_.min = std::min(cur_.min, mn);
            cur_.max = std::max(cur_.max, mx);
            sum_ += sum;
            return;
        }
        finish();
        have_ = true;
        cur_ = bucket{t, n, mn, mx, 0};
        sum_ = sum;
    }
    void finish() {
        if (!have_) return;
        cur_.avg = sum_ / static_cast<double>(cur_.count);
        out_.push_back(cur_);
        have_ = false;
    }

private:
    std::vector<bucket>& out_;
    bool have_ = false;
    bucket cur_;
    double sum_ = 0;
};

}  // namespace

// Invariant: never leaves a statement un-reset or a transaction open between calls.
struct reader::impl {
    connection conn;
    detail::statement_cache stmts;  // declared after conn: finalized before the close
    // Series are never deleted, so a found id stays valid; misses are not cached (a series may
    // appear later).
    std::unordered_map<std::string, std::int64_t> series_ids;
    std::string key;

    explicit impl(const std::filesystem::path& file)
        : conn(file, connection::mode::read_only), stmts(conn.handle()) {
        auto q = stmts.use("PRAGMA user_version");
        const std::int64_t v = q.step() ? q.int64(0) : 0;
        if (v != schema_version)
            throw storage_error("storage: " + file.string() + " has schema version " +
                                std::to_string(v) + ", expected " +
                                std::to_string(schema_version) + " (open a writer first)");
    }

    std::optional<std::int64_t> find_series(std::string_view sensor, std::string_view metric) {
        key.assign(sensor).push_back('\0');
        key.append(metric);
        if (auto it = series_ids.find(key); it != series_ids.end()) return it->second;
        auto q = stmts.use("SELECT series_id FROM series WHERE sensor = ?1 AND metric = ?2");
        q.bind(1, sensor).bind(2, metric);
        if (!q.step()) return std::nullopt;
        const std::int64_t id = q.int64(0);
        series_ids.emplace(key, id);
        return id;
    }

    std::optional<reading> latest_of(std::int64_t sid, std::string_view sensor,
                                     std::string_view metric) {
        auto q = stmts.use(std::string("SELECT ") + reading_cols +
                           " FROM readings WHERE series_id = ?1 ORDER BY ts DESC, id DESC LIMIT 1");
        q.bind(1, sid);
        if (!q.step()) return std::nullopt;
        return row_reading(q, sensor, metric);
    }

    // Raw rows with lo <= ts <= hi, in ts order, into `b`.
    void raw_buckets(std::int64_t sid, std::int64_t lo, std::int64_t hi, std::int64_t bucket_ms,
                     bucketer& b) {
        auto q = stmts.use(
            "SELECT ts, value FROM readings WHERE series_id = ?1 AND ts BETWEEN ?2 AND ?3 "
            "ORDER BY ts");
        q.bind(1, sid).bind(2, lo).bind(3, hi);
        while (q.step()) {
            const double v = q.real(1);
            b.add(detail::sat_mul(detail::floor_div(q.int64(0), bucket_ms), bucket_ms), 1, v, v, v);
        }
    }
};

reader::reader(const std::filesystem::path& file) : impl_(std::make_unique<impl>(file)) {}
reader::~reader() = default;

std::optional<reading> reader::latest(std::string_view sensor, std::string_view metric) {
    const auto sid = impl_->find_series(sensor, metric);
    if (!sid) return std::nullopt;
    return impl_->latest_of(*sid, sensor, metric);
}

std::optional<std::pair<std::int64_t, std::int64_t>> reader::ts_span(std::string_view sensor,
                                                                     std::string_view metric) {
    const auto sid = impl_->find_series(sensor, metric);
    if (!sid) return std::nullopt;
    // Two index lookups at either end of the series' (ts, id) range, not a scan.
    auto q = impl_->stmts.use(
        "SELECT (SELECT ts FROM readings WHERE series_id = ?1 ORDER BY ts LIMIT 1), "
        "(SELECT ts FROM readings WHERE series_id = ?1 ORDER BY ts DESC LIMIT 1)");
    q.bind(1, *sid);
    if (!q.step() || q.is_null(0)) return std::nullopt;
    return std::pair{q.int64(0), q.int64(1)};
}

history_page reader::history(const history_query& q) {
    const detail::position pos = detail::start_position(q);
    history_page page;
    const auto range = detail::inclusive_range(q.from, q.to);
    if (q.limit == 0 || !range) return page;
    auto [lo, hi] = *range;
    const auto sid = impl_->find_series(q.sensor, q.metric);
    if (!sid) return page;

    // Keyset pagination on (ts, id): the ts bound narrows the index range, the OR resolves ties.
    std::string sql = std::string("SELECT ") + reading_cols +
                      " FROM readings WHERE series_id = ?1 AND ts BETWEEN ?2 AND ?3 AND ";
    if (q.descending) {
        hi = std::min(hi, pos.ts);
        sql += "(ts < ?4 OR id < ?5) ORDER BY ts DESC, id DESC LIMIT ?6";
    } else {
        lo = std::max(lo, pos.ts);
        sql += "(ts > ?4 OR id > ?5) ORDER BY ts, id LIMIT ?6";
    }
    const std::size_t limit = detail::page_limit(q);
    auto s = impl_->stmts.use(sql);
    s.bind(1, *sid).bind(2, lo).bind(3, hi).bind(4, pos.ts).bind(5, pos.id).bind(
        6, static_cast<std::int64_t>(limit + 1));  // one more tells whether a next page exists
    while (s.step()) {
        if (page.readings.size() == limit) {
            const auto& last = page.readings.back();
            page.next = detail::encode_cursor(q, last.ts, last.id);
            break;
        }
        page.readings.push_back(row_reading(s, q.sensor, q.metric));
    }
    return page;
}

std::vector<bucket> reader::aggregate(const aggregate_query& q) {
    if (q.bucket_ms <= 0) throw std::invalid_argument("bucket must be positive");
    std::vector<bucket> out;
    const auto range = detail::inclusive_range(q.from, q.to);
    if (!range) return out;
    const auto [lo, hi] = *range;
    const auto sid = impl_->find_series(q.sensor, q.metric);
    if (!sid) return out;

    const std::int64_t b = q.bucket_ms;
    bucketer acc(out);
    // One read transaction: the rollup and the raw edges come from the same snapshot.
    detail::transaction txn(impl_->stmts, detail::transaction::kind::read);
    if (b % detail::minute_ms != 0) {
        impl_->raw_buckets(*sid, lo, hi, b, acc);
    } else {
        // Whole minutes m0..m1 inside [lo, hi] come from rollup_1m, the partial minutes at either
        // edge from raw rows. Each whole minute lies inside one bucket since b is whole minutes.
        const std::int64_t m0 = detail::ceil_div(lo, detail::minute_ms);
        std::int64_t m1 = 0;
        bool whole = !__builtin_sub_overflow(hi, detail::minute_ms - 1, &m1);
        if (whole) m1 = detail::floor_div(m1, detail::minute_ms);
        whole = whole && m0 <= m1;
        if (!whole) {
            impl_->raw_buckets(*sid, lo, hi, b, acc);
        } else {
            const std::int64_t first = detail::minute_first_ts(m0);
            const std::int64_t last = detail::minute_last_ts(m1);
            if (first > lo) impl_->raw_buckets(*sid, lo, first - 1, b, acc);
            const std::int64_t per = b / detail::minute_ms;
            {
                auto r = impl_->stmts.use(
                    "SELECT minute, n, vmin, vmax, vsum FROM rollup_1m "
                    "WHERE series_id = ?1 AND minute BETWEEN ?2 AND ?3 ORDER BY minute");
                r.bind(1, *sid).bind(2, m0).bind(3, m1);
                while (r.step())
                    acc.add(detail::sat_mul(detail::floor_div(r.int64(0), per), b), r.int64(1),
                            r.real(2), r.real(3), r.real(4));
            }
            if (last < hi) impl_->raw_buckets(*sid, last + 1, hi, b, acc);
        }
    }
    acc.finish();
    txn.commit();
    return out;
}

std::vector<series_info> reader::all_series() {
    auto& st = impl_->stmts;
    detail::transaction txn(st, detail::transaction::kind::read);
    std::vector<series_info> out;
    std::vector<std::int64_t> sids;
    std::unordered_map<std::int64_t, std::size_t> index;  // series_id -> position in out
    {
        auto q = st.use(
            "SELECT s.series_id, s.sensor, s.metric, p.online, s.retired_max_id FROM series s "
            "LEFT JOIN sensors p ON p.sensor = s.sensor ORDER BY s.sensor, s.metric");
        while (q.step()) {
            series_info si;
            si.sensor = q.text(1);
            si.metric = q.text(2);
            if (!q.is_null(3)) si.online = q.int64(3) != 0;
            si.retired_max_id = q.int64(4);
            index.emplace(q.int64(0), out.size());
            sids.push_back(q.int64(0));
            out.push_back(std::move(si));
        }
    }
    for (std::size_t i = 0; i < out.size(); ++i) {
        auto& si = out[i];
        {
            // The rollups are exact (kept so by insert and retention): counting them reads
            // 1,440 rows a day instead of every reading.
            auto q = st.use("SELECT coalesce(sum(n), 0) FROM rollup_1m WHERE series_id = ?1");
            q.bind(1, sids[i]);
            if (q.step()) si.count = q.int64(0);
        }
        si.latest = impl_->latest_of(sids[i], si.sensor, si.metric);
        if (si.latest) si.unit = si.latest->unit;
    }

    // recent_ts, last_id and last_seq: one backward walk over the newest ids collects most series at once
    // (interleaved series are all found near the end); the walk is bounded, and series it did not
    // finish get an exact per-series query continuing below the lowest id walked.
    constexpr std::size_t recent_n = 32;
    std::size_t pending = 0;
    for (const auto& si : out)
        if (si.count > 0) ++pending;
    const std::size_t budget = std::max<std::size_t>(200'000, 64 * out.size());
    std::size_t walked = 0;
    std::int64_t lowest = INT64_MAX;
    bool reached_start = true;
    if (pending > 0) {
        auto q = st.use("SELECT id, series_id, ts, seq FROM readings ORDER BY id DESC");
        while (pending > 0) {
            if (walked == budget) {
                reached_start = false;
                break;
            }
            if (!q.step()) break;
            ++walked;
            lowest = q.int64(0);
            auto it = index.find(q.int64(1));
            if (it == index.end()) continue;  // a series created after our series list
            auto& si = out[it->second];
            if (si.recent_ts.size() == recent_n) continue;
            if (si.last_id == 0) {
                si.last_id = lowest;
                if (!q.is_null(3)) si.last_seq = q.int64(3);
            }
            si.recent_ts.push_back(q.int64(2));
            if (si.recent_ts.size() == recent_n ||
                static_cast<std::int64_t>(si.recent_ts.size()) == si.count)
                --pending;
        }
        if (pending == 0) reached_start = true;
    }
    for (std::size_t i = 0; i < out.size(); ++i) {
        auto& si = out[i];
        if (!reached_start && si.recent_ts.size() < recent_n &&
            static_cast<std::int64_t>(si.recent_ts.size()) < si.count) {
            auto q = st.use(
                "SELECT id, ts, seq FROM readings WHERE series_id = ?1 AND id < ?2 "
                "ORDER BY id DESC LIMIT ?3");
            q.bind(1, sids[i]).bind(2, lowest).bind(
                3, static_cast<std::int64_t>(recent_n - si.recent_ts.size()));
            while (q.step()) {
                if (si.last_id == 0) {
                    si.last_id = q.int64(0);
                    if (!q.is_null(2)) si.last_seq = q.int64(2);
                }
                si.recent_ts.push_back(q.int64(1));
            }
        }
        std::reverse(si.recent_ts.begin(), si.recent_ts.end());  // collected newest first
    }
    txn.commit();
    return out;
}

bucket_seed reader::seed_bucket(std::string_view sensor, std::string_view metric, std::int64_t before_id,
                                std::int64_t bucket_ms, std::int64_t ts) {
    if (bucket_ms <= 0) throw std::invalid_argument("bucket must be positive");
    bucket_seed out;
    const auto sid = impl_->find_series(sensor, metric);
    if (!sid) return out;
    detail::transaction txn(impl_->stmts, detail::transaction::kind::read);
    {
        // Newest ts first along (series_id, ts, id): the first row below the id bound is the one.
        auto q = impl_->stmts.use(
            "SELECT ts FROM readings WHERE series_id = ?1 AND id < ?2 ORDER BY ts DESC LIMIT 1");
        q.bind(1, *sid).bind(2, before_id);
        if (q.step()) out.newest_ts = q.int64(0);
    }
    auto of_bucket = [&](std::int64_t in_ts) {
        partial_bucket p;
        const std::int64_t lo = detail::sat_mul(detail::floor_div(in_ts, bucket_ms), bucket_ms);
        std::int64_t hi = 0;
        if (__builtin_add_overflow(lo, bucket_ms - 1, &hi)) hi = INT64_MAX;
        auto q = impl_->stmts.use(
            "SELECT count(*), min(value), max(value), total(value) FROM readings "
            "WHERE series_id = ?1 AND ts BETWEEN ?2 AND ?3 AND id < ?4");
        q.bind(1, *sid).bind(2, lo).bind(3, hi).bind(4, before_id);
        if (q.step() && q.int64(0) > 0) p = partial_bucket{q.int64(0), q.real(1), q.real(2), q.real(3)};
        return p;
    };
    if (out.newest_ts) out.newest = of_bucket(*out.newest_ts);
    out.at = of_bucket(ts);
    txn.commit();
    return out;
}

std::vector<reading> reader::after_id(std::int64_t after, std::size_t limit) {
    std::vector<reading> out;
    if (limit == 0) return out;
    auto q = impl_->stmts.use(
        "SELECT r.id, r.ts, r.value, r.unit, r.seq, s.sensor, s.metric "
        "FROM readings r JOIN series s ON s.series_id = r.series_id "
        "WHERE r.id > ?1 ORDER BY r.id LIMIT ?2");
    q.bind(1, after).bind(2, static_cast<std::int64_t>(std::min<std::size_t>(limit, INT64_MAX)));
    while (q.step()) out.push_back(row_reading(q, q.text(5), q.text(6)));
    return out;
}

std::int64_t reader::max_id() {
    auto q = impl_->stmts.use(
        "SELECT max(coalesce((SELECT max(id) FROM readings), 0),"
        " coalesce((SELECT value FROM meta WHERE key = 'retired_max_id'), 0))");
    return q.step() ? q.int64(0) : 0;
}

retired_after reader::retired_since(std::int64_t after) {
    retired_after out;
    // One snapshot for both; the series table is small (one row per series), a scan is cheap.
    detail::transaction txn(impl_->stmts, detail::transaction::kind::read);
    out.unattributed = after < retired_unattributed();
    auto q = impl_->stmts.use("SELECT sensor, metric FROM series WHERE retired_max_id > ?1");
    q.bind(1, after);
    while (q.step()) out.series.emplace_back(q.text(0), q.text(1));
    txn.commit();
    return out;
}

std::uint32_t reader::epoch() {
    auto q = impl_->stmts.use("SELECT value FROM meta WHERE key = 'epoch'");
    if (!q.step()) throw storage_error("storage: the database has no epoch (open a writer first)");
    return static_cast<std::uint32_t>(q.int64(0));
}

std::int64_t reader::retired_unattributed() {
    auto q = impl_->stmts.use("SELECT coalesce((SELECT value FROM meta WHERE key = 'retired_unattributed'), 0)");
    return q.step() ? q.int64(0) : 0;
}

std::int64_t reader::oldest_id() {
    auto q = impl_->stmts.use("SELECT coalesce(min(id), 0) FROM readings");
    return q.step() ? q.int64(0) : 0;
}

}  // namespace telemetry::storage
