// Private helpers of the storage library: RAII prepared statements, a per-connection statement
// cache, scoped transactions. Not part of the public interface.
#pragma once

#include "database.hpp"
#include "time_math.hpp"

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace telemetry::storage::detail {

// Throws storage_error naming what we were doing and SQLite's own message for `db`.
[[noreturn]] void fail(sqlite3* db, std::string_view what);

// RAII owner of one prepared statement. Not thread-safe (belongs to one connection).
class statement {
public:
    statement(sqlite3* db, std::string_view sql);
    ~statement();
    statement(const statement&) = delete;
    statement& operator=(const statement&) = delete;

    sqlite3_stmt* get() const noexcept { return stmt_; }
    sqlite3* db() const noexcept { return db_; }
    std::string_view sql() const noexcept { return sql_; }

private:
    sqlite3* db_;
    sqlite3_stmt* stmt_ = nullptr;
    std::string sql_;
};

// One use of a cached statement. Its destructor resets the statement and clears the bindings: a
// statement left un-reset keeps its read transaction open and starves WAL checkpoints.
class query {
public:
    explicit query(statement& s) noexcept : s_(s) {}
    ~query();
    query(const query&) = delete;
    query& operator=(const query&) = delete;

    query& bind(int i, std::int64_t v);
    query& bind(int i, double v);
    query& bind(int i, std::string_view v);  // copied: callers may bind temporaries
    query& bind(int i, std::optional<std::int64_t> v);
    query& bind_null(int i);

    // Advances; true while a row is available. Throws storage_error on failure.
    bool step();
    // Runs a statement that returns no rows (or ignores them).
    void run();

    std::int64_t int64(int col) const noexcept;
    double real(int col) const noexcept;
    std::string text(int col) const;
    bool is_null(int col) const noexcept;
    int changes() const noexcept;

private:
    statement& s_;
};

// Prepared statements of one connection, prepared on first use and kept until the connection
// closes. Keyed by the SQL text itself so a call site just names its SQL.
class statement_cache {
public:
    explicit statement_cache(sqlite3* db) noexcept : db_(db) {}
    query use(std::string_view sql);
    void clear() noexcept { cache_.clear(); }

private:
    sqlite3* db_;
    std::unordered_map<std::string_view, std::unique_ptr<statement>> cache_;
};

// A scoped transaction: rolls back unless commit() ran; the destructor never throws.
class transaction {
public:
    enum class kind { read, write };
    transaction(statement_cache& c, kind k);
    ~transaction();
    transaction(const transaction&) = delete;
    transaction& operator=(const transaction&) = delete;
    void commit();

private:
    statement_cache& cache_;
    bool open_ = true;
};

// Applies the per-connection pragmas; shared by every connection mode.
void apply_pragmas(sqlite3* db, bool read_write);

}  // namespace telemetry::storage::detail
