// Applies the retention policy in the background: small chunked deletes that never block ingest.
#include "pipeline/retention_worker.hpp"

#include "live/hub.hpp"

#include <spdlog/spdlog.h>

namespace telemetry::bridge {

retention_worker::retention_worker(const std::filesystem::path& db, int keep_days,
                                   std::chrono::seconds interval, std::size_t chunk, hub& h)
    : retainer_(db), keep_days_(keep_days), interval_(interval), chunk_(chunk), hub_(h) {}

void retention_worker::start() {
    if (keep_days_ > 0 && !thread_.joinable()) thread_ = std::thread([this] { run(); });
}

retention_worker::~retention_worker() { stop(); }

void retention_worker::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void retention_worker::run() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
        lock.unlock();
        try {
            const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::system_clock::now().time_since_epoch()).count();
            const std::int64_t cutoff = now_ms - std::int64_t{keep_days_} * 86'400'000;
            const auto result = retainer_.run(cutoff, chunk_);
            if (result.deleted > 0) {
                spdlog::info("retention: deleted {} readings older than {} days", result.deleted, keep_days_);
                hub_.retention_applied(result, cutoff);
            }
        } catch (const std::exception& e) {
            spdlog::error("retention pass failed: {}", e.what());
        }
        lock.lock();
        cv_.wait_for(lock, interval_, [this] { return stopping_; });
    }
}

}  // namespace telemetry::bridge
