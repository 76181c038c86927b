// The recent window: the newest committed readings in memory, so that most catch-ups and long
// polls never touch storage.
#pragma once

#include "core/selector.hpp"
#include "core/wire_format.hpp"

#include <atomic>
#include <cstdint>
#include <deque>
#include <shared_mutex>
#include <vector>

namespace telemetry::bridge {

// Invariant: every committed reading with id > floor() is in the window, in id order (except what
// retention deleted). Thread safety: appends come from the committing thread, reads from any
// thread; a shared mutex guards the deque, newest() is lock-free.
class recent_window {
public:
    explicit recent_window(std::size_t capacity);

    void load(std::vector<live_ptr> tail, std::int64_t tail_after, std::int64_t newest);
    void append(const std::vector<live_ptr>& committed);
    // What storage no longer has, memory must not replay either.
    void retention_applied(std::int64_t cutoff_ms);

    std::int64_t newest() const noexcept { return newest_.load(std::memory_order_acquire); }
    std::int64_t floor() const;

    // Up to `limit` readings with after < id <= upto that `sel` selects, in id order, appended to
    // `out`; `reached` is the id up to which every reading was looked at (the last one taken when
    // the limit cut the read short). False when `after` is older than the window (storage has it).
    bool read(std::int64_t after, std::int64_t upto, const reading_selector& sel, std::size_t limit,
              std::vector<live_ptr>& out, std::int64_t& reached) const;

private:
    const std::size_t capacity_;
    mutable std::shared_mutex mutex_;
    std::deque<live_ptr> recent_;
    std::int64_t floor_ = 0;
    std::atomic<std::int64_t> newest_{0};
};

}  // namespace telemetry::bridge
