// The storage seam: the types and the two interfaces every storage engine implements (SQLite in
// database.hpp, PostgreSQL in postgresql.hpp), so that callers and tests need not know the engine.
#pragma once

#include "reading.hpp"

#include <chrono>
#include <climits>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace telemetry::storage {

// Every failure to open, migrate, write or read throws this (start-up and storage errors throw).
struct storage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// What the bridge needs at start-up about one series.
struct series_info {
    std::string sensor;
    std::string metric;
    std::string unit;             // unit of the newest reading
    std::optional<bool> online;   // the sensor's last status message; nullopt if never seen
    std::int64_t count = 0;       // stored readings
    std::optional<reading> latest;          // greatest ts (ties: greatest id)
    std::int64_t last_id = 0;               // greatest id in the series
    std::optional<std::int64_t> last_seq;   // seq of the reading with the greatest id
    std::vector<std::int64_t> recent_ts;    // ts of up to the 32 newest readings, in id order
    std::int64_t retired_max_id = 0;        // greatest id retention deleted from the series (0: none)
};

// Where retention deleted readings with ids above a cursor (docs/api.md section 6).
struct retired_after {
    // Retention deleted such readings before the database recorded their series (schema 1): any
    // series may have lost readings.
    bool unattributed = false;
    std::vector<std::pair<std::string, std::string>> series;  // (sensor, metric)
};

// An opaque position inside a history query; encoded into the `next` string.
struct history_query {
    std::string sensor, metric;
    std::int64_t from = INT64_MIN;   // inclusive
    std::int64_t to = INT64_MAX;     // exclusive
    std::size_t limit = 1000;
    bool descending = false;
    std::optional<std::string> cursor;  // from a previous page's `next`
};
struct history_page {
    std::vector<reading> readings;
    std::optional<std::string> next;  // present when more readings follow
};

struct aggregate_query {
    std::string sensor, metric;
    std::int64_t from = INT64_MIN;  // inclusive; INT64_MIN = the series' first reading
    std::int64_t to = INT64_MAX;    // exclusive; INT64_MAX = after the series' last reading
    std::int64_t bucket_ms = 60'000;
};
struct bucket {
    std::int64_t t = 0;  // bucket start: floor(ts / bucket_ms) * bucket_ms
    std::int64_t count = 0;
    double min = 0, max = 0, avg = 0;
};

// Count, min, max and sum of some readings of one series (count 0: none).
struct partial_bucket {
    std::int64_t count = 0;
    double min = 0, max = 0, sum = 0;
};
// What a live bucket stream needs to know of a series before the reading it is about to add
// (docs/api.md section 4.1): everything with id < `before_id`, as committed.
struct bucket_seed {
    std::optional<std::int64_t> newest_ts;  // the greatest ts of those readings; none: no reading
    partial_bucket newest;                  // the readings in newest_ts's bucket
    partial_bucket at;                      // the readings in the bucket of the `ts` asked about
};

// Writes readings and presence. One object per writing thread; every call is one committed
// transaction, so a reading handed back by insert() is durable against a crash of the process.
//
// The engines differ in where ids come from (docs/architecture.md, "Storage engines"):
// - SQLite has one writer per database: a reading that brings an id (> 0, assigned by the ingest
//   journal) is stored under it, others get the next ids.
// - PostgreSQL may have several writers (one per replica): ids are assigned by the database while
//   the batch holds the id lock, so that they are commit-ordered; an id a reading brings is ignored.
// Callers therefore take the ids from what insert() returns, never from what they passed in.
//
// The ingest journal numbers what it holds; next_journal_id() tells which of its entries a
// writer has committed (those below it), so that recovery after a crash stores each entry once.
// SQLite stores readings under those numbers; PostgreSQL records, in each batch's transaction,
// the greatest number the batch brought, per replica.
class store_writer {
public:
    virtual ~store_writer() = default;

    // Stores the readings in one transaction. Returns the readings newly stored, ids filled, in id
    // order. A reading with a seq whose (sensor, metric, seq, ts) is already stored (or comes
    // earlier in the same batch) is a redelivery: it is skipped, not returned and consumes no id.
    // Readings without seq are never taken for duplicates. A non-finite value throws
    // std::invalid_argument and stores nothing.
    virtual std::vector<reading> insert(std::span<const reading> readings) = 0;

    // Records a sensor's presence (status topic). Returns false if it was already that.
    virtual bool set_status(std::string_view sensor, bool online, std::int64_t at_ms) = 0;

    // True when a trivial write transaction succeeds (readiness check).
    virtual bool writable() = 0;

    // Greater than every journal number this writer (this replica) has committed; 1 if none.
    virtual std::int64_t next_journal_id() = 0;
    // True when a committed transaction survives a power cut, not only a crash of the process
    // (SQLite synchronous=FULL; PostgreSQL synchronous_commit not off).
    virtual bool power_safe() = 0;
    // How long this writer's transactions have held the store's id lock in all, from the lock
    // granted to the commit returned: the serialised part of every replica's ingest (PostgreSQL;
    // SQLite has no such lock).
    virtual std::chrono::nanoseconds id_lock_held() const { return std::chrono::nanoseconds{0}; }
};

// Read-only queries. One object per query thread. Sees every transaction committed before a call;
// holds no transaction between calls.
class store_reader {
public:
    virtual ~store_reader() = default;

    // Every series ordered by (sensor, metric), byte-wise.
    virtual std::vector<series_info> all_series() = 0;
    virtual std::optional<reading> latest(std::string_view sensor, std::string_view metric) = 0;
    // Throws std::invalid_argument if the cursor is not one this store produced for this query.
    virtual history_page history(const history_query& q) = 0;
    // Empty buckets are omitted. Throws std::invalid_argument if the bucket is not positive.
    virtual std::vector<bucket> aggregate(const aggregate_query& q) = 0;
    // The smallest and greatest ts stored for the series; nullopt when it has no reading.
    virtual std::optional<std::pair<std::int64_t, std::int64_t>> ts_span(std::string_view sensor,
                                                                         std::string_view metric) = 0;
    // The series' readings with id < before_id: their newest ts, and the aggregates of that ts's
    // bucket and of `ts`'s bucket (buckets of `bucket_ms`, aligned as aggregate's). One snapshot.
    // Throws std::invalid_argument if the bucket is not positive.
    virtual bucket_seed seed_bucket(std::string_view sensor, std::string_view metric, std::int64_t before_id,
                                    std::int64_t bucket_ms, std::int64_t ts) = 0;
    // Readings with id > after, in id order, at most limit (replay, long polling, tailing). Ids are
    // commit-ordered: a reading committed later never has a smaller id than one already visible,
    // so a reader that continues after the greatest id it has seen misses nothing.
    virtual std::vector<reading> after_id(std::int64_t after, std::size_t limit) = 0;
    virtual std::int64_t max_id() = 0;     // greatest id ever handed out (0 if none), survives retention
    virtual std::int64_t oldest_id() = 0;  // smallest id still stored (0 if none)
    // The series from which retention deleted readings with id > after: a client resuming after
    // `after` with filters that select one of them has missed readings.
    virtual retired_after retired_since(std::int64_t after) = 0;
    // Greatest id retention deleted before the store recorded it per series, 0 if none: a cursor
    // below it may have missed readings of any series.
    virtual std::int64_t retired_unattributed() = 0;
    // The store's epoch: a random number kept with the data that names its id sequence. A new
    // database gets a new one, and so does a database restored from a backup (whose ids the
    // readings committed after the backup had already used): a cursor carrying another epoch
    // belongs to other data (docs/api.md section 2.1).
    virtual std::uint32_t epoch() = 0;
};

}  // namespace telemetry::storage
