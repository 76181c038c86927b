// Tests of the storage engines: the interface of store.hpp on both SQLite (real files in a
// temporary directory) and PostgreSQL (a throwaway cluster), then what only SQLite has.
#include "backup.hpp"
#include "database.hpp"
#include "postgresql.hpp"

#include "integration/pg_cluster.hpp"
#include "temp_dir.hpp"

#include <doctest/doctest.h>

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

namespace fs = std::filesystem;
using namespace telemetry;
using namespace telemetry::storage;

namespace {

// A fresh directory with the test's database in it.
struct temp_dir : telemetry::testing::temp_dir {
    fs::path db() const { return *this / "telemetry.db"; }
};

reading make(std::string sensor, std::string metric, std::int64_t ts, double value,
             std::optional<std::int64_t> seq = std::nullopt, std::string unit = "Cel") {
    reading r;
    r.sensor = std::move(sensor);
    r.metric = std::move(metric);
    r.ts = ts;
    r.value = value;
    r.seq = seq;
    r.unit = std::move(unit);
    return r;
}

history_query hq(std::string sensor, std::string metric) {
    history_query q;
    q.sensor = std::move(sensor);
    q.metric = std::move(metric);
    return q;
}

aggregate_query aq(std::string sensor, std::string metric, std::int64_t from = INT64_MIN,
                   std::int64_t to = INT64_MAX, std::int64_t bucket_ms = 60'000) {
    aggregate_query q;
    q.sensor = std::move(sensor);
    q.metric = std::move(metric);
    q.from = from;
    q.to = to;
    q.bucket_ms = bucket_ms;
    return q;
}

std::vector<reading> put(store_writer& w, std::vector<reading> rs) { return w.insert(rs); }

std::int64_t pragma_int(connection& c, const char* sql) {
    sqlite3_stmt* s = nullptr;
    REQUIRE(sqlite3_prepare_v2(c.handle(), sql, -1, &s, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(s) == SQLITE_ROW);
    const std::int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

std::string pragma_text(connection& c, const char* sql) {
    sqlite3_stmt* s = nullptr;
    REQUIRE(sqlite3_prepare_v2(c.handle(), sql, -1, &s, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(s) == SQLITE_ROW);
    std::string v = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return v;
}

std::int64_t count_rows(const fs::path& db) {
    connection c(db, connection::mode::read_only);
    return pragma_int(c, "SELECT count(*) FROM readings");
}

// The engines the interface tests run on (STORE_TEST_CASE). Each gives a fresh, empty store,
// writers and readers on it, and a way to look into it with SQL (tables of the same names).
struct sqlite_store {
    temp_dir dir;
    std::unique_ptr<store_writer> writer() { return std::make_unique<storage::writer>(dir.db()); }
    std::unique_ptr<store_reader> reader() { return std::make_unique<storage::reader>(dir.db()); }
    std::int64_t scalar(const char* sql) {
        connection c(dir.db(), connection::mode::read_only);
        return pragma_int(c, sql);
    }
};

// A fresh database on the test process's throwaway cluster.
struct postgresql_store {
    std::string url = telemetry::testing::shared_pg_cluster().create_database();
    std::unique_ptr<store_writer> writer() { return std::make_unique<postgresql_writer>(url); }
    std::unique_ptr<store_reader> reader() { return std::make_unique<postgresql_reader>(url); }
    std::int64_t scalar(const char* sql) {
        const std::string db = url.substr(url.rfind('/') + 1);
        return std::stoll(telemetry::testing::shared_pg_cluster().psql(db, sql));
    }
};

template <typename Store>
std::int64_t count_rows(Store& s) {
    return static_cast<std::int64_t>(s.reader()->after_id(0, SIZE_MAX).size());
}

}  // namespace

TYPE_TO_STRING_AS("sqlite", sqlite_store);
TYPE_TO_STRING_AS("postgresql", postgresql_store);
// A test of the engine-neutral interface, run once per engine: "<name><sqlite>", "<name><postgresql>".
#define STORE_TEST_CASE(name) TEST_CASE_TEMPLATE(name, store, sqlite_store, postgresql_store)

TEST_CASE("storage migrations create the schema and reopen idempotently") {
    temp_dir dir;
    { writer w(dir.db()); }
    {
        connection c(dir.db(), connection::mode::read_write);
        CHECK(pragma_int(c, "PRAGMA user_version") == schema_version);
        CHECK(pragma_int(c, "PRAGMA auto_vacuum") == 2);  // INCREMENTAL
        CHECK(pragma_text(c, "PRAGMA journal_mode") == "wal");
        CHECK(pragma_int(c, "PRAGMA synchronous") == 1);  // NORMAL
        CHECK(pragma_int(c, "PRAGMA secure_delete") == 0);
        CHECK(pragma_int(c, "PRAGMA busy_timeout") == 5000);
        CHECK(migrate(c) == schema_version);
        CHECK(migrate(c) == schema_version);
        CHECK(pragma_int(c, "SELECT count(*) FROM sqlite_schema WHERE name = 'rollup_1m'") == 1);
    }
    writer again(dir.db());
    reader r(dir.db());
    CHECK(r.max_id() == 0);
    CHECK(r.oldest_id() == 0);
    CHECK(r.all_series().empty());
}

STORE_TEST_CASE("storage refuses a reader before any writer created the schema") {
    store s;
    CHECK_THROWS_AS(s.reader(), storage_error);
    s.writer();
    CHECK(s.reader()->max_id() == 0);
}

TEST_CASE("storage refuses a file with a newer schema") {
    temp_dir dir;
    { writer w(dir.db()); }
    {
        connection c(dir.db(), connection::mode::read_write);
        c.exec("PRAGMA user_version = 99");
        CHECK_THROWS_AS(migrate(c), storage_error);
    }
}

STORE_TEST_CASE("storage ids strictly increase and survive reopen") {
    store s;
    std::int64_t last = 0;
    {
        auto w = s.writer();
        for (int i = 0; i < 5; ++i) {
            auto got = put(*w, {make("a", "t", 1000 + i, i), make("b", "t", 1000 - i, i)});
            REQUIRE(got.size() == 2);
            CHECK(got[0].id > last);
            CHECK(got[1].id == got[0].id + 1);
            last = got[1].id;
        }
    }
    auto w = s.writer();
    auto got = put(*w, {make("a", "t", 5, 1)});
    REQUIRE(got.size() == 1);
    CHECK(got[0].id == last + 1);
    auto r = s.reader();
    CHECK(r->max_id() == last + 1);
    CHECK(r->oldest_id() == 1);
}

STORE_TEST_CASE("storage the epoch is kept with the data, the same for every reader, new for a new store") {
    store s;
    s.writer();
    const auto e = s.reader()->epoch();
    CHECK(s.reader()->epoch() == e);
    s.writer();  // reopening (and migrating again) keeps it
    CHECK(s.reader()->epoch() == e);
    // Two fresh stores: different epochs (equal with probability 2^-32).
    store other;
    other.writer();
    CHECK(other.reader()->epoch() != e);
}

TEST_CASE("storage backup copies a database being written, restore renews the epoch and is refused while in use") {
    temp_dir dir;
    const fs::path copy = dir / "backup.db";
    writer w(dir.db());
    std::vector<reading> rs;
    for (int i = 0; i < 20'000; ++i) rs.push_back(make("a", "t", i, i, i));
    w.insert(rs);
    const auto epoch = reader(dir.db()).epoch();
    // The writer goes on committing while the backup copies: the copy is one consistent snapshot.
    std::atomic<bool> stop{false};
    std::thread t([&] {
        for (int i = 0; !stop; ++i) put(w, {make("b", "t", i, 1)});
    });
    const auto b = backup(dir.db(), copy);
    stop = true;
    t.join();
    CHECK(b.readings >= 20'000);
    CHECK(b.newest_id == b.readings);
    CHECK(b.epoch == epoch);
    CHECK(!fs::exists(fs::path(copy.string() + "-wal")));
    {
        connection c(copy, connection::mode::read_only);
        CHECK(pragma_text(c, "PRAGMA integrity_check") == "ok");
        CHECK(pragma_int(c, "SELECT count(*) FROM readings") == b.readings);
        CHECK(pragma_int(c, "SELECT max(id) FROM readings") == b.readings);  // no hole: a snapshot
    }
    {
        const exclusive_use held(dir.db());  // as a running bridge holds it
        CHECK_THROWS_WITH_AS(restore(copy, dir.db()), doctest::Contains("in use by another process"), storage_error);
        CHECK_THROWS_AS(exclusive_use{dir.db()}, storage_error);
    }
    const std::int64_t before = reader(dir.db()).max_id();
    CHECK(before > b.newest_id);
    const auto r = restore(copy, dir.db());
    CHECK(r.readings == b.readings);
    CHECK(r.newest_id == b.newest_id);
    CHECK(r.epoch != epoch);
    reader after(dir.db());
    CHECK(after.epoch() == r.epoch);
    CHECK(after.max_id() == b.newest_id);
    // The restored database takes writes again, continuing its own ids.
    writer again(dir.db());
    CHECK(put(again, {make("c", "t", 1, 1)}).at(0).id == b.newest_id + 1);
    // Not a database of ours: refused, the database untouched.
    std::ofstream(dir / "junk.db") << std::string(8192, 'x');
    CHECK_THROWS_AS(restore(dir / "junk.db", dir.db()), storage_error);
    CHECK_THROWS_AS(restore(dir / "missing.db", dir.db()), storage_error);
    CHECK(reader(dir.db()).max_id() == b.newest_id + 1);
}

TEST_CASE("storage restore sets aside the files of the replaced database, and one that fails changes nothing") {
    temp_dir dir;
    const fs::path copy = dir / "backup.db";
    {
        writer w(dir.db());
        put(w, {make("a", "t", 1, 1), make("a", "t", 2, 2)});
        backup(dir.db(), copy);
        put(w, {make("a", "t", 3, 3)});
    }
    const auto epoch = reader(dir.db()).epoch();
    const fs::path journal = dir.db().string() + ".ingest-journal";
    std::ofstream(journal) << "what the replaced database had journaled";
    // The journal cannot be set aside (a directory is in the way): the restore fails before the
    // database is touched, and leaves no temporary file.
    fs::create_directories(fs::path(journal.string() + ".pre-restore") / "in-the-way");
    CHECK_THROWS_AS(restore(copy, dir.db(), {journal}), storage_error);
    {
        reader r(dir.db());
        CHECK(r.epoch() == epoch);
        CHECK(r.max_id() == 3);
    }
    for (const auto& e : fs::directory_iterator(dir.path()))
        CHECK_MESSAGE(e.path().filename().string().find(".tmp-") == std::string::npos, e.path());
    fs::remove_all(fs::path(journal.string() + ".pre-restore"));
    const auto r = restore(copy, dir.db(), {journal, dir.db().string() + ".not-there"});
    REQUIRE(r.set_aside.size() == 1);
    CHECK(r.set_aside[0] == fs::path(journal.string() + ".pre-restore"));
    CHECK(!fs::exists(journal));
    CHECK(reader(dir.db()).max_id() == 2);
    CHECK(reader(dir.db()).epoch() != epoch);
    // A backup is never written over the database or a file beside it.
    for (const std::string suffix : {"", "-wal", ".ingest-journal", ".lock"})
        CHECK_THROWS_AS(backup(dir.db(), dir.db().string() + suffix), storage_error);
    CHECK_THROWS_AS(restore(dir.db(), dir.db()), storage_error);
}

TEST_CASE("storage ids are not reused after retention deleted the newest rows") {
    temp_dir dir;
    std::int64_t newest = 0;
    {
        writer w(dir.db());
        put(w, {make("a", "t", 100'000, 1)});
        // The newest ids carry the oldest ts: retention removes exactly them.
        auto got = put(w, {make("a", "t", 10, 2), make("b", "t", 20, 3)});
        newest = got.back().id;
        retainer ret(dir.db());
        auto res = ret.run(50'000);
        CHECK(res.deleted == 2);
        reader r(dir.db());
        CHECK(r.max_id() == newest);
        CHECK(r.oldest_id() == 1);
        // Which series lost readings after which id: a client after id 2 lost only b's.
        using names = std::pair<std::string, std::string>;
        CHECK(res.retired_per_series == std::map<names, std::int64_t>{{{"a", "t"}, 2}, {{"b", "t"}, 3}});
        CHECK(r.retired_since(1).series == std::vector<names>{{"a", "t"}, {"b", "t"}});
        CHECK(r.retired_since(2).series == std::vector<names>{{"b", "t"}});
        CHECK(r.retired_since(3).series.empty());
        CHECK_FALSE(r.retired_since(0).unattributed);
        const auto all = r.all_series();
        REQUIRE(all.size() == 2);
        CHECK(all[0].retired_max_id == 2);
        CHECK(all[1].retired_max_id == 3);
        // The running writer keeps counting from memory.
        CHECK(put(w, {make("a", "t", 100'001, 4)})[0].id == newest + 1);
        newest += 1;
    }
    {
        writer w(dir.db());
        retainer ret(dir.db());
        CHECK(ret.run(200'000).deleted == 2);  // everything, including the newest id
        reader r(dir.db());
        CHECK(r.max_id() == newest);
        CHECK(r.oldest_id() == 0);
    }
    writer w(dir.db());
    CHECK(put(w, {make("a", "t", 5, 1)})[0].id == newest + 1);
}

TEST_CASE("storage a schema 1 database keeps what retention deleted as concerning every series") {
    temp_dir dir;
    {
        writer w(dir.db());
        put(w, {make("a", "t", 10, 1), make("a", "t", 100'000, 2)});
    }
    {
        // Back to schema 1, as a database written by an earlier version after retention deleted
        // ids up to 5 would be.
        connection c(dir.db(), connection::mode::read_write);
        c.exec("ALTER TABLE series DROP COLUMN retired_max_id");
        c.exec("INSERT INTO meta(key, value) VALUES('retired_max_id', 5)");
        c.exec("PRAGMA user_version = 1");
    }
    writer w(dir.db());
    reader r(dir.db());
    CHECK(r.retired_unattributed() == 5);
    CHECK(r.retired_since(4).unattributed);
    CHECK_FALSE(r.retired_since(5).unattributed);
    CHECK(put(w, {make("a", "t", 100'001, 3)})[0].id == 6);  // ids still never go back
    retainer ret(dir.db());
    CHECK(ret.run(50).deleted == 1);
    CHECK(r.retired_since(0).series == std::vector<std::pair<std::string, std::string>>{{"a", "t"}});
    CHECK(r.retired_unattributed() == 5);
}

TEST_CASE("storage a schema 3 database loses its redelivery index and still stores a redelivery once") {
    temp_dir dir;
    {
        writer w(dir.db());
        put(w, {make("a", "t", 1000, 1.5, 7)});
    }
    {
        // Back to schema 3, as an earlier version wrote it: with the partial unique index.
        connection c(dir.db(), connection::mode::read_write);
        c.exec("CREATE UNIQUE INDEX readings_redelivery ON readings(series_id, seq, ts) WHERE seq IS NOT NULL");
        c.exec("PRAGMA user_version = 3");
    }
    writer w(dir.db());
    {
        connection c(dir.db(), connection::mode::read_only);
        CHECK(pragma_int(c, "PRAGMA user_version") == 4);
        CHECK(pragma_int(c, "SELECT count(*) FROM sqlite_schema WHERE name = 'readings_redelivery'") == 0);
        CHECK(pragma_int(c, "SELECT count(*) FROM sqlite_schema WHERE name = 'readings_by_series_ts'") == 1);
    }
    CHECK(put(w, {make("a", "t", 1000, 1.5, 7)}).empty());
    // Another reading at the same ts: a seq that differs, and one without seq, are both new.
    CHECK(put(w, {make("a", "t", 1000, 1.5, 8), make("a", "t", 1000, 1.5)}).size() == 2);
    // A redelivery older than the series' newest reading is found too.
    CHECK(put(w, {make("a", "t", 5000, 2.0, 9)}).size() == 1);
    CHECK(put(w, {make("a", "t", 1000, 1.5, 7), make("a", "t", 1000, 1.5, 8)}).empty());
    reader r(dir.db());
    REQUIRE(r.all_series().size() == 1);
    CHECK(r.all_series()[0].count == 4);
}

STORE_TEST_CASE("storage redelivery with the same seq and ts is stored once") {
    store s;
    auto w = s.writer();
    auto first = put(*w, {make("a", "t", 1000, 1.5, 7)});
    REQUIRE(first.size() == 1);
    CHECK(put(*w, {make("a", "t", 1000, 1.5, 7)}).empty());
    // Within one batch too, and mixed with a new reading.
    auto mixed = put(*w, {make("a", "t", 1000, 1.5, 7), make("a", "t", 2000, 2.5, 8),
                         make("a", "t", 2000, 2.5, 8)});
    REQUIRE(mixed.size() == 1);
    CHECK(mixed[0].seq == 8);
    CHECK(mixed[0].id == first[0].id + 1);  // a skipped redelivery consumes no id
    // A restarted sensor counts seq from zero again with new ts: not a duplicate.
    CHECK(put(*w, {make("a", "t", 3000, 9.0, 7)}).size() == 1);
    // The same seq and ts on another series is another reading.
    CHECK(put(*w, {make("b", "t", 1000, 1.5, 7)}).size() == 1);
    CHECK(count_rows(s) == 4);
    auto r = s.reader();
    auto all = r->all_series();
    REQUIRE(all.size() == 2);
    CHECK(all[0].count == 3);
}

STORE_TEST_CASE("storage readings without seq are never deduplicated") {
    store s;
    auto w = s.writer();
    CHECK(put(*w, {make("a", "t", 1000, 1.0), make("a", "t", 1000, 1.0)}).size() == 2);
    CHECK(put(*w, {make("a", "t", 1000, 1.0)}).size() == 1);
    CHECK(count_rows(s) == 3);
}

STORE_TEST_CASE("storage a failed batch stores nothing and consumes no id") {
    store s;
    auto w = s.writer();
    put(*w, {make("a", "t", 1, 1)});
    CHECK_THROWS_AS(put(*w, {make("a", "t", 2, 1), make("a", "t", 3, NAN)}), std::invalid_argument);
    CHECK(count_rows(s) == 1);
    CHECK(put(*w, {make("c", "t", 4, 1)})[0].id == 2);
    auto r = s.reader();
    CHECK(r->all_series().size() == 2);
}

STORE_TEST_CASE("storage latest picks the greatest ts then the greatest id") {
    store s;
    auto w = s.writer();
    auto r = s.reader();
    CHECK_FALSE(r->latest("a", "t").has_value());
    put(*w, {make("a", "t", 500, 1), make("a", "t", 900, 2), make("a", "t", 100, 3)});
    auto l = r->latest("a", "t");
    REQUIRE(l.has_value());
    CHECK(l->value == 2);
    auto tie = put(*w, {make("a", "t", 900, 4, std::nullopt, "K")});
    l = r->latest("a", "t");
    REQUIRE(l.has_value());
    CHECK(*l == tie[0]);
    CHECK(l->unit == "K");
    put(*w, {make("a", "t", 50, 5)});  // late arrival: not the latest
    CHECK(r->latest("a", "t")->id == tie[0].id);
}

STORE_TEST_CASE("storage history pages through all rows in both orders") {
    store s;
    auto w = s.writer();
    std::vector<reading> all;
    std::mt19937 rng(42);
    for (int batch = 0; batch < 10; ++batch) {
        std::vector<reading> rs;
        for (int i = 0; i < 25; ++i)
            rs.push_back(make("s", "m", static_cast<std::int64_t>(rng() % 60) - 10, i, i));
        for (auto& x : w->insert(rs)) all.push_back(x);
        put(*w, {make("other", "m", 5, 1)});
    }
    std::sort(all.begin(), all.end(),
              [](const reading& a, const reading& b) { return std::pair(a.ts, a.id) < std::pair(b.ts, b.id); });
    auto r = s.reader();
    for (bool desc : {false, true}) {
        for (std::size_t limit : {1u, 7u, 250u, 1000u}) {
            CAPTURE(desc);
            CAPTURE(limit);
            auto q = hq("s", "m");
            q.descending = desc;
            q.limit = limit;
            std::vector<reading> got;
            std::size_t pages = 0;
            for (;;) {
                auto page = r->history(q);
                ++pages;
                CHECK(page.readings.size() <= limit);
                got.insert(got.end(), page.readings.begin(), page.readings.end());
                if (!page.next) break;
                CHECK(page.readings.size() == limit);
                q.cursor = page.next;
            }
            auto want = all;
            if (desc) std::reverse(want.begin(), want.end());
            CHECK(got == want);
            CHECK(pages == (all.size() + limit - 1) / limit);
        }
    }
    // A range: from inclusive, to exclusive.
    auto q = hq("s", "m");
    q.from = 0;
    q.to = 20;
    auto page = r->history(q);
    std::vector<reading> want;
    for (const auto& x : all)
        if (x.ts >= 0 && x.ts < 20) want.push_back(x);
    CHECK(page.readings == want);
    CHECK_FALSE(page.next.has_value());
    // Ranged pagination, descending.
    q.descending = true;
    q.limit = 3;
    std::vector<reading> got;
    for (;;) {
        auto p = r->history(q);
        got.insert(got.end(), p.readings.begin(), p.readings.end());
        if (!p.next) break;
        q.cursor = p.next;
    }
    std::reverse(want.begin(), want.end());
    CHECK(got == want);

    // A cursor of another series or another order is rejected, as is garbage.
    auto a = hq("s", "m");
    a.limit = 2;
    auto cur = r->history(a).next;
    REQUIRE(cur.has_value());
    auto foreign = hq("other", "m");
    foreign.cursor = cur;
    CHECK_THROWS_AS(r->history(foreign), std::invalid_argument);
    auto reversed = hq("s", "m");
    reversed.descending = true;
    reversed.cursor = cur;
    CHECK_THROWS_AS(r->history(reversed), std::invalid_argument);
    auto garbage = hq("s", "m");
    for (const std::string& bad : std::vector<std::string>{"", "a", "a.1.2", "a.1.2.zz", *cur + "0",
                                                           std::string("x").append(*cur, 1)}) {
        garbage.cursor = bad;
        CHECK_THROWS_AS(r->history(garbage), std::invalid_argument);
    }
    auto unknown = hq("nobody", "m");
    CHECK(r->history(unknown).readings.empty());
}

namespace {

std::vector<bucket> brute_force(const std::vector<reading>& rs, std::int64_t from, std::int64_t to,
                                std::int64_t b) {
    std::map<std::int64_t, std::vector<double>> m;
    for (const auto& r : rs) {
        if (r.ts < from || (to != INT64_MAX && r.ts >= to)) continue;
        std::int64_t k = r.ts / b;
        if (r.ts % b != 0 && r.ts < 0) --k;
        m[k * b].push_back(r.value);
    }
    std::vector<bucket> out;
    for (const auto& [t, vs] : m) {
        bucket x;
        x.t = t;
        x.count = static_cast<std::int64_t>(vs.size());
        x.min = *std::min_element(vs.begin(), vs.end());
        x.max = *std::max_element(vs.begin(), vs.end());
        double s = 0;
        for (double v : vs) s += v;
        x.avg = s / static_cast<double>(vs.size());
        out.push_back(x);
    }
    return out;
}

void check_same(const std::vector<bucket>& got, const std::vector<bucket>& want) {
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
        CAPTURE(i);
        CHECK(got[i].t == want[i].t);
        CHECK(got[i].count == want[i].count);
        CHECK(got[i].min == want[i].min);
        CHECK(got[i].max == want[i].max);
        CHECK(got[i].avg == doctest::Approx(want[i].avg).epsilon(1e-9));
    }
}

}  // namespace

STORE_TEST_CASE("storage aggregate equals a brute force computation") {
    store s;
    auto w = s.writer();
    std::mt19937_64 rng(7);
    std::vector<reading> all;
    // Around zero so negative ts (floor division) is covered; 3 hours; random batches.
    const std::int64_t span = 3 * 3'600'000;
    for (int batch = 0; batch < 40; ++batch) {
        std::vector<reading> rs;
        for (int i = 0; i < 100; ++i) {
            const auto ts = static_cast<std::int64_t>(rng() % span) - span / 3;
            rs.push_back(make("s", "m", ts, static_cast<double>(rng() % 10'000) / 7.0 - 500));
        }
        for (auto& x : w->insert(rs)) all.push_back(x);
        put(*w, {make("noise", "m", 0, 1e9)});
    }
    auto r = s.reader();
    const std::vector<std::int64_t> buckets = {10'000, 60'000, 300'000, 3'600'000, 7'000};
    const std::vector<std::pair<std::int64_t, std::int64_t>> ranges = {
        {INT64_MIN, INT64_MAX}, {-1'234'567, 4'567'891}, {0, 3'600'000}, {-59'999, 60'001},
        {123, 777}, {5'000'000, 5'000'000}, {INT64_MIN, 1}, {-1, INT64_MAX}};
    for (auto b : buckets) {
        for (auto [from, to] : ranges) {
            CAPTURE(b);
            CAPTURE(from);
            CAPTURE(to);
            check_same(r->aggregate(aq("s", "m", from, to, b)), brute_force(all, from, to, b));
        }
    }
    CHECK(r->aggregate(aq("nobody", "m")).empty());
    CHECK_THROWS_AS(r->aggregate(aq("s", "m", 0, 1, 0)), std::invalid_argument);
    // Extreme timestamps do not overflow.
    put(*w, {make("x", "m", INT64_MIN, 1), make("x", "m", INT64_MAX, 2), make("x", "m", 0, 3)});
    for (auto b : buckets) {
        auto got = r->aggregate(aq("x", "m", INT64_MIN, INT64_MAX, b));
        std::int64_t n = 0;
        for (const auto& x : got) n += x.count;
        CHECK(n == 3);
    }
}

TEST_CASE("storage retention deletes in chunks and keeps rollups exact") {
    temp_dir dir;
    writer w(dir.db());
    std::vector<reading> all;
    std::mt19937_64 rng(11);
    for (int batch = 0; batch < 30; ++batch) {
        std::vector<reading> rs;
        for (int i = 0; i < 100; ++i) {
            const auto ts = static_cast<std::int64_t>(rng() % 7'200'000);
            rs.push_back(make(batch % 3 == 0 ? "a" : "b", "t", ts, static_cast<double>(rng() % 1000)));
        }
        for (auto& x : w.insert(rs)) all.push_back(x);
    }
    const std::int64_t cutoff = 3'000'000 + 12'345;  // inside a minute
    std::map<std::pair<std::string, std::string>, std::int64_t> want;
    std::vector<reading> kept;
    for (const auto& x : all) {
        if (x.ts < cutoff)
            ++want[{x.sensor, x.metric}];
        else
            kept.push_back(x);
    }
    retainer ret(dir.db());
    auto res = ret.run(cutoff, 97);  // small chunks: many transactions, split minutes
    CHECK(res.deleted_per_series == want);
    CHECK(res.deleted == static_cast<std::int64_t>(all.size() - kept.size()));
    CHECK(ret.run(cutoff, 97).deleted == 0);
    CHECK(count_rows(dir.db()) == static_cast<std::int64_t>(kept.size()));

    reader r(dir.db());
    for (const char* s : {"a", "b"}) {
        std::vector<reading> mine;
        for (const auto& x : kept)
            if (x.sensor == s) mine.push_back(x);
        for (std::int64_t b : {60'000, 600'000, 45'000}) {
            check_same(r.aggregate(aq(s, "t", INT64_MIN, INT64_MAX, b)),
                       brute_force(mine, INT64_MIN, INT64_MAX, b));
            check_same(r.aggregate(aq(s, "t", 2'950'000, 3'200'000, b)),
                       brute_force(mine, 2'950'000, 3'200'000, b));
        }
        for (const auto& si : r.all_series())
            if (si.sensor == s) CHECK(si.count == static_cast<std::int64_t>(mine.size()));
    }
    // Inserting into the minute that holds the cutoff after retention stays exact.
    put(w, {make("a", "t", cutoff + 1, 5000)});
    std::vector<reading> mine;
    for (const auto& x : kept)
        if (x.sensor == "a") mine.push_back(x);
    mine.push_back(make("a", "t", cutoff + 1, 5000));
    check_same(r.aggregate(aq("a", "t", INT64_MIN, INT64_MAX, 60'000)),
               brute_force(mine, INT64_MIN, INT64_MAX, 60'000));
}

TEST_CASE("storage retention shrinks the file with incremental vacuum") {
    temp_dir dir;
    writer w(dir.db());
    std::vector<reading> rs;
    for (int i = 0; i < 20'000; ++i) rs.push_back(make("a", "t", i, i, i));
    w.insert(rs);
    {
        connection c(dir.db(), connection::mode::read_write);
        c.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    }
    const auto before = fs::file_size(dir.db());
    retainer ret(dir.db());
    CHECK(ret.run(19'000, 2000).deleted == 19'000);
    {
        connection c(dir.db(), connection::mode::read_write);
        c.exec("PRAGMA wal_checkpoint(TRUNCATE)");
        CHECK(pragma_int(c, "PRAGMA freelist_count") == 0);
    }
    CHECK(fs::file_size(dir.db()) < before / 2);
}

STORE_TEST_CASE("storage all_series reports every field") {
    store s;
    auto w = s.writer();
    std::vector<reading> rs;
    for (int i = 0; i < 40; ++i) rs.push_back(make("a", "temp", 1000 * i, i, i));
    put(*w, {make("b", "hum", 7, 50, std::nullopt, "%RH")});
    w->insert(rs);
    put(*w, {make("a", "temp", 5, -1, 99, "K")});  // late: newest id, not the latest
    w->set_status("a", true, 123);
    w->set_status("zzz", false, 1);  // presence of a sensor without readings
    auto r = s.reader();
    auto all = r->all_series();
    REQUIRE(all.size() == 2);
    const auto& a = all[0];
    CHECK(a.sensor == "a");
    CHECK(a.metric == "temp");
    CHECK(a.count == 41);
    CHECK(a.online == std::optional<bool>(true));
    REQUIRE(a.latest.has_value());
    CHECK(a.latest->ts == 39'000);
    CHECK(a.unit == "Cel");
    CHECK(a.last_id == 42);
    CHECK(a.last_seq == std::optional<std::int64_t>(99));  // of the newest id, not the latest ts
    CHECK(a.retired_max_id == 0);
    REQUIRE(a.recent_ts.size() == 32);
    CHECK(a.recent_ts.back() == 5);
    CHECK(a.recent_ts.front() == 1000 * 9);
    const auto& b = all[1];
    CHECK(b.sensor == "b");
    CHECK(b.unit == "%RH");
    CHECK_FALSE(b.online.has_value());
    CHECK(b.count == 1);
    CHECK(b.last_id == 1);
    CHECK_FALSE(b.last_seq.has_value());
    CHECK(b.recent_ts == std::vector<std::int64_t>{7});
}

TEST_CASE("storage all_series falls back for series far back in the id order") {
    temp_dir dir;
    writer w(dir.db());
    put(w, {make("old", "m", 1, 1, 7), make("old", "m", 2, 2, 8)});
    std::vector<reading> rs;
    for (int i = 0; i < 250'000; ++i) rs.push_back(make("busy", "m", i, i));
    for (std::size_t i = 0; i < rs.size(); i += 50'000)
        w.insert(std::span<const reading>(rs).subspan(i, 50'000));
    reader r(dir.db());
    auto all = r.all_series();
    REQUIRE(all.size() == 2);
    CHECK(all[0].sensor == "busy");
    CHECK(all[0].recent_ts.size() == 32);
    CHECK(all[0].recent_ts.back() == 249'999);
    CHECK(all[1].sensor == "old");
    CHECK(all[1].last_id == 2);
    CHECK(all[1].last_seq == std::optional<std::int64_t>(8));
    CHECK(all[1].recent_ts == std::vector<std::int64_t>{1, 2});
}

STORE_TEST_CASE("storage after_id replays in id order with names") {
    store s;
    auto w = s.writer();
    auto got = put(*w, {make("a", "t", 9, 1), make("b", "h", 1, 2, 5, ""), make("a", "t", 3, 3)});
    auto r = s.reader();
    CHECK(r->after_id(0, 100) == got);
    auto tail = r->after_id(got[0].id, 1);
    REQUIRE(tail.size() == 1);
    CHECK(tail[0] == got[1]);
    CHECK(r->after_id(got.back().id, 10).empty());
    CHECK(r->after_id(0, 0).empty());
}

STORE_TEST_CASE("storage set_status reports only changes") {
    store s;
    auto w = s.writer();
    CHECK(w->set_status("a", true, 1));
    CHECK_FALSE(w->set_status("a", true, 2));
    CHECK(w->set_status("a", false, 3));
    CHECK(w->set_status("b", false, 3));
    CHECK_FALSE(w->set_status("b", false, 4));
    CHECK(w->writable());
    CHECK(s.scalar("SELECT changed_at FROM sensors WHERE sensor = 'a'") == 3);
}

STORE_TEST_CASE("storage reader sees rows committed while it is open") {
    store s;
    auto w = s.writer();
    auto r = s.reader();
    CHECK(r->max_id() == 0);
    std::atomic<bool> done{false};
    std::atomic<std::int64_t> committed{0};
    std::thread t([&] {
        for (int i = 0; i < 2000; ++i) {
            auto got = put(*w, {make("a", "t", i, i, i)});
            committed = got[0].id;
        }
        done = true;
    });
    std::int64_t seen = 0;
    bool monotonic = true;
    while (!done) {
        const std::int64_t before = committed;
        const std::int64_t now = r->max_id();
        if (now < before || now < seen) monotonic = false;
        seen = now;
        r->after_id(std::max<std::int64_t>(0, now - 5), 10);
        r->history(hq("a", "t"));
    }
    t.join();
    CHECK(monotonic);
    CHECK(r->max_id() == 2000);
    CHECK(r->latest("a", "t")->ts == 1999);
}

STORE_TEST_CASE("storage reader opens after the writer closed") {
    store s;
    {
        auto w = s.writer();
        put(*w, {make("a", "t", 1, 1)});
    }
    auto r = s.reader();
    CHECK(r->max_id() == 1);
    auto w = s.writer();
    put(*w, {make("a", "t", 2, 1)});
    CHECK(r->max_id() == 2);
}

TEST_CASE("storage writer and retainer run concurrently") {
    temp_dir dir;
    writer w(dir.db());
    std::vector<reading> rs;
    for (int i = 0; i < 50'000; ++i) rs.push_back(make("a", "t", i, 1));
    w.insert(rs);
    retainer ret(dir.db());
    std::thread t([&] {
        for (int i = 0; i < 500; ++i) put(w, {make("a", "t", 100'000 + i, 1)});
    });
    auto res = ret.run(40'000, 500);
    t.join();
    CHECK(res.deleted == 40'000);
    reader r(dir.db());
    auto agg = r.aggregate(aq("a", "t", INT64_MIN, INT64_MAX, 3'600'000));
    REQUIRE(agg.size() == 1);
    CHECK(agg[0].count == 10'500);
}

STORE_TEST_CASE("storage seed_bucket sees only readings below the id bound, in one snapshot") {
    store s;
    auto w = s.writer();
    const auto stored = put(*w, {make("a", "t", 1'000, 1.0, 1), make("a", "t", 61'000, 4.0, 2),
                                 make("a", "t", 62'000, 2.0, 3), make("a", "t", 125'000, 9.0, 4),
                                 make("b", "t", 61'500, 100.0, 1)});
    REQUIRE(stored.size() == 5);
    auto r = s.reader();
    // Below the 4th reading: newest ts 62000, whose minute [60000, 120000) holds 4 and 2.
    auto seed = r->seed_bucket("a", "t", stored[3].id, 60'000, 65'000);
    REQUIRE(seed.newest_ts);
    CHECK(*seed.newest_ts == 62'000);
    CHECK(seed.newest.count == 2);
    CHECK(seed.newest.min == 2.0);
    CHECK(seed.newest.max == 4.0);
    CHECK(seed.newest.sum == 6.0);
    CHECK(seed.at.count == 2);
    // Below the 2nd: only ts 1000; the bucket of 125000 is empty.
    seed = r->seed_bucket("a", "t", stored[1].id, 60'000, 125'000);
    REQUIRE(seed.newest_ts);
    CHECK(*seed.newest_ts == 1'000);
    CHECK(seed.newest.count == 1);
    CHECK(seed.newest.sum == 1.0);
    CHECK(seed.at.count == 0);
    // Everything: the newest is 125000, alone in its minute; another series is not counted.
    seed = r->seed_bucket("a", "t", INT64_MAX, 60'000, 61'000);
    CHECK(*seed.newest_ts == 125'000);
    CHECK(seed.newest.count == 1);
    CHECK(seed.at.count == 2);
    // Nothing below the first id, an unknown series, a bad width.
    CHECK_FALSE(r->seed_bucket("a", "t", stored[0].id, 60'000, 1'000).newest_ts);
    CHECK_FALSE(r->seed_bucket("zz", "t", INT64_MAX, 60'000, 1'000).newest_ts);
    CHECK_THROWS_AS(r->seed_bucket("a", "t", INT64_MAX, 0, 1'000), std::invalid_argument);
    // Extreme times saturate instead of overflowing.
    put(*w, {make("c", "t", INT64_MAX, 1.0, 1), make("c", "t", INT64_MIN, 2.0, 2)});
    seed = r->seed_bucket("c", "t", INT64_MAX, 60'000, INT64_MIN);
    CHECK(*seed.newest_ts == INT64_MAX);
    CHECK(seed.newest.count == 1);
    CHECK(seed.at.count == 1);
}
