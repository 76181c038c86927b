// One budget for the bytes queued to all streams together (SSE and WebSocket send queues and
// their writes in flight).
//
// Each stream's own queue is bounded (stream.max_queue_bytes), but a thousand stalled clients
// times that bound is gigabytes. Within the total budget every stream may fill its own queue.
// Once the total would pass it, a stream may grow while it holds less than its fair share (the
// budget divided among the open streams, never less than a small floor); beyond its fair share
// only while its writes are completing (a reader that keeps up but is briefly behind, during a
// burst), and not at all once the total reaches twice the budget. Bound: twice the budget plus
// the fair shares (streams x max(floor, budget / streams)). So stalled streams, whose
// write has not completed for a while, are cut first, and a reader that keeps up is not cut
// because others stall. A cut stream resumes after its cursor, like any slow stream.
//
// Thread safety: atomics only; each stream reports its own change (account) from its shard.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace telemetry::bridge::http {

class send_budget {
public:
    explicit send_budget(std::size_t total, std::size_t floor = 64 * 1024) : budget_(total), floor_(floor) {}

    void stream_opened() noexcept { streams_.fetch_add(1, std::memory_order_relaxed); }
    void stream_closed() noexcept { streams_.fetch_sub(1, std::memory_order_relaxed); }

    enum class verdict { admit, admit_if_progressing, refuse };
    // A write that has not completed for this long marks its stream as stalled.
    static constexpr std::chrono::milliseconds stall_after{250};

    // May a stream that holds `held` bytes (of which `accounted` are in the total) add `more`?
    verdict judge(std::size_t held, std::size_t accounted, std::size_t more) const noexcept {
        const std::size_t total = queued_.load(std::memory_order_relaxed) - accounted + held + more;
        if (total <= budget_) return verdict::admit;
        // Within its fair share a stream always grows, even past twice the budget: a reader
        // that keeps up is never cut because others stall. The fair shares together are the
        // budget (or the floor per stream, with more streams than the budget has floors), so
        // the total stays below twice the budget plus that.
        const std::size_t streams = std::max<std::size_t>(1, streams_.load(std::memory_order_relaxed));
        if (held + more <= std::max(floor_, budget_ / streams)) return verdict::admit;
        return total <= 2 * budget_ ? verdict::admit_if_progressing : verdict::refuse;
    }
    // The verdict for a stream whose current write started at `write_started` (none in flight:
    // the epoch, never stalled).
    bool admit(std::size_t held, std::size_t accounted, std::size_t more,
               std::chrono::steady_clock::time_point write_started) const noexcept {
        switch (judge(held, accounted, more)) {
            case verdict::admit: return true;
            case verdict::refuse: return false;
            case verdict::admit_if_progressing:
                return write_started == std::chrono::steady_clock::time_point{} ||
                       std::chrono::steady_clock::now() - write_started < stall_after;
        }
        return false;
    }

    // A stream now holds `held` bytes; `accounted` is what it reported before (updated). Returns
    // the change, for the metrics gauge.
    std::int64_t account(std::size_t held, std::size_t& accounted) noexcept {
        const auto change = static_cast<std::int64_t>(held) - static_cast<std::int64_t>(accounted);
        if (change >= 0) queued_.fetch_add(static_cast<std::size_t>(change), std::memory_order_relaxed);
        else queued_.fetch_sub(static_cast<std::size_t>(-change), std::memory_order_relaxed);
        accounted = held;
        return change;
    }

    // A stream reports once per flush, and also within a large batch once it has grown by this
    // much: so the total is never behind by more than this per stream.
    static constexpr std::size_t report_every = 16 * 1024;

    std::size_t queued() const noexcept { return queued_.load(std::memory_order_relaxed); }
    std::size_t budget() const noexcept { return budget_; }

private:
    const std::size_t budget_;
    const std::size_t floor_;
    std::atomic<std::size_t> queued_{0};
    std::atomic<std::size_t> streams_{0};
};

}  // namespace telemetry::bridge::http
