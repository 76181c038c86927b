// The HTTP server's threads: one io_context per thread, each connection pinned to one of them,
// and the hand-off that brings each commit to the streams of each thread.
#pragma once

#include "live/subscriber.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace telemetry::bridge::http {

// A stream (SSE or WebSocket) as its I/O thread sees it. All three calls run on that thread.
class stream_sink {
public:
    virtual ~stream_sink() = default;
    // One commit's selected readings and presence changes: queue them, do not write yet.
    virtual void deliver(const delivery& d) = 0;
    // Write what deliver() queued: one network write for however many commits arrived together.
    virtual void flush() = 0;
    // More than the bound of events waited for this sink on its thread's queue: it is dropped
    // from the hand-off and must close (its client resumes after its cursor and loses nothing).
    virtual void overflowed() = 0;

private:
    friend class io_shard;
    bool flush_listed_ = false;             // shard thread only: in the current drain's flush list
    std::atomic<std::size_t> queued_{0};    // events handed over, not yet delivered
    bool cut_ = false;                      // guarded by the shard's mutex: overflowed
};

// One I/O thread's io_context. Connections pinned to it need no strand: one thread runs every
// handler. Why shards rather than one io_context with a strand per connection: a commit reaches
// N streams with one post per thread instead of N posts, and each stream writes once per drain.
// Bounded: at most `max_queued_per_sink` events wait for any one sink.
class io_shard {
public:
    explicit io_shard(std::size_t max_queued_per_sink = 10'000);

    boost::asio::io_context& context() noexcept { return ioc_; }

    // From the committing thread: `sink` gets `d` on this shard's thread. Deliveries reach a sink
    // in the order they were handed over. Between hold() and release() (the committing thread's
    // too) the shard's thread is not woken; release() wakes it once for all of them.
    void hand_over(std::shared_ptr<stream_sink> sink, delivery d);
    void hold() noexcept { holding_ = true; }
    void release();

private:
    struct group {
        delivery what;
        bool cut = false;  // tell the sinks they overflowed instead
        std::vector<std::shared_ptr<stream_sink>> sinks;
    };
    void drain();

    const std::size_t max_queued_;
    boost::asio::io_context ioc_;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
    std::mutex mutex_;
    std::vector<group> queued_;  // guarded by mutex_
    bool drain_posted_ = false;  // guarded by mutex_
    bool holding_ = false;       // committing thread only
    bool post_held_ = false;     // committing thread only: a drain is due at release()
};

// A fixed set of shards, their threads, and round-robin placement of new connections.
// As delivery_batching: the hand-overs of one commit wake each shard's thread once, after all of
// them are queued, so that it neither drains a commit in fragments nor takes the queue's mutex
// from the committing thread while it hands over to the rest.
class io_shards final : public delivery_batching {
public:
    explicit io_shards(int threads, std::size_t max_queued_per_sink = 10'000);
    ~io_shards();

    io_shard& next() noexcept;
    io_shard& first() noexcept { return *shards_.front(); }
    void run();   // starts one thread per shard
    void stop();  // stops every io_context and joins the threads
    void begin_commit() override;
    void end_commit() override;

private:
    std::vector<std::unique_ptr<io_shard>> shards_;
    std::vector<std::thread> threads_;
    std::atomic<std::size_t> next_{0};
};

}  // namespace telemetry::bridge::http
