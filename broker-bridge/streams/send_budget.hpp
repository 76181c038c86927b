// One budget for the bytes queued to all streams together (SSE, WebSocket and gRPC send queues
// and their writes in flight).
//
// Each stream's own queue is bounded (stream.max_queue_bytes), but a thousand stalled clients
// times that bound is gigabytes. Within the total budget every stream may fill its own queue.
// Once the total would pass it, a stream may grow while it holds less than its fair share (the
// budget divided among the open streams, never less than a small floor), and beyond its fair
// share while its writes are completing (a reader that keeps up but is briefly behind, during a
// burst). A stream whose write has not completed for a while, and whose socket the kernel no
// longer takes bytes on, is stalled: beyond its fair share it is cut.
//
// Twice the budget is the ceiling for everything beyond the fair shares. A stream whose writes
// are completing and that would pass it does not simply get cut itself: it makes room by cutting
// the stalled streams (largest first, whatever their size), then, if that is not enough, the
// streams further behind than it (holding more), largest first; it is refused only if all of
// those together cannot make the room (then only the stalled ones are cut). Why: when many
// clients stall at once (a network drops them together), for the first moments they look like
// readers in a burst, and together they reach the ceiling before any looks stalled; cutting
// whichever stream asked next would cut a reader that keeps up as likely as a stalled one. The
// stalled ones owe the most, so they go first. Bound: twice the budget plus the fair shares
// (streams x max(floor, budget / streams)), plus what cut streams hold until their own threads
// have closed them (a posted call away). A cut stream resumes after its cursor, like any slow
// stream.
//
// Thread safety: each stream's owner thread reports its own change (account, admit); streams
// register, and are cut by other streams' threads, under one mutex, taken only when a stream
// opens or closes and when the ceiling is reached.
#pragma once

#include <boost/asio/post.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace telemetry::bridge::http {

class send_budget {
public:
    explicit send_budget(std::size_t total, std::size_t floor = 64 * 1024) : budget_(total), floor_(floor) {}

    // A write that has not completed for this long marks its stream as stalled.
    static constexpr std::chrono::milliseconds stall_after{250};
    // A stream reports once per flush, and also within a large batch once it has grown by this
    // much: so the total is never behind by more than this per stream.
    static constexpr std::size_t report_every = 16 * 1024;

    // One stream's part of the budget, for the stream's lifetime. Its owner thread calls admit()
    // and account(); the budget may cut it from another stream's thread (on_cut).
    class share {
    public:
        explicit share(send_budget& budget);
        ~share();
        share(const share&) = delete;
        share& operator=(const share&) = delete;

        // How to cut this stream to make room under the ceiling. Called from another thread
        // with the budget's lock held: it must only post to the stream's own thread.
        // `socket`: its TCP socket (-1: none), which the budget may ask whether the client is
        // still taking bytes (takes_bytes) before it counts the stream as stalled.
        void on_cut(std::function<void()> cut, int socket = -1);
        // The usual cut: `stream->cut_by_budget()`, posted to `ex`, the stream's own thread, if
        // the stream still exists then.
        template <class Stream, class Executor>
        void cut_on(const Executor& ex, std::weak_ptr<Stream> stream, int socket = -1) {
            on_cut([ex, stream = std::move(stream)] {
                boost::asio::post(ex, [stream] {
                    if (auto s = stream.lock()) s->cut_by_budget();
                });
            }, socket);
        }
        // The socket is about to close: call before closing it (its number may be reused).
        void forget_socket();
        // May this stream, holding `held` bytes, add `more`? Its write in flight started at
        // `write_started` (none in flight: the epoch, never stalled). Never once it was cut.
        // `socket`: the stream's TCP socket, if it has one (-1: none), asked before a write that
        // is older than stall_after counts as stalled (see progressing()).
        bool admit(std::size_t held, std::size_t more, std::chrono::steady_clock::time_point write_started,
                   int socket = -1);
        // The stream now holds `held` bytes. Returns the change, for the metrics gauge.
        std::int64_t account(std::size_t held) noexcept;
        std::size_t accounted() const noexcept { return accounted_.load(std::memory_order_relaxed); }
        // The budget cut this stream: it must close (its cut call is on its way, too).
        bool cut() const noexcept { return cut_.load(std::memory_order_acquire); }

    private:
        friend class send_budget;
        void release_cut() noexcept;

        send_budget& budget_;
        std::atomic<std::size_t> accounted_{0};  // written by the owner thread only
        std::atomic<bool> cut_{false};
        // When it was last seen progressing (steady_clock ticks): the start of the write in
        // flight when it last asked, or when it last asked with none, or when it last shrank.
        std::atomic<std::int64_t> progress_;
        std::atomic<std::size_t> cut_bytes_{0};  // what it held when cut, until released
        std::function<void()> on_cut_;           // guarded by the budget's mutex
        int socket_ = -1;                        // guarded by the budget's mutex
        std::size_t slot_ = 0;                   // guarded by the budget's mutex: in shares_
    };

    // Is a stream whose write started at `write_started` still progressing? Yes with no write in
    // flight, or one younger than stall_after. An older one counts as stalled unless the kernel
    // takes bytes on `socket` right now: then the client is reading, and the write's completion
    // only waits for the stream's thread, busy elsewhere (thousands of streams, a slow machine).
    static bool progressing(std::chrono::steady_clock::time_point write_started, int socket);
    // Does the kernel take bytes on `socket` now (its send buffer has room)?
    static bool takes_bytes(int socket);

    enum class verdict { admit, admit_if_progressing, make_room };
    // The rule for a stream that holds `held` bytes (of which `accounted` are in the total) and
    // would add `more`, at the current total (less what cut streams still hold).
    verdict judge(std::size_t held, std::size_t accounted, std::size_t more) const noexcept;

    std::size_t queued() const noexcept { return queued_.load(std::memory_order_relaxed); }
    std::size_t counted() const noexcept;  // the total, less what cut streams still hold
    std::size_t budget() const noexcept { return budget_; }
    std::size_t streams() const;

private:
    // Cuts the streams furthest behind, largest first, until `asker` may hold `wanted` bytes
    // under the ceiling; false if it holds the most itself (or there is nothing else to cut).
    bool make_room(share& asker, std::size_t wanted);
    void cut(share& s, std::size_t held);  // with mutex_ held

    const std::size_t budget_;
    const std::size_t floor_;
    std::atomic<std::size_t> queued_{0};
    std::atomic<std::size_t> cut_bytes_{0};  // of shares cut but not yet released
    std::atomic<std::size_t> streams_{0};
    mutable std::mutex mutex_;
    std::vector<share*> shares_;  // guarded by mutex_
};

}  // namespace telemetry::bridge::http
