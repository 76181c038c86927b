// WAL checkpoints on a thread of their own (checkpointer.hpp).
#include "checkpointer.hpp"

#include "database.hpp"

#include <sqlite3.h>

#include <optional>

namespace telemetry::storage {

checkpointer::checkpointer(sqlite3* writer, const std::filesystem::path& file, int threshold_pages)
    : writer_(writer), threshold_(threshold_pages) {
    // Opened here, not at the first checkpoint: the files it holds open are there from the start.
    conn_.emplace(file, connection::mode::read_write);
    sqlite3_wal_hook(writer_, &checkpointer::on_commit, this);
    thread_ = std::thread([this, file] { run(file); });
}

checkpointer::~checkpointer() {
    sqlite3_wal_hook(writer_, nullptr, nullptr);
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    wake_.notify_one();
    thread_.join();
}

long checkpointer::completed() const {
    std::lock_guard lock(mutex_);
    return completed_;
}

long checkpointer::backstops() const {
    std::lock_guard lock(mutex_);
    return backstops_;
}

// On the committing thread, after each commit: only a flag and a notification, unless the
// checkpointer cannot keep up.
int checkpointer::on_commit(void* self, sqlite3* db, const char* name, int pages) {
    auto* c = static_cast<checkpointer*>(self);
    c->wal_pages_.store(pages, std::memory_order_relaxed);
    if (pages < c->threshold_) return SQLITE_OK;
    if (pages >= c->threshold_ * backstop_factor) {
        // The WAL starts over only when a checkpoint has copied all of it by the time the writer
        // begins a transaction; under writes back to back, this thread's checkpoints never catch
        // up. Then the writer checkpoints itself, between its transactions, as SQLite would.
        int wal_pages = 0, copied = 0;
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, &wal_pages, &copied);
        std::lock_guard lock(c->mutex_);
        ++c->backstops_;
        return SQLITE_OK;
    }
    {
        std::lock_guard lock(c->mutex_);
        if (c->due_) return SQLITE_OK;
        c->due_ = true;
    }
    c->wake_.notify_one();
    return SQLITE_OK;
}

void checkpointer::run(const std::filesystem::path& file) {
    auto& conn = conn_;
    for (;;) {
        {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [this] { return due_ || stop_; });
            if (stop_) return;
        }
        try {
            if (!conn) conn.emplace(file, connection::mode::read_write);
            int wal_pages = 0, copied = 0;
            // A failure (SQLITE_BUSY: another checkpoint runs, or a disk error) is retried at the
            // next commit past the threshold; the WAL only grows meanwhile.
            sqlite3_wal_checkpoint_v2(conn->handle(), "main", SQLITE_CHECKPOINT_PASSIVE, &wal_pages, &copied);
        } catch (const storage_error&) {
            conn.reset();  // opened again at the next request
        }
        std::lock_guard lock(mutex_);
        due_ = false;
        ++completed_;
    }
}

}  // namespace telemetry::storage
