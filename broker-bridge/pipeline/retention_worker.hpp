// Applies the retention policy in the background: small chunked deletes that never block ingest.
#pragma once

#include "database.hpp"

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

namespace telemetry::bridge {

class hub;

// Owns one thread and its own SQLite connection. Stopped (and joined) by stop() or the destructor.
class retention_worker {
public:
    retention_worker(const std::filesystem::path& db, int keep_days, std::chrono::seconds interval,
                     std::size_t chunk, hub& h);
    ~retention_worker();
    // Starts the background pass (after the hub is loaded, so counts it reports stay exact).
    void start();
    retention_worker(const retention_worker&) = delete;
    retention_worker& operator=(const retention_worker&) = delete;
    void stop();

private:
    void run();

    storage::retainer retainer_;
    const int keep_days_;
    const std::chrono::seconds interval_;
    const std::size_t chunk_;
    hub& hub_;
    std::mutex mutex_;
    std::condition_variable cv_;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace telemetry::bridge
