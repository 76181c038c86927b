// RAII for the sqlite3 connection and its prepared statements, transactions and pragmas.
#include "checkpointer.hpp"
#include "database.hpp"
#include "statement.hpp"

#include <sqlite3.h>

#include <string>

namespace telemetry::storage {

namespace detail {

void fail(sqlite3* db, std::string_view what) {
    std::string msg = "storage: ";
    msg += what;
    msg += ": ";
    msg += db != nullptr ? sqlite3_errmsg(db) : "out of memory";
    throw storage_error(msg);
}

statement::statement(sqlite3* db, std::string_view sql) : db_(db), sql_(sql) {
    // SQLITE_PREPARE_PERSISTENT: these statements live as long as the connection.
    if (sqlite3_prepare_v3(db_, sql_.data(), static_cast<int>(sql_.size()),
                           SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr) != SQLITE_OK) {
        sqlite3_finalize(stmt_);
        fail(db_, "preparing \"" + sql_ + "\"");
    }
}

statement::~statement() { sqlite3_finalize(stmt_); }

query::~query() {
    sqlite3_reset(s_.get());
    sqlite3_clear_bindings(s_.get());
}

query& query::bind(int i, std::int64_t v) {
    if (sqlite3_bind_int64(s_.get(), i, v) != SQLITE_OK) fail(s_.db(), "binding an integer");
    return *this;
}
query& query::bind(int i, double v) {
    if (sqlite3_bind_double(s_.get(), i, v) != SQLITE_OK) fail(s_.db(), "binding a real");
    return *this;
}
query& query::bind(int i, std::string_view v) {
    if (sqlite3_bind_text(s_.get(), i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT) !=
        SQLITE_OK)
        fail(s_.db(), "binding a text");
    return *this;
}
query& query::bind(int i, std::optional<std::int64_t> v) {
    return v ? bind(i, *v) : bind_null(i);
}
query& query::bind_null(int i) {
    if (sqlite3_bind_null(s_.get(), i) != SQLITE_OK) fail(s_.db(), "binding null");
    return *this;
}

bool query::step() {
    switch (sqlite3_step(s_.get())) {
    case SQLITE_ROW: return true;
    case SQLITE_DONE: return false;
    default: fail(s_.db(), std::string("running \"").append(s_.sql()).append("\""));
    }
}
void query::run() {
    while (step()) {
    }
}

std::int64_t query::int64(int col) const noexcept { return sqlite3_column_int64(s_.get(), col); }
double query::real(int col) const noexcept { return sqlite3_column_double(s_.get(), col); }
std::string query::text(int col) const {
    const auto* p = sqlite3_column_text(s_.get(), col);
    const int n = sqlite3_column_bytes(s_.get(), col);
    return p != nullptr ? std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n))
                        : std::string();
}
bool query::is_null(int col) const noexcept {
    return sqlite3_column_type(s_.get(), col) == SQLITE_NULL;
}
int query::changes() const noexcept { return sqlite3_changes(s_.db()); }

query statement_cache::use(std::string_view sql) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
        // The key views the statement's own copy of the SQL, so callers may pass temporaries.
        auto s = std::make_unique<statement>(db_, sql);
        const std::string_view key = s->sql();
        it = cache_.emplace(key, std::move(s)).first;
    }
    return query(*it->second);
}

transaction::transaction(statement_cache& c, kind k) : cache_(c) {
    // Writes take the write lock up front (IMMEDIATE): a deferred transaction that upgrades from
    // read to write in WAL mode can fail with SQLITE_BUSY without the busy handler being tried.
    cache_.use(k == kind::write ? "BEGIN IMMEDIATE" : "BEGIN").run();
}
transaction::~transaction() {
    if (!open_) return;
    try {
        cache_.use("ROLLBACK").run();
    } catch (...) {
        // Nothing sensible to do: SQLite rolls back itself when the connection closes.
    }
}
void transaction::commit() {
    cache_.use("COMMIT").run();
    open_ = false;
}

void apply_pragmas(sqlite3* db, bool read_write) {
    // journal_mode is stored in the file: only the writer sets it, and the file is created by the
    // writer before any reader opens it. Debian builds with WAL synchronous=FULL and secure_delete
    // on: set both explicitly (NORMAL is durable across process crashes, not power
    // loss; see docs/architecture.md, Durability).
    // Foreign keys stay off: they would cost a lookup per inserted reading for a constraint the
    // single writer keeps by construction.
    const char* common =
        "PRAGMA busy_timeout=5000;"
        "PRAGMA synchronous=NORMAL;"
        "PRAGMA secure_delete=OFF;"
        "PRAGMA foreign_keys=OFF;";
    char* err = nullptr;
    if (read_write) {
        // Checkpoints at wal_checkpoint_pages (checkpointer.hpp; the writer's own run on the
        // checkpointer's thread). The journal size limit keeps the WAL file from staying large
        // after a burst.
        const std::string pragmas = "PRAGMA wal_autocheckpoint=" + std::to_string(wal_checkpoint_pages) +
                                    "; PRAGMA journal_size_limit=33554432";
        if (sqlite3_exec(db, pragmas.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
            sqlite3_free(err);
            fail(db, "setting wal_autocheckpoint");
        }
        if (sqlite3_exec(db, "PRAGMA journal_mode=WAL", nullptr, nullptr, &err) != SQLITE_OK) {
            sqlite3_free(err);
            fail(db, "setting journal_mode=WAL");
        }
    }
    if (sqlite3_exec(db, common, nullptr, nullptr, &err) != SQLITE_OK) {
        sqlite3_free(err);
        fail(db, "setting pragmas");
    }
}

}  // namespace detail

connection::connection(const std::filesystem::path& file, mode m) {
    // NOMUTEX: a connection is used by one thread only, so SQLite's own mutexes buy nothing.
    const int flags = (m == mode::read_write ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                                             : SQLITE_OPEN_READONLY) |
                      SQLITE_OPEN_NOMUTEX;
    const int rc = sqlite3_open_v2(file.c_str(), &db_, flags, nullptr);
    try {
        if (rc != SQLITE_OK) detail::fail(db_, "opening " + file.string());
        sqlite3_extended_result_codes(db_, 1);
        detail::apply_pragmas(db_, m == mode::read_write);
    } catch (...) {
        sqlite3_close_v2(db_);
        db_ = nullptr;
        throw;
    }
}

connection::~connection() {
    // close_v2 never fails for a busy connection: it defers the close until statements finalize.
    sqlite3_close_v2(db_);
}

void connection::exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
        std::string msg = std::string("storage: executing \"") + sql + "\": " +
                          (err != nullptr ? err : sqlite3_errmsg(db_));
        sqlite3_free(err);
        throw storage_error(msg);
    }
}

}  // namespace telemetry::storage
