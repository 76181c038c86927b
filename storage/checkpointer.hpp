// WAL checkpoints on a thread of their own, off the committing thread.
#pragma once

#include "database.hpp"

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <optional>
#include <mutex>
#include <thread>

struct sqlite3;

namespace telemetry::storage {

// The WAL size (pages of 4 KiB) at which a checkpoint is due: 16 MiB instead of SQLite's 1000
// pages. One insert transaction dirties ~4 pages (row, two index leaves, rollup), so the default
// checkpointed every ~250 commits; measured here, single-reading transactions: ~10k rows/s at
// 1000, ~17-18k at 4000.
inline constexpr int wal_checkpoint_pages = 4000;

// SQLite's automatic checkpoint runs inside the COMMIT that takes the WAL past its threshold,
// fsyncs included (with synchronous=NORMAL the only ones), so every few thousand commits one
// commit, and every client waiting for the readings it carries, stalled for the length of a
// checkpoint. The writer turns that off and reports the WAL's size after each commit here
// instead; this thread then runs a PASSIVE checkpoint on its own connection, which copies what no
// reader still needs and never blocks the writer. Once a checkpoint has copied the whole WAL, the
// writer's next transaction starts the WAL over. Should writes come back to back so that this
// thread never catches up, the writer checkpoints itself at backstop_factor times the threshold,
// so the WAL stays bounded whatever the load.
class checkpointer {
public:
    // Installs itself as `writer`'s WAL hook (which also ends SQLite's automatic checkpoints on
    // it) and opens its own connection to `file`.
    checkpointer(sqlite3* writer, const std::filesystem::path& file, int threshold_pages);
    ~checkpointer();  // stops the thread; the writer's hook is removed
    checkpointer(const checkpointer&) = delete;
    checkpointer& operator=(const checkpointer&) = delete;

    // Checkpoints this thread ran, and those the writer ran itself because the WAL reached
    // backstop_factor times the threshold (writes back to back, see on_commit).
    long completed() const;
    long backstops() const;
    static constexpr int backstop_factor = 4;
    // Pages in the WAL after the writer's last commit.
    int wal_pages() const noexcept { return wal_pages_.load(std::memory_order_relaxed); }

private:
    static int on_commit(void* self, sqlite3*, const char*, int pages);
    void run(const std::filesystem::path& file);

    sqlite3* writer_;
    std::optional<connection> conn_;  // the checkpoints' own; the thread's once it runs
    const int threshold_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    bool due_ = false;
    bool stop_ = false;
    long completed_ = 0;
    long backstops_ = 0;
    std::atomic<int> wal_pages_{0};
    std::thread thread_;
};

}  // namespace telemetry::storage
