// Benchmark: aggregate() over 1,000,000 readings of one day vs a naive GROUP BY, and insert rate.
#include "database.hpp"

#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace telemetry;
using namespace telemetry::storage;
using clock_type = std::chrono::steady_clock;

namespace {

double ms_since(clock_type::time_point t0) {
    return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

struct stats {
    double median, min, max;
};
stats summarize(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return {v[v.size() / 2], v.front(), v.back()};
}

// Times fn() `runs` times after one warm-up run.
template <class F>
stats time_runs(int runs, F&& fn) {
    fn();
    std::vector<double> t;
    for (int i = 0; i < runs; ++i) {
        const auto t0 = clock_type::now();
        fn();
        t.push_back(ms_since(t0));
    }
    return summarize(t);
}

}  // namespace

int main(int argc, char** argv) {
    const std::size_t total = argc > 1 ? std::stoul(argv[1]) : 1'000'000;
    constexpr std::size_t batch = 1000;
    constexpr int runs = 15;
    const std::int64_t day_start = 1'732'233'600'000;  // 2024-11-22T00:00:00Z
    const std::int64_t day_ms = 86'400'000;

    std::string tmpl = (fs::temp_directory_path() / "aggregate_bench_XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) {
        std::perror("mkdtemp");
        return 1;
    }
    const fs::path dir = tmpl;
    const fs::path db = dir / "bench.db";
    int rc = 0;
    try {
        // Insert: evenly spread over the day with a little jitter, 1000 readings per transaction.
        double insert_ms = 0;
        {
            writer w(db);
            std::mt19937_64 rng(1);
            std::vector<reading> rs(batch);
            for (auto& r : rs) {
                r.sensor = "bench-01";
                r.metric = "temperature";
                r.unit = "Cel";
            }
            const auto t0 = clock_type::now();
            for (std::size_t i = 0; i < total; i += batch) {
                for (std::size_t j = 0; j < batch; ++j) {
                    const std::size_t k = i + j;
                    auto& r = rs[j];
                    r.ts = day_start + static_cast<std::int64_t>(k) * day_ms /
                                           static_cast<std::int64_t>(total) +
                           static_cast<std::int64_t>(rng() % 20);
                    r.value = 20.0 + static_cast<double>(rng() % 1000) / 100.0;
                    r.seq = static_cast<std::int64_t>(k);
                }
                w.insert(rs);
            }
            insert_ms = ms_since(t0);
            std::printf("insert: %zu readings in %.0f ms = %.0f rows/s (batches of %zu)\n",
                        total, insert_ms, static_cast<double>(total) / insert_ms * 1000.0, batch);

            // What the bridge does: one MQTT message, one reading, one transaction.
            constexpr std::size_t singles = 20'000;
            reading one;
            one.sensor = "bench-02";
            one.metric = "temperature";
            one.unit = "Cel";
            const auto t1 = clock_type::now();
            for (std::size_t k = 0; k < singles; ++k) {
                one.ts = day_start + static_cast<std::int64_t>(k) * 1000;
                one.seq = static_cast<std::int64_t>(k);
                one.value = static_cast<double>(k % 100);
                w.insert(std::span<const reading>(&one, 1));
            }
            const double single_ms = ms_since(t1);
            std::printf("insert: %zu single-reading transactions in %.0f ms = %.0f rows/s\n",
                        singles, single_ms, static_cast<double>(singles) / single_ms * 1000.0);
        }

        reader r(db);
        aggregate_query q;
        q.sensor = "bench-01";
        q.metric = "temperature";
        q.from = day_start;
        q.to = day_start + day_ms;
        q.bucket_ms = 60'000;
        std::size_t buckets = 0;
        const auto agg = time_runs(runs, [&] { buckets = r.aggregate(q).size(); });
        std::printf("aggregate() 1m buckets, whole day: %zu buckets, median %.2f ms (min %.2f, "
                    "max %.2f) over %d runs\n",
                    buckets, agg.median, agg.min, agg.max, runs);

        q.from = INT64_MIN;
        q.to = INT64_MAX;
        const auto unb = time_runs(runs, [&] { buckets = r.aggregate(q).size(); });
        std::printf("aggregate() 1m buckets, unbounded: %zu buckets, median %.2f ms\n", buckets,
                    unb.median);

        q.from = day_start + 12'345;
        q.to = day_start + day_ms - 54'321;
        q.bucket_ms = 3'600'000;
        const auto hour = time_runs(runs, [&] { buckets = r.aggregate(q).size(); });
        std::printf("aggregate() 1h buckets, unaligned: %zu buckets, median %.2f ms\n", buckets,
                    hour.median);

        q.from = day_start;
        q.to = day_start + day_ms;
        q.bucket_ms = 10'000;
        const auto raw = time_runs(3, [&] { buckets = r.aggregate(q).size(); });
        std::printf("aggregate() 10s buckets (raw rows): %zu buckets, median %.2f ms\n", buckets,
                    raw.median);

        // The naive way, on the same file, through a plain read-only connection.
        connection c(db, connection::mode::read_only);
        sqlite3_stmt* s = nullptr;
        const char* sql =
            "SELECT (ts/60000)*60000, count(*), min(value), max(value), avg(value) FROM readings "
            "WHERE series_id = ? AND ts >= ? AND ts < ? GROUP BY 1";
        if (sqlite3_prepare_v2(c.handle(), sql, -1, &s, nullptr) != SQLITE_OK) {
            std::fprintf(stderr, "prepare: %s\n", sqlite3_errmsg(c.handle()));
            return 1;
        }
        std::size_t rows = 0;
        const auto naive = time_runs(runs, [&] {
            sqlite3_bind_int64(s, 1, 1);
            sqlite3_bind_int64(s, 2, day_start);
            sqlite3_bind_int64(s, 3, day_start + day_ms);
            rows = 0;
            while (sqlite3_step(s) == SQLITE_ROW) ++rows;
            sqlite3_reset(s);
        });
        sqlite3_finalize(s);
        std::printf("naive GROUP BY 1m, whole day:      %zu buckets, median %.2f ms (min %.2f, "
                    "max %.2f) over %d runs\n",
                    rows, naive.median, naive.min, naive.max, runs);

        const auto t0 = clock_type::now();
        const auto series = r.all_series();
        std::printf("all_series(): %zu series, %.2f ms\n", series.size(), ms_since(t0));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench failed: %s\n", e.what());
        rc = 1;
    }
    std::error_code ec;
    fs::remove_all(dir, ec);
    return rc;
}
