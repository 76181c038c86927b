// The SQLite store: schema and migrations, idempotent batched writes, queries and retention.
// Knows SQLite; knows nothing of MQTT or HTTP.
#pragma once

#include "reading.hpp"

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct sqlite3;

namespace telemetry::storage {

// Every failure to open, migrate, write or read throws this (start-up and storage errors throw).
struct storage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// RAII owner of one sqlite3 connection. Not thread-safe: one connection per thread.
class connection {
public:
    enum class mode { read_write, read_only };
    connection(const std::filesystem::path& file, mode m);
    ~connection();
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;
    sqlite3* handle() const noexcept { return db_; }
    void exec(const char* sql);  // throws storage_error
private:
    sqlite3* db_ = nullptr;
};

// Brings the schema to the newest version (PRAGMA user_version based, one transaction per step).
// Returns the version it ended on. Idempotent.
int migrate(connection& c);
inline constexpr int schema_version = 2;

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

// The single writer. Used by the ingest thread only (the MQTT callback): every call is one
// committed transaction, so a reading handed back here is durable against a process crash.
class writer {
public:
    // Opens, applies pragmas, migrates. `power_safe` (ingest.sync): synchronous=FULL, so that a
    // transaction is on stable storage when insert() returns (WAL fsynced at each commit), not
    // only safe from a crash of the process (NORMAL): the ingest journal drops what the writer
    // has committed, so with a journal that survives power cuts the writer must too.
    explicit writer(const std::filesystem::path& file, bool power_safe = false);
    ~writer();
    writer(const writer&) = delete;
    writer& operator=(const writer&) = delete;

    // Stores the readings in one transaction. Returns the readings newly stored, ids filled, in id
    // order. A reading with id > 0 (assigned by the journal) is stored under that id, which must be
    // at least next_id(); others get the next ids. A reading with a seq whose (sensor, metric, seq, ts) is already stored is a redelivery:
    // it is skipped and not returned. Readings without seq are never taken for duplicates.
    std::vector<reading> insert(std::span<const reading> readings);

    // Records a sensor's presence (status topic). Returns false if it was already that.
    bool set_status(std::string_view sensor, bool online, std::int64_t at_ms);

    // True when a trivial write transaction succeeds (readiness check).
    bool writable();
    // The id the next stored reading gets unless it brings one (greater than any id ever used).
    std::int64_t next_id() const;
    // PRAGMA synchronous of the connection: 1 NORMAL, 2 FULL.
    int synchronous();

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

// Read-only queries. One per query thread. Never holds a read transaction between calls.
class reader {
public:
    explicit reader(const std::filesystem::path& file);
    ~reader();
    reader(const reader&) = delete;
    reader& operator=(const reader&) = delete;

    std::vector<series_info> all_series();
    std::optional<reading> latest(std::string_view sensor, std::string_view metric);
    // Throws std::invalid_argument if the cursor is not one this store produced for this query.
    history_page history(const history_query& q);
    // Empty buckets are omitted. Uses per-minute rollups where the bucket is a whole number of
    // minutes, raw rows otherwise and at partial edges.
    std::vector<bucket> aggregate(const aggregate_query& q);
    // The smallest and greatest ts stored for the series; nullopt when it has no reading.
    std::optional<std::pair<std::int64_t, std::int64_t>> ts_span(std::string_view sensor, std::string_view metric);
    // The series' readings with id < before_id: their newest ts, and the aggregates of that ts's
    // bucket and of `ts`'s bucket (buckets of `bucket_ms`, aligned as aggregate's). One snapshot.
    bucket_seed seed_bucket(std::string_view sensor, std::string_view metric, std::int64_t before_id,
                            std::int64_t bucket_ms, std::int64_t ts);
    // Readings with id > after, in id order, at most limit (replay and long polling).
    std::vector<reading> after_id(std::int64_t after, std::size_t limit);
    std::int64_t max_id();     // greatest id ever handed out (0 if none), survives retention
    std::int64_t oldest_id();  // smallest id still stored (0 if none)
    // The series from which retention deleted readings with id > after: a client resuming after
    // `after` with filters that select one of them has missed readings.
    retired_after retired_since(std::int64_t after);
    // Greatest id retention deleted before the database recorded it per series (a database
    // created with schema 1), 0 if none: a cursor below it may have missed readings of any series.
    std::int64_t retired_unattributed();

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

// Deletes readings with ts < cutoff in chunks of `chunk` rows, each its own short transaction, so
// ingest is never blocked for long. Rollups of minutes entirely before the cutoff go too. Records
// the greatest id it deleted, overall so that max_id() (and so the id cursor) never goes
// backwards, and per series so that a reset goes only to clients that may have missed readings.
struct retention_result {
    std::int64_t deleted = 0;
    std::int64_t retired_max_id = 0;  // greatest id retention ever deleted (this pass or earlier)
    std::map<std::pair<std::string, std::string>, std::int64_t> deleted_per_series;
    // Greatest id this pass deleted from each series it deleted from.
    std::map<std::pair<std::string, std::string>, std::int64_t> retired_per_series;
};
class retainer {
public:
    explicit retainer(const std::filesystem::path& file);
    ~retainer();
    retainer(const retainer&) = delete;
    retainer& operator=(const retainer&) = delete;
    retention_result run(std::int64_t cutoff_ms, std::size_t chunk = 2000);
private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace telemetry::storage
