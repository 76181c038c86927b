// Backing up a live SQLite database and restoring it (docs/api.md section 2.1, docs/operations):
// one file, a consistent snapshot taken with SQLite's online backup API while the bridge writes;
// a restore gives the database a new epoch, so that no cursor handed out after the backup was
// taken silently skips the readings whose ids the restored database hands out again.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

namespace telemetry::storage {

// One process at a time uses a database: the bridge while it runs, restore while it replaces the
// file. An advisory lock (flock) on `<db>.lock`, released when the process ends however it ends.
class exclusive_use {
public:
    // Throws storage_error when another process holds it, naming the file.
    explicit exclusive_use(const std::filesystem::path& db);
    ~exclusive_use();
    exclusive_use(const exclusive_use&) = delete;
    exclusive_use& operator=(const exclusive_use&) = delete;

private:
    int fd_ = -1;
};

struct backup_summary {
    std::int64_t readings = 0;
    std::int64_t newest_id = 0;  // greatest id handed out (survives retention)
    std::uint32_t epoch = 0;
    std::uintmax_t bytes = 0;
    std::vector<std::filesystem::path> set_aside;  // restore: files renamed to `<name>.pre-restore`
};

// Copies the database `db` (which a running bridge may be writing) to `to`, a self-contained file
// (no -wal beside it), written under a temporary name and renamed, so that `to` is either the
// previous file or the whole new one. One read snapshot for the whole copy: meanwhile the
// database's WAL grows by what is committed. Refuses `to` naming the database or a file beside
// it. Throws storage_error.
backup_summary backup(const std::filesystem::path& db, const std::filesystem::path& to);

// Replaces the database `db` by the backup `from` (checked first: an SQLite database of this
// program's, intact) and gives it a new epoch, all prepared in a temporary file that replaces
// `db` in one rename. The files of `derived` that exist (kept beside the database about its
// contents: the ingest journal, the republisher's cursor) are renamed to `<name>.pre-restore`
// first, so that nothing of the replaced database comes back. Refuses while a bridge uses `db`.
// Throws storage_error; then `db` is as it was.
backup_summary restore(const std::filesystem::path& from, const std::filesystem::path& db,
                       const std::vector<std::filesystem::path>& derived = {});

}  // namespace telemetry::storage
