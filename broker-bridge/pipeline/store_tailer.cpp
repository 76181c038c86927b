// Feeds the hub from the shared PostgreSQL table, in id order.
#include "pipeline/store_tailer.hpp"

#include "pipeline/stores.hpp"
#include "postgresql.hpp"

#include <spdlog/spdlog.h>

#include <pthread.h>

#include <algorithm>
#include <chrono>

namespace telemetry::bridge {
namespace {
// A hub batch as large as a committer batch: one read never fills a stream's queue on its own.
constexpr std::size_t read_batch = 1000;
// Without a notification (lost while the connection was down) a new commit is found this late.
constexpr auto poll_interval = std::chrono::milliseconds(250);
}  // namespace

store_tailer::store_tailer(const storage_config& s, hub_feed& feed, series_cap& series)
    : feed_(feed), series_(series), reader_(open_reader(s)), listener_(std::make_unique<storage::postgresql_listener>(s.url)) {}

store_tailer::~store_tailer() { stop(); }

void store_tailer::committed(std::vector<reading>&, std::vector<status_event>& changes) {
    if (!changes.empty()) {
        std::lock_guard lock(mutex_);
        changes_.insert(changes_.end(), std::make_move_iterator(changes.begin()),
                        std::make_move_iterator(changes.end()));
    }
    listener_->wake();
}

void store_tailer::start(std::int64_t after) {
    newest_ = after;
    if (!thread_.joinable())
        thread_ = std::thread([this] {
            pthread_setname_np(pthread_self(), "tailer");
            run();
        });
}

void store_tailer::stop() {
    if (stopping_.exchange(true)) return;
    listener_->wake();
    if (!thread_.joinable()) return;
    thread_.join();
    drain();  // what the committer committed before it stopped
}

bool store_tailer::drain() {
    std::vector<status_event> changes;
    try {
        for (;;) {
            {
                std::lock_guard lock(mutex_);
                changes.swap(changes_);
            }
            auto readings = reader_->after_id(newest_, read_batch);
            recovered();
            if (!readings.empty()) {
                newest_ = readings.back().id;
                series_.know(readings);
            }
            if (!readings.empty() || !changes.empty()) feed_.committed(readings, changes);
            changes.clear();
            if (readings.size() < read_batch) return true;
        }
    } catch (const storage::storage_error& e) {
        // Back in front of what was committed since: they are older, and the hub takes each
        // sensor's newest last.
        if (!changes.empty()) {
            std::lock_guard lock(mutex_);
            changes.insert(changes.end(), std::make_move_iterator(changes_.begin()),
                           std::make_move_iterator(changes_.end()));
            changes_.swap(changes);
        }
        failed(e.what());
        return false;
    }
}

void store_tailer::failed(const char* what) {
    if (failed_reads_++ == 0) {
        failing_since_ = std::chrono::steady_clock::now();
        spdlog::error("storage: reading new readings after id {} failed: {}; retrying (logged again when it "
                      "succeeds)",
                      newest_, what);
    }
}

void store_tailer::recovered() {
    if (failed_reads_ == 0) return;
    const auto down = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                            failing_since_);
    spdlog::info("storage: reading new readings works again after {:.1f} s and {} failed reads", down.count() / 1000.0,
                 failed_reads_);
    failed_reads_ = 0;
}

void store_tailer::run() {
    auto pause = std::chrono::milliseconds(50);
    while (!stopping_) {
        if (!drain()) {
            std::this_thread::sleep_for(pause);
            pause = std::min(pause * 2, std::chrono::milliseconds(2000));
            continue;
        }
        pause = std::chrono::milliseconds(50);
        try {
            listener_->wait(poll_interval);
            listen_failing_ = false;
        } catch (const storage::storage_error& e) {
            // Once per outage, as the reads: polling goes on meanwhile.
            if (!listen_failing_) spdlog::warn("storage: listening for new readings failed: {}; polling", e.what());
            listen_failing_ = true;
            std::this_thread::sleep_for(poll_interval);
        }
    }
}

}  // namespace telemetry::bridge
