// The HTTP server's threads: one io_context per thread, each connection pinned to one of them,
// and the hand-off that brings committed readings to the streams of each thread.
#pragma once

#include "hub.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace telemetry::bridge::http {

using reading_batch = std::shared_ptr<const std::vector<live_ptr>>;

// A stream (SSE or WebSocket) as its I/O thread sees it. Both calls run on that thread.
class stream_sink {
public:
    virtual ~stream_sink() = default;
    // One commit's readings, in id order: queue what matches, do not write yet.
    virtual void deliver(const reading_batch& batch) = 0;
    // Write what deliver() queued: one network write for however many batches arrived together.
    virtual void flush() = 0;

private:
    friend class io_shard;
    bool flush_listed_ = false;  // already in the current drain's flush list
};

// One I/O thread's io_context. Connections pinned to it need no strand: one thread runs every
// handler. Why shards rather than one io_context with a strand per connection: a commit reaches
// N streams with one post per thread instead of N posts, and each stream writes once per drain.
class io_shard {
public:
    io_shard();

    boost::asio::io_context& context() noexcept { return ioc_; }

    // From the committing thread: `sink` gets `batch` on this shard's thread. Batches reach a
    // sink in the order they were handed over.
    void hand_over(std::shared_ptr<stream_sink> sink, reading_batch batch);

private:
    struct group {
        reading_batch batch;
        std::vector<std::shared_ptr<stream_sink>> sinks;
    };
    void drain();

    boost::asio::io_context ioc_;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
    std::mutex mutex_;
    std::vector<group> queued_;  // guarded by mutex_
    bool drain_posted_ = false;  // guarded by mutex_
};

// A fixed set of shards, their threads, and round-robin placement of new connections.
class io_shards {
public:
    explicit io_shards(int threads);
    ~io_shards();

    io_shard& next() noexcept;
    io_shard& first() noexcept { return *shards_.front(); }
    void run();   // starts one thread per shard
    void stop();  // stops every io_context and joins the threads

private:
    std::vector<std::unique_ptr<io_shard>> shards_;
    std::vector<std::thread> threads_;
    std::atomic<std::size_t> next_{0};
};

}  // namespace telemetry::bridge::http
