// A few threads, each owning a read-only storage connection, that run storage queries so that no
// storage call ever runs on an HTTP I/O thread.
#include "pipeline/query_pool.hpp"

#include <spdlog/spdlog.h>

namespace telemetry::bridge {

query_pool::query_pool(const std::function<std::unique_ptr<storage::store_reader>()>& open_reader, int threads,
                       std::size_t max_queued)
    : max_queued_(max_queued) {
    for (int i = 0; i < threads; ++i) readers_.push_back(open_reader());
    for (auto& r : readers_) threads_.emplace_back([this, &r] { run(*r); });
}

query_pool::~query_pool() { stop(); }

bool query_pool::submit(job j) {
    {
        std::lock_guard lock(mutex_);
        if (stopping_ || jobs_.size() >= max_queued_) return false;
        jobs_.push_back(std::move(j));
    }
    cv_.notify_one();
    return true;
}

void query_pool::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_)
        if (t.joinable()) t.join();
}

void query_pool::run(storage::store_reader& r) {
    for (;;) {
        job j;
        {
            std::unique_lock lock(mutex_);
            cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
            // Queued jobs still run while stopping so that their clients get an answer.
            if (jobs_.empty()) return;
            j = std::move(jobs_.front());
            jobs_.pop_front();
        }
        try {
            j(r);
        } catch (const std::exception& e) {
            spdlog::error("query job failed: {}", e.what());
        } catch (...) {
            spdlog::error("query job failed with an unknown exception");
        }
    }
}

}  // namespace telemetry::bridge
