// The PostgreSQL engine's libpq plumbing: connection, results, parameters, COPY, transactions.
#include "pg_connection.hpp"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <string>

namespace telemetry::storage::detail {

namespace {

// Server notices (for example "relation already exists, skipping") are not errors: keep them
// off the bridge's stderr.
void ignore_notice(void*, const char*) {}

[[noreturn]] void bad_value(std::string_view v) {
    throw storage_error("postgresql: unexpected value '" + std::string(v) + "' in a result");
}

}  // namespace

std::string_view pg_result::text(int row, int col) const noexcept {
    return {PQgetvalue(r_, row, col), static_cast<std::size_t>(PQgetlength(r_, row, col))};
}

std::int64_t pg_result::int64(int row, int col) const {
    const auto v = text(row, col);
    std::int64_t out = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
    if (ec != std::errc() || end != v.data() + v.size()) bad_value(v);
    return out;
}

double pg_result::real(int row, int col) const {
    const auto v = text(row, col);
    double out = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
    if (ec != std::errc() || end != v.data() + v.size()) bad_value(v);
    return out;
}

std::optional<std::int64_t> pg_result::opt_int64(int row, int col) const {
    if (is_null(row, col)) return std::nullopt;
    return int64(row, col);
}

std::int64_t pg_result::affected() const {
    const std::string_view v = PQcmdTuples(r_);
    std::int64_t out = 0;
    std::from_chars(v.data(), v.data() + v.size(), out);
    return out;
}

reading reading_at(const pg_result& r, int row, int col, std::string_view sensor, std::string_view metric) {
    reading out;
    out.id = r.int64(row, col);
    out.sensor = sensor;
    out.metric = metric;
    out.ts = r.int64(row, col + 1);
    out.value = r.real(row, col + 2);
    out.unit = r.text(row, col + 3);
    out.seq = r.opt_int64(row, col + 4);
    return out;
}

pg_params& pg_params::add(std::int64_t v) {
    values_.push_back(std::to_string(v));
    null_.push_back(false);
    return *this;
}

pg_params& pg_params::add(double v) {
    char buf[32];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    values_.emplace_back(buf, end);
    null_.push_back(false);
    return *this;
}

pg_params& pg_params::add(std::string_view v) {
    values_.emplace_back(v);
    null_.push_back(false);
    return *this;
}

pg_params& pg_params::add(std::optional<std::int64_t> v) {
    if (v) return add(*v);
    values_.emplace_back();
    null_.push_back(true);
    return *this;
}

std::vector<const char*> pg_params::pointers() const {
    std::vector<const char*> out;
    out.reserve(values_.size());
    for (std::size_t i = 0; i < values_.size(); ++i) out.push_back(null_[i] ? nullptr : values_[i].c_str());
    return out;
}

void copy_text(std::string& row, std::string_view s) {
    for (char c : s) {
        switch (c) {
        case '\\': row += "\\\\"; break;
        case '\t': row += "\\t"; break;
        case '\n': row += "\\n"; break;
        case '\r': row += "\\r"; break;
        default: row += c;
        }
    }
}

pg_connection::pg_connection(std::string conninfo) : conninfo_(std::move(conninfo)) { ensure_open(); }

pg_connection::~pg_connection() {
    if (conn_) PQfinish(conn_);
}

void pg_connection::ensure_open() {
    if (conn_ && PQstatus(conn_) == CONNECTION_OK) return;
    if (conn_) {
        PQreset(conn_);
    } else {
        conn_ = PQconnectdb(conninfo_.c_str());
        if (conn_) PQsetNoticeProcessor(conn_, ignore_notice, nullptr);
    }
    if (!conn_ || PQstatus(conn_) != CONNECTION_OK)
        fail("cannot connect");
}

PGconn* pg_connection::raw() {
    ensure_open();
    return conn_;
}

void pg_connection::fail(std::string_view what, const PGresult* r) {
    std::string msg = "postgresql: " + std::string(what) + ": ";
    const char* detail = r ? PQresultErrorMessage(r) : nullptr;
    msg += detail && *detail ? detail : (conn_ ? PQerrorMessage(conn_) : "out of memory");
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    throw storage_error(msg);
}

void pg_connection::exec(const char* sql) {
    ensure_open();
    pg_result r(PQexec(conn_, sql));
    const auto st = PQresultStatus(r.raw());
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) fail(sql, r.raw());
}

pg_result pg_connection::query(const char* sql, const pg_params& params) {
    ensure_open();
    const auto values = params.pointers();
    pg_result r(PQexecParams(conn_, sql, params.size(), nullptr, values.data(), nullptr, nullptr, 0));
    const auto st = PQresultStatus(r.raw());
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) fail(sql, r.raw());
    return r;
}

void pg_connection::copy_in(const char* copy_sql, std::string_view data) {
    ensure_open();
    {
        pg_result r(PQexec(conn_, copy_sql));
        if (PQresultStatus(r.raw()) != PGRES_COPY_IN) fail(copy_sql, r.raw());
    }
    bool sent = true;
    constexpr std::size_t chunk = 1 << 20;  // PQputCopyData takes an int length
    for (std::size_t at = 0; sent && at < data.size(); at += chunk) {
        const auto n = std::min(chunk, data.size() - at);
        sent = PQputCopyData(conn_, data.data() + at, static_cast<int>(n)) == 1;
    }
    if (PQputCopyEnd(conn_, sent ? nullptr : "client could not send the rows") != 1 || !sent)
        fail(copy_sql);
    pg_result r(PQgetResult(conn_));
    const bool ok = PQresultStatus(r.raw()) == PGRES_COMMAND_OK;
    while (PGresult* more = PQgetResult(conn_)) PQclear(more);  // drain: the protocol ends on null
    if (!ok) fail(copy_sql, r.raw());
}

pg_transaction::pg_transaction(pg_connection& c, const char* begin) : c_(c) {
    try {
        c_.exec(begin);
    } catch (...) {
        rollback();  // BEGIN may have succeeded before a later statement failed
        throw;
    }
}

pg_transaction::~pg_transaction() {
    if (!done_) rollback();
}

void pg_transaction::rollback() noexcept {
    try {
        c_.exec("ROLLBACK");
    } catch (...) {
        // A broken connection has no transaction left to roll back.
    }
}

void pg_transaction::commit() {
    c_.exec("COMMIT");
    done_ = true;
}

}  // namespace telemetry::storage::detail
