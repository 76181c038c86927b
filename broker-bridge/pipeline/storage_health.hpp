// Whether storage takes writes: what /readyz reports. Two facts, each written by one thread (the
// ingest callback journals, the committer commits), read by anyone.
#pragma once

#include <atomic>

namespace telemetry::bridge {

class storage_health {
public:
    // Each returns true when the state changed, so the caller logs transitions only.
    bool journal(bool ok) noexcept { return set(journal_ok_, ok); }
    bool commit(bool ok) noexcept { return set(commit_ok_, ok); }
    bool writable() const noexcept {
        return journal_ok_.load(std::memory_order_relaxed) && commit_ok_.load(std::memory_order_relaxed);
    }

private:
    // A load first: the common case (no change) writes nothing, once per message.
    static bool set(std::atomic<bool>& flag, bool ok) noexcept {
        if (flag.load(std::memory_order_relaxed) == ok) return false;
        flag.store(ok, std::memory_order_relaxed);
        return true;
    }
    std::atomic<bool> journal_ok_{true};  // ingest thread only
    std::atomic<bool> commit_ok_{true};   // committer thread only
};

}  // namespace telemetry::bridge
