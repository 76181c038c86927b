// The PostgreSQL store: schema creation, batched writes with commit-ordered ids, and the queries
// of store.hpp, through libpq. For several bridge replicas sharing one database
// (docs/architecture.md, "Storage engines").
#pragma once

#include "store.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace telemetry::storage {

// The version of the PostgreSQL schema this program writes (meta.schema_version).
inline constexpr int postgresql_schema_version = 3;

// A writer; any number of them, in any number of processes, may write to one database at once.
// Not thread-safe: one object (one connection) per writing thread.
//
// Invariant: a reading's id is assigned inside the transaction that stores it, while that
// transaction holds the row lock of id_counter, which it keeps until its commit. So transactions
// become visible in id order: a reader that has seen id N will never later find an id below N.
class postgresql_writer final : public store_writer {
public:
    // `conninfo`: a libpq connection string or URL (postgresql://user@host:port/db). Connects and
    // creates the schema if the database has none (serialised by an advisory lock, so replicas
    // may start together). `replica` names this writer's ingest journal (each replica its own,
    // its [mqtt] client_id): each batch records the greatest journal number it brought under
    // that name (next_journal_id). Empty: nothing recorded. Throws storage_error.
    explicit postgresql_writer(const std::string& conninfo, std::string replica = {});
    ~postgresql_writer() override;
    postgresql_writer(const postgresql_writer&) = delete;
    postgresql_writer& operator=(const postgresql_writer&) = delete;

    // As store_writer::insert. An id a reading brings is ignored: ids are assigned by the database
    // under the id lock (see the invariant above) and returned.
    std::vector<reading> insert(std::span<const reading> readings) override;
    bool set_status(std::string_view sensor, bool online, std::int64_t at_ms) override;
    bool writable() override;
    std::int64_t next_journal_id() override;
    bool power_safe() override;  // synchronous_commit is not off
    std::chrono::nanoseconds id_lock_held() const override;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

// Every batch a writer commits notifies the channel below when its transaction commits; a
// listener wakes on it. A hint only (docs: no replay for a listener that was away): the caller
// reads after the greatest id it has seen whenever it wakes, and also after a timeout.
inline constexpr const char* postgresql_readings_channel = "telemetry_readings";

// A connection that LISTENs on that channel. wait() and wake() may be called from different
// threads; nothing else is thread-safe.
class postgresql_listener {
public:
    explicit postgresql_listener(const std::string& conninfo);  // throws storage_error
    ~postgresql_listener();
    postgresql_listener(const postgresql_listener&) = delete;
    postgresql_listener& operator=(const postgresql_listener&) = delete;

    // Returns when a notification arrived, wake() was called, the connection broke (it is then
    // reopened; notifications meanwhile are lost, so the caller must read anyway) or `timeout`
    // passed. True unless only the timeout passed.
    bool wait(std::chrono::milliseconds timeout);
    // Makes the current or next wait() return at once (this process committed something).
    void wake() noexcept;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

// Read-only queries on one connection. Not thread-safe: one per query thread. Each call is one
// statement or one read-only transaction, so it sees everything committed before it started.
class postgresql_reader final : public store_reader {
public:
    // Throws storage_error if the database has no schema yet (open a writer first).
    explicit postgresql_reader(const std::string& conninfo);
    ~postgresql_reader() override;
    postgresql_reader(const postgresql_reader&) = delete;
    postgresql_reader& operator=(const postgresql_reader&) = delete;

    std::vector<series_info> all_series() override;
    std::optional<reading> latest(std::string_view sensor, std::string_view metric) override;
    history_page history(const history_query& q) override;
    // Grouped by the server from raw rows (no rollup table yet in this engine).
    std::vector<bucket> aggregate(const aggregate_query& q) override;
    std::optional<std::pair<std::int64_t, std::int64_t>> ts_span(std::string_view sensor,
                                                                 std::string_view metric) override;
    bucket_seed seed_bucket(std::string_view sensor, std::string_view metric, std::int64_t before_id,
                            std::int64_t bucket_ms, std::int64_t ts) override;
    std::vector<reading> after_id(std::int64_t after, std::size_t limit) override;
    std::int64_t max_id() override;
    std::int64_t oldest_id() override;
    // This engine has no retention yet: these read the (empty) records retention would keep.
    retired_after retired_since(std::int64_t after) override;
    std::int64_t retired_unattributed() override;
    std::uint32_t epoch() override;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace telemetry::storage
