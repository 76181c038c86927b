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

store_tailer::store_tailer(const storage_config& s, hub_feed& feed)
    : feed_(feed), reader_(open_reader(s)), listener_(std::make_unique<storage::postgresql_listener>(s.url)) {}

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
    try {
        for (;;) {
            std::vector<status_event> changes;
            {
                std::lock_guard lock(mutex_);
                changes.swap(changes_);
            }
            auto readings = reader_->after_id(newest_, read_batch);
            if (!readings.empty()) newest_ = readings.back().id;
            if (!readings.empty() || !changes.empty()) feed_.committed(readings, changes);
            if (readings.size() < read_batch) return true;
        }
    } catch (const storage::storage_error& e) {
        spdlog::error("storage: reading new readings after id {} failed: {}; retrying", newest_, e.what());
        return false;
    }
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
        } catch (const storage::storage_error& e) {
            spdlog::warn("storage: listening for new readings failed: {}; polling", e.what());
            std::this_thread::sleep_for(poll_interval);
        }
    }
}

}  // namespace telemetry::bridge
