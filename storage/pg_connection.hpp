// Private helpers of the PostgreSQL engine: an RAII libpq connection and result, text-format
// parameters, COPY, and a scoped transaction. Not part of the public interface.
#pragma once

#include "store.hpp"

#include <libpq-fe.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace telemetry::storage::detail {

// One result; values are read in libpq's text format.
class pg_result {
public:
    explicit pg_result(PGresult* r) noexcept : r_(r) {}
    ~pg_result() { PQclear(r_); }
    pg_result(pg_result&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
    pg_result(const pg_result&) = delete;
    pg_result& operator=(const pg_result&) = delete;
    pg_result& operator=(pg_result&&) = delete;

    const PGresult* raw() const noexcept { return r_; }
    int rows() const noexcept { return PQntuples(r_); }
    bool is_null(int row, int col) const noexcept { return PQgetisnull(r_, row, col) != 0; }
    std::string_view text(int row, int col) const noexcept;
    std::int64_t int64(int row, int col) const;  // throws storage_error on a value not an integer
    double real(int row, int col) const;
    std::optional<std::int64_t> opt_int64(int row, int col) const;
    // Rows a command changed (INSERT, UPDATE, DELETE).
    std::int64_t affected() const;

private:
    PGresult* r_;
};

// The reading in columns id, ts, value, unit, seq of `row`, starting at column `col`; the caller
// knows its names.
reading reading_at(const pg_result& r, int row, int col, std::string_view sensor, std::string_view metric);

// Parameters $1, $2, ... in text format, in the order added.
class pg_params {
public:
    pg_params& add(std::int64_t v);
    pg_params& add(double v);  // shortest text that reads back as the same double
    pg_params& add(std::string_view v);
    pg_params& add(std::optional<std::int64_t> v);

    int size() const noexcept { return static_cast<int>(values_.size()); }
    std::vector<const char*> pointers() const;

private:
    std::vector<std::string> values_;
    std::vector<bool> null_;
};

// Appends `s` to a COPY text-format row, escaped.
void copy_text(std::string& row, std::string_view s);

// RAII owner of one libpq connection. Not thread-safe: one connection per thread. A connection
// found broken is re-established before the next statement (its session state, such as
// temporary tables, is then gone).
class pg_connection {
public:
    explicit pg_connection(std::string conninfo);
    ~pg_connection();
    pg_connection(const pg_connection&) = delete;
    pg_connection& operator=(const pg_connection&) = delete;

    // Runs one or more statements without parameters (simple query protocol).
    void exec(const char* sql);
    // Runs one statement; throws storage_error naming `sql`'s purpose and the server's message.
    pg_result query(const char* sql, const pg_params& params = {});
    // Sends `data` (COPY text format) to a `COPY ... FROM STDIN` statement.
    void copy_in(const char* copy_sql, std::string_view data);
    // The open connection (re-established first if broken), for what the helpers above do not
    // cover (LISTEN's socket). Throws storage_error.
    PGconn* raw();

private:
    void ensure_open();
    [[noreturn]] void fail(std::string_view what, const PGresult* r = nullptr);

    std::string conninfo_;
    PGconn* conn_ = nullptr;
};

// Rolls back unless committed; never throws from its destructor.
class pg_transaction {
public:
    // `begin`: BEGIN, possibly followed by more statements of the transaction.
    explicit pg_transaction(pg_connection& c, const char* begin = "BEGIN");
    ~pg_transaction();
    pg_transaction(const pg_transaction&) = delete;
    pg_transaction& operator=(const pg_transaction&) = delete;
    void commit();

private:
    void rollback() noexcept;

    pg_connection& c_;
    bool done_ = false;
};

}  // namespace telemetry::storage::detail
