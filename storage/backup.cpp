// SQLite's online backup API does the copying: page by page from one consistent read snapshot
// (WAL mode lets the bridge go on committing meanwhile), into a connection of our own.
#include "backup.hpp"

#include "database.hpp"
#include "statement.hpp"

#include <sqlite3.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <string>
#include <system_error>
#include <vector>

namespace telemetry::storage {

namespace {

std::int64_t scalar(connection& c, const char* sql) {
    detail::statement s(c.handle(), sql);
    detail::query q(s);
    return q.step() ? q.int64(0) : 0;
}

std::string scalar_text(connection& c, const char* sql) {
    detail::statement s(c.handle(), sql);
    detail::query q(s);
    return q.step() ? q.text(0) : std::string();
}

// Copies every page of `src` into `dst` in one step (one read snapshot of the source).
void copy_pages(connection& src, connection& dst, const std::filesystem::path& what) {
    sqlite3_backup* b = sqlite3_backup_init(dst.handle(), "main", src.handle(), "main");
    if (b == nullptr)
        throw storage_error("storage: backing up " + what.string() + ": " + sqlite3_errmsg(dst.handle()));
    int rc = SQLITE_OK;
    // BUSY or LOCKED: the source's writer holds a lock for a moment (a checkpoint); step again.
    for (int tries = 0; tries < 200; ++tries) {
        rc = sqlite3_backup_step(b, -1);
        if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED) break;
        sqlite3_sleep(25);
    }
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE)
        throw storage_error("storage: backing up " + what.string() + ": " + sqlite3_errstr(rc));
}

backup_summary summarize(connection& c, const std::filesystem::path& file) {
    backup_summary s;
    s.readings = scalar(c, "SELECT count(*) FROM readings");
    s.newest_id = scalar(c,
                         "SELECT max(coalesce((SELECT max(id) FROM readings), 0),"
                         " coalesce((SELECT value FROM meta WHERE key = 'retired_max_id'), 0))");
    s.epoch = static_cast<std::uint32_t>(scalar(c, "SELECT value FROM meta WHERE key = 'epoch'"));
    std::error_code ec;
    s.bytes = std::filesystem::file_size(file, ec);
    return s;
}

void fsync_file(const std::filesystem::path& p) {
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}

std::filesystem::path temporary_beside(const std::filesystem::path& to) {
    std::random_device rd;
    std::string name = ".";  // appended piecewise: GCC 12 warns falsely (-Wrestrict) on "." + string
    name += to.filename().string();
    name += ".tmp-";
    name += std::to_string(rd() & 0xFFFFFF);
    return to.parent_path() / name;
}

// SQLite's files beside a database: its WAL, shared-memory index and rollback journal.
void remove_sidecars(const std::filesystem::path& p) {
    std::error_code ec;
    for (const char* suffix : {"-wal", "-shm", "-journal"})
        std::filesystem::remove(std::filesystem::path(p.string() + suffix), ec);
}

void remove_with_sidecars(const std::filesystem::path& p) {
    std::error_code ec;
    std::filesystem::remove(p, ec);
    remove_sidecars(p);
}

// Puts the finished file `tmp` in place of `target` (both in one folder): synced, then the files
// of `derived` that exist renamed to `<name>.pre-restore` (returned), SQLite's files beside
// `target` removed (an old journal or WAL would be applied to the new file), one rename, the
// folder synced. Throws storage_error naming `target`.
std::vector<std::filesystem::path> install(const std::filesystem::path& tmp, const std::filesystem::path& target,
                                           const std::vector<std::filesystem::path>& derived) {
    std::vector<std::filesystem::path> moved;
    try {
        fsync_file(tmp);
        for (const auto& p : derived) {
            if (!std::filesystem::exists(p)) continue;
            moved.emplace_back(p.string() + ".pre-restore");
            std::filesystem::rename(p, moved.back());
        }
        remove_sidecars(target);
        std::filesystem::rename(tmp, target);
        fsync_file(target.parent_path().empty() ? std::filesystem::path(".") : target.parent_path());
    } catch (const std::filesystem::filesystem_error& e) {
        throw storage_error("storage: replacing " + target.string() + ": " + e.what());
    }
    return moved;
}

}  // namespace

exclusive_use::exclusive_use(const std::filesystem::path& db) {
    const std::string lock = db.string() + ".lock";
    fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0)
        throw storage_error("storage: cannot open " + lock + ": " + std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
        const int e = errno;
        ::close(fd_);
        fd_ = -1;
        if (e == EWOULDBLOCK)
            throw storage_error("storage: " + db.string() + " is in use by another process (a broker-bridge " +
                                "running on it holds " + lock + ")");
        throw storage_error("storage: cannot lock " + lock + ": " + std::strerror(e));
    }
}

exclusive_use::~exclusive_use() {
    if (fd_ >= 0) ::close(fd_);  // closing releases the lock
}

backup_summary backup(const std::filesystem::path& db, const std::filesystem::path& to) {
    if (!std::filesystem::exists(db)) throw storage_error("storage: no database at " + db.string());
    // Renaming over the database, or a file SQLite or the bridge keeps beside it, would take it
    // from under a running bridge.
    const auto target = std::filesystem::weakly_canonical(to);
    for (const char* suffix : {"", "-wal", "-shm", "-journal", ".lock", ".ingest-journal", ".mqtt-out-cursor"})
        if (target == std::filesystem::weakly_canonical(std::filesystem::path(db.string() + suffix)))
            throw storage_error("storage: the backup cannot be written to " + to.string() +
                                ", which is the database or one of its files");
    const auto tmp = temporary_beside(to);
    try {
        {
            connection src(db, connection::mode::read_only);
            connection dst(tmp, connection::mode::read_write);
            copy_pages(src, dst, db);
            // The copy says WAL in its header; a backup is one file to keep or move: make it a
            // rollback-journal database (a restore makes it WAL again).
            dst.exec("PRAGMA journal_mode=DELETE");
        }
        install(tmp, to, {});
    } catch (...) {
        remove_with_sidecars(tmp);
        throw;
    }
    connection c(to, connection::mode::read_only);
    return summarize(c, to);
}

backup_summary restore(const std::filesystem::path& from, const std::filesystem::path& db,
                       const std::vector<std::filesystem::path>& derived) {
    if (!std::filesystem::exists(from)) throw storage_error("storage: no backup at " + from.string());
    const exclusive_use held(db);
    if (std::filesystem::exists(db) && std::filesystem::equivalent(from, db))
        throw storage_error("storage: " + from.string() + " is the database itself");
    {
        connection src(from, connection::mode::read_only);
        const auto check = scalar_text(src, "PRAGMA quick_check");
        if (check != "ok")
            throw storage_error("storage: " + from.string() + " is damaged (quick_check: " + check + ")");
        const auto version = scalar(src, "PRAGMA user_version");
        if (version < 1 || version > schema_version ||
            scalar(src, "SELECT count(*) FROM sqlite_schema WHERE name IN ('readings', 'meta')") != 2)
            throw storage_error("storage: " + from.string() + " is not a broker-bridge database of schema 1 to " +
                                std::to_string(schema_version));
    }
    // Everything is prepared in a file beside the database, which replaces it in one rename only
    // when it is complete: a restore that fails or is killed half-way leaves the database as it
    // was, never the backup's data under the old epoch.
    const auto tmp = temporary_beside(db);
    std::vector<std::filesystem::path> set_aside;
    try {
        {
            connection src(from, connection::mode::read_only);
            connection dst(tmp, connection::mode::read_write);
            copy_pages(src, dst, from);
            dst.exec("PRAGMA journal_mode=DELETE");
            migrate(dst);
            // A new epoch: the ids after the backup's newest will be handed out again, to other readings.
            const auto old_epoch = scalar(dst, "SELECT value FROM meta WHERE key = 'epoch'");
            std::random_device rd;
            std::uint32_t epoch = 0;
            do epoch = static_cast<std::uint32_t>(rd());
            while (epoch == static_cast<std::uint32_t>(old_epoch));
            dst.exec(("INSERT INTO meta(key, value) VALUES('epoch', " + std::to_string(epoch) +
                      ") ON CONFLICT(key) DO UPDATE SET value = excluded.value")
                         .c_str());
            dst.exec("PRAGMA journal_mode=WAL");
        }
        // What belongs to the database being replaced goes aside first: its ingest journal (whose
        // readings would otherwise be committed into the restored data) and the like.
        set_aside = install(tmp, db, derived);
    } catch (...) {
        remove_with_sidecars(tmp);
        throw;
    }
    connection c(db, connection::mode::read_only);
    auto s = summarize(c, db);
    s.set_aside = std::move(set_aside);
    return s;
}

}  // namespace telemetry::storage
