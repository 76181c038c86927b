// A few threads, each owning a read-only storage connection, that run storage queries so that no
// storage call ever runs on an HTTP I/O thread.
#pragma once

#include "store.hpp"

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace telemetry::bridge {

// Thread safety: submit() and stop() may be called from any thread. Jobs run on the pool's
// threads; a job must catch its own exceptions (one that escapes is logged and dropped).
class query_pool {
public:
    using job = std::function<void(storage::store_reader&)>;

    // Opens one reader per thread now (open_reader), so a storage problem fails start-up, not a
    // request.
    query_pool(const std::function<std::unique_ptr<storage::store_reader>()>& open_reader, int threads,
               std::size_t max_queued);
    ~query_pool();
    query_pool(const query_pool&) = delete;
    query_pool& operator=(const query_pool&) = delete;

    // False when the queue is full or the pool is stopping: the caller answers 503.
    bool submit(job j);
    void stop();

private:
    void run(storage::store_reader& r);

    const std::size_t max_queued_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<job> jobs_;
    bool stopping_ = false;
    std::vector<std::unique_ptr<storage::store_reader>> readers_;
    std::vector<std::thread> threads_;
};

}  // namespace telemetry::bridge
