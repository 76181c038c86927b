// The recent window of committed readings.
#include "live/recent_window.hpp"

#include <algorithm>
#include <mutex>

namespace telemetry::bridge {

recent_window::recent_window(std::size_t capacity) : capacity_(std::max<std::size_t>(capacity, 1)) {}

void recent_window::load(std::vector<live_ptr> tail, std::int64_t tail_after, std::int64_t newest) {
    std::unique_lock lock(mutex_);
    recent_.assign(tail.begin(), tail.end());
    floor_ = tail_after;
    while (recent_.size() > capacity_) {
        floor_ = recent_.front()->r.id;
        recent_.pop_front();
    }
    newest_.store(newest, std::memory_order_release);
}

void recent_window::append(const std::vector<live_ptr>& committed) {
    if (committed.empty()) return;
    std::unique_lock lock(mutex_);
    recent_.insert(recent_.end(), committed.begin(), committed.end());
    while (recent_.size() > capacity_) {
        floor_ = recent_.front()->r.id;
        recent_.pop_front();
    }
    newest_.store(std::max(newest_.load(std::memory_order_relaxed), committed.back()->r.id),
                  std::memory_order_release);
}

void recent_window::retention_applied(std::int64_t cutoff_ms) {
    std::unique_lock lock(mutex_);
    std::erase_if(recent_, [cutoff_ms](const live_ptr& l) { return l->r.ts < cutoff_ms; });
}

std::int64_t recent_window::floor() const {
    std::shared_lock lock(mutex_);
    return floor_;
}

bool recent_window::read(std::int64_t after, std::int64_t upto, const reading_selector& sel,
                         std::size_t limit, std::vector<live_ptr>& out, std::int64_t& reached) const {
    std::shared_lock lock(mutex_);
    if (after < floor_) return false;
    reached = std::max(after, std::min(upto, newest_.load(std::memory_order_relaxed)));
    auto it = std::upper_bound(recent_.begin(), recent_.end(), after,
                               [](std::int64_t id, const live_ptr& l) { return id < l->r.id; });
    std::size_t taken = 0;
    for (; it != recent_.end() && (*it)->r.id <= upto; ++it) {
        if (!sel.selects((*it)->topic)) continue;
        if (taken >= limit) {
            reached = taken ? out.back()->r.id : after;  // the rest in the next read
            break;
        }
        out.push_back(*it);
        ++taken;
    }
    return true;
}

}  // namespace telemetry::bridge
