// The SQLite store: schema and migrations, idempotent batched writes, queries and retention.
// Knows SQLite; knows nothing of MQTT or HTTP. writer and reader implement the engine-neutral
// interfaces of store.hpp.
#pragma once

#include "store.hpp"

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
inline constexpr int schema_version = 4;

// The single writer. Used by the ingest thread only (the MQTT callback): every call is one
// committed transaction, so a reading handed back here is durable against a process crash.
class writer final : public store_writer {
public:
    // Opens, applies pragmas, migrates. `power_safe` (ingest.sync): synchronous=FULL, so that a
    // transaction is on stable storage when insert() returns (WAL fsynced at each commit), not
    // only safe from a crash of the process (NORMAL): the ingest journal drops what the writer
    // has committed, so with a journal that survives power cuts the writer must too.
    explicit writer(const std::filesystem::path& file, bool power_safe = false);
    ~writer() override;
    writer(const writer&) = delete;
    writer& operator=(const writer&) = delete;

    // As store_writer::insert. A reading with id > 0 (assigned by the journal) is stored under that
    // id, which must be at least next_id(); others get the next ids.
    std::vector<reading> insert(std::span<const reading> readings) override;
    bool set_status(std::string_view sensor, bool online, std::int64_t at_ms) override;
    bool writable() override;
    std::int64_t next_journal_id() override { return next_id(); }
    bool power_safe() override { return synchronous() >= 2; }

    // The id the next stored reading gets unless it brings one (greater than any id ever used).
    std::int64_t next_id() const;
    // PRAGMA synchronous of the connection: 1 NORMAL, 2 FULL.
    int synchronous();

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

// Read-only queries. One per query thread. Never holds a read transaction between calls.
class reader final : public store_reader {
public:
    explicit reader(const std::filesystem::path& file);
    ~reader() override;
    reader(const reader&) = delete;
    reader& operator=(const reader&) = delete;

    std::vector<series_info> all_series() override;
    std::optional<reading> latest(std::string_view sensor, std::string_view metric) override;
    history_page history(const history_query& q) override;
    // Uses per-minute rollups where the bucket is a whole number of minutes, raw rows otherwise
    // and at partial edges.
    std::vector<bucket> aggregate(const aggregate_query& q) override;
    std::optional<std::pair<std::int64_t, std::int64_t>> ts_span(std::string_view sensor,
                                                                 std::string_view metric) override;
    bucket_seed seed_bucket(std::string_view sensor, std::string_view metric, std::int64_t before_id,
                            std::int64_t bucket_ms, std::int64_t ts) override;
    std::vector<reading> after_id(std::int64_t after, std::size_t limit) override;
    std::int64_t max_id() override;
    std::int64_t oldest_id() override;
    retired_after retired_since(std::int64_t after) override;
    // A database created with schema 1 recorded only this global maximum.
    std::int64_t retired_unattributed() override;
    std::uint32_t epoch() override;

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
