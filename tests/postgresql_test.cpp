// What only the PostgreSQL engine has, on a throwaway cluster: concurrent writers whose ids readers
// tailing by id see exactly once (and a control without the id lock showing that the same check
// catches the readings plain sequence ids lose), concurrent redeliveries, failed batches,
// reconnection, the schema version.
#include "postgresql.hpp"

#include "integration/pg_cluster.hpp"

#include <doctest/doctest.h>

#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace telemetry;
using namespace telemetry::storage;
using telemetry::testing::shared_pg_cluster;

namespace {

constexpr int writers = 3;
constexpr int batches = 40;     // per writer
constexpr int batch_size = 10;
constexpr int tail_readers = 2;

std::string db_name(const std::string& url) { return url.substr(url.rfind('/') + 1); }

// Every inserting statement sleeps up to 20 ms before its transaction commits, so that
// transactions overlap far more often than they would on their own. Under the id lock this only
// slows the writers down; with plain sequence ids it lets later ids commit first.
void slow_down_inserts(const std::string& url) {
    shared_pg_cluster().psql(db_name(url), R"sql(
CREATE FUNCTION pause_before_commit() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN PERFORM pg_sleep(random() * 0.02); RETURN NULL; END $$;
CREATE TRIGGER pause_before_commit AFTER INSERT ON readings
    FOR EACH STATEMENT EXECUTE FUNCTION pause_before_commit();
)sql");
}

// What one reader saw while tailing: the ids in the order after_id returned them.
struct tail_log {
    std::vector<std::int64_t> ids;
};

// Tails with after_id from 0 until the writers are done and a last query, started after they
// finished, finds nothing new.
void tail(const std::string& url, const std::atomic<bool>& writers_done, tail_log& log) {
    postgresql_reader r(url);
    std::int64_t after = 0;
    for (;;) {
        const bool finished = writers_done.load();  // before the query: it then sees every commit
        const auto got = r.after_id(after, 1000);
        for (const auto& x : got) {
            log.ids.push_back(x.id);
            after = x.id;
        }
        if (got.empty()) {
            if (finished) return;
            std::this_thread::yield();
        }
    }
}

// The ids stored, in id order.
std::vector<std::int64_t> table_ids(const std::string& url) {
    postgresql_reader r(url);
    std::vector<std::int64_t> out;
    for (const auto& x : r.after_id(0, SIZE_MAX)) out.push_back(x.id);
    return out;
}

// The check of issue 14 on what the readers saw and what the table holds at the end.
struct verdict {
    bool increasing = true;      // every reader's stream strictly increasing, so no id seen twice
    std::size_t missed = 0;      // stored ids a reader never saw, summed over the readers
    bool union_is_table = false; // the ids the readers saw together are exactly the table's
    std::string first_miss;
    bool holds() const { return increasing && missed == 0 && union_is_table; }
};

verdict check_streams(const std::vector<tail_log>& logs, const std::vector<std::int64_t>& table) {
    verdict v;
    std::set<std::int64_t> all_seen;
    for (const auto& log : logs) {
        if (std::adjacent_find(log.ids.begin(), log.ids.end(), std::greater_equal<>()) != log.ids.end())
            v.increasing = false;
        std::vector<std::int64_t> lost;
        std::set_difference(table.begin(), table.end(), log.ids.begin(), log.ids.end(),
                            std::back_inserter(lost));
        if (!lost.empty() && v.first_miss.empty()) v.first_miss = std::to_string(lost.front());
        v.missed += lost.size();
        all_seen.insert(log.ids.begin(), log.ids.end());
    }
    v.union_is_table = std::vector<std::int64_t>(all_seen.begin(), all_seen.end()) == table;
    return v;
}

// Runs `write(writer_index)` on `writers` threads while `tail_readers` threads tail the table.
std::vector<tail_log> race(const std::string& url, const std::function<void(int)>& write) {
    std::atomic<bool> done{false};
    std::vector<tail_log> logs(tail_readers);
    std::vector<std::thread> readers;
    for (auto& log : logs) readers.emplace_back([&] { tail(url, done, log); });
    std::vector<std::thread> ws;
    std::vector<std::string> errors(writers);
    for (int w = 0; w < writers; ++w)
        ws.emplace_back([&, w] {
            try {
                write(w);
            } catch (const std::exception& e) {
                errors[static_cast<std::size_t>(w)] = e.what();
            }
        });
    for (auto& t : ws) t.join();
    for (const auto& e : errors) CHECK_MESSAGE(e.empty(), "a writer failed: " << e);
    done = true;
    for (auto& t : readers) t.join();
    return logs;
}

reading make(int writer, int batch, int i) {
    reading r;
    r.sensor = "w" + std::to_string(writer);
    r.metric = "m";
    r.ts = batch * batch_size + i;
    r.value = i;
    r.seq = r.ts;
    r.unit = "Cel";
    return r;
}

// One libpq connection of the control's naive writer.
struct pq {
    PGconn* c;
    explicit pq(const std::string& url) : c(PQconnectdb(url.c_str())) {
        REQUIRE(PQstatus(c) == CONNECTION_OK);
    }
    ~pq() { PQfinish(c); }
    void exec(const std::string& sql) {
        PGresult* r = PQexec(c, sql.c_str());
        const auto st = PQresultStatus(r);
        const std::string err = PQresultErrorMessage(r);
        PQclear(r);
        REQUIRE_MESSAGE((st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK), err);
    }
};

// 3 writers commit batches (each with a redelivery of the previous one) while 2 readers tail:
// the check of issue 14 holds, the writers were told exactly the stored ids, and ids have no gaps.
void check_concurrent_writers(const std::string& url) {
    postgresql_writer{url};  // creates the schema
    slow_down_inserts(url);
    std::vector<std::vector<std::int64_t>> returned(writers);
    auto logs = race(url, [&](int w) {
        postgresql_writer wr(url);
        for (int b = 0; b < batches; ++b) {
            std::vector<reading> rs;
            for (int i = 0; i < batch_size; ++i) rs.push_back(make(w, b, i));
            if (b > 0) rs.push_back(make(w, b - 1, 0));  // a redelivery: skipped, no id
            for (const auto& x : wr.insert(rs)) returned[static_cast<std::size_t>(w)].push_back(x.id);
        }
    });
    const auto table = table_ids(url);
    CHECK(table.size() == static_cast<std::size_t>(writers * batches * batch_size));
    const auto v = check_streams(logs, table);
    CAPTURE(v.first_miss);
    CHECK(v.increasing);
    CHECK(v.missed == 0);
    CHECK(v.union_is_table);
    std::vector<std::int64_t> told;
    for (const auto& ids : returned) told.insert(told.end(), ids.begin(), ids.end());
    std::sort(told.begin(), told.end());
    CHECK(told == table);
    REQUIRE_FALSE(table.empty());
    CHECK(table.front() == 1);
    CHECK(table.back() == static_cast<std::int64_t>(table.size()));
    CHECK(postgresql_reader(url).max_id() == table.back());
}

}  // namespace

TEST_CASE("postgresql cursor concurrent writers commit in id order") {
    check_concurrent_writers(shared_pg_cluster().create_database());
}

TEST_CASE("postgresql cursor concurrent writers commit in id order on a repeatable read database") {
    // The writer relies on a fresh snapshot after the lock: it must not inherit an isolation level
    // that keeps one snapshot per transaction (the batch would then fail or miss redeliveries).
    const std::string url = shared_pg_cluster().create_database();
    shared_pg_cluster().psql("postgres", "ALTER DATABASE " + db_name(url) +
                                             " SET default_transaction_isolation = 'repeatable read'");
    check_concurrent_writers(url);
}

TEST_CASE("postgresql cursor negative control: plain sequence ids without the lock lose readings") {
    // The same race and the same check, but ids come from a sequence at insert time and nothing
    // orders the commits: a reader that has seen a later id never goes back for an earlier one
    // that commits after it. The check must report such ids, or it could not catch the bug.
    const std::string url = shared_pg_cluster().create_database();
    {
        postgresql_writer wr(url);
        std::vector<reading> series;
        for (int w = 0; w < writers; ++w) series.push_back(make(w, 0, 0));
        wr.insert(series);
    }
    slow_down_inserts(url);
    shared_pg_cluster().psql(db_name(url), "CREATE SEQUENCE naive_ids START 1000");
    auto logs = race(url, [&](int w) {
        pq c(url);
        for (int b = 1; b <= batches; ++b) {
            const auto first = std::to_string(b * batch_size), last = std::to_string(b * batch_size + batch_size - 1);
            c.exec("BEGIN");
            c.exec("INSERT INTO readings(id, series_id, ts, value, seq, unit) "
                   "SELECT nextval('naive_ids'), series_id, g, 0, g, 'Cel' "
                   "FROM series, generate_series(" + first + ", " + last + ") g "
                   "WHERE sensor = 'w" + std::to_string(w) + "' ORDER BY g");
            c.exec("COMMIT");
        }
    });
    const auto table = table_ids(url);
    CHECK(table.size() == static_cast<std::size_t>(writers + writers * batches * batch_size));
    const auto v = check_streams(logs, table);
    MESSAGE("readers missed " << v.missed << " ids that committed after a greater id, the first "
                              << v.first_miss);
    CHECK(v.increasing);  // after_id itself still returns ids in order
    CHECK_FALSE(v.holds());
}

TEST_CASE("postgresql two writers storing the same readings at once store them once") {
    const std::string url = shared_pg_cluster().create_database();
    postgresql_writer{url};
    slow_down_inserts(url);
    std::vector<reading> batch;
    for (int i = 0; i < 50; ++i) batch.push_back(make(0, 0, i));
    std::vector<reading> got[2];
    {
        std::vector<std::thread> ts;
        for (auto& g : got) ts.emplace_back([&] { g = postgresql_writer(url).insert(batch); });
        for (auto& t : ts) t.join();
    }
    // Whichever committed first stored them all; the other found every one a redelivery.
    CHECK(got[0].size() + got[1].size() == batch.size());
    CHECK((got[0].empty() || got[1].empty()));
    CHECK(table_ids(url).size() == batch.size());
}

TEST_CASE("postgresql a batch the server rejects stores nothing and consumes no id") {
    const std::string url = shared_pg_cluster().create_database();
    postgresql_writer w(url);
    REQUIRE(w.insert(std::vector<reading>{make(0, 0, 0)}).size() == 1);
    // Not UTF-8: the server refuses the batch inside its transaction.
    auto bad = make(1, 0, 1);
    bad.unit = "\xff";
    CHECK_THROWS_AS(w.insert(std::vector<reading>{make(2, 0, 0), bad}), storage_error);
    // The same writer goes on, with the next id, and no series of the failed batch exists.
    const auto next = w.insert(std::vector<reading>{make(0, 0, 1)});
    REQUIRE(next.size() == 1);
    CHECK(next[0].id == 2);
    postgresql_reader r(url);
    CHECK(r.all_series().size() == 1);
    CHECK(r.max_id() == 2);
}

TEST_CASE("postgresql a writer and a reader reconnect after the server dropped their sessions") {
    const std::string url = shared_pg_cluster().create_database();
    postgresql_writer w(url);
    postgresql_reader r(url);
    REQUIRE(w.insert(std::vector<reading>{make(0, 0, 0)}).size() == 1);
    REQUIRE(r.max_id() == 1);
    shared_pg_cluster().psql("postgres",
                             "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                             "WHERE datname = '" + db_name(url) + "' AND pid <> pg_backend_pid()");
    // The call that finds its session gone fails; the connection is re-established for the next.
    CHECK_THROWS_AS(w.insert(std::vector<reading>{make(0, 0, 1)}), storage_error);
    CHECK_THROWS_AS(r.max_id(), storage_error);
    const auto again = w.insert(std::vector<reading>{make(0, 0, 1)});
    REQUIRE(again.size() == 1);
    CHECK(again[0].id == 2);
    CHECK(r.max_id() == 2);
    CHECK(r.after_id(0, 10).size() == 2);
}

TEST_CASE("postgresql refuses a database with a newer schema") {
    const std::string url = shared_pg_cluster().create_database();
    postgresql_writer{url};
    shared_pg_cluster().psql(db_name(url), "UPDATE meta SET value = 99 WHERE key = 'schema_version'");
    CHECK_THROWS_AS(postgresql_writer{url}, storage_error);
    CHECK_THROWS_AS(postgresql_reader{url}, storage_error);
}

TEST_CASE("postgresql each replica's journal progress is recorded with its batches, and a listener wakes on commits") {
    const std::string url = shared_pg_cluster().create_database();
    postgresql_writer one(url, "replica-1"), two(url, "replica-2");
    CHECK(one.next_journal_id() == 1);
    postgresql_listener listener(url);
    CHECK_FALSE(listener.wait(std::chrono::milliseconds(50)));  // nothing committed yet
    // Journal numbers the replicas assigned (the ids readings bring are theirs, not the table's).
    auto batch = std::vector<reading>{make(0, 0, 0), make(0, 0, 1)};
    batch[0].id = 41;
    batch[1].id = 42;
    REQUIRE(one.insert(batch).size() == 2);
    CHECK(one.next_journal_id() == 43);
    CHECK(two.next_journal_id() == 1);  // another replica, another journal
    CHECK(listener.wait(std::chrono::seconds(5)));  // the commit notified
    // A batch of redeliveries only still records the progress: its entries are committed.
    batch[0].id = 43;
    batch[1].id = 44;
    CHECK(one.insert(batch).empty());
    CHECK(postgresql_writer(url, "replica-1").next_journal_id() == 45);
    // wake() from this process returns a wait at once.
    listener.wake();
    CHECK(listener.wait(std::chrono::seconds(5)));
    CHECK(one.power_safe());
}
