// With PostgreSQL, several replicas commit into one table, so a replica's hub cannot be fed by its
// own committer: it would miss what the others commit. The tailer reads the table after the
// greatest id it has handed on, in id order, and feeds the hub with everything, its own commits
// included: the same committed stream, and the same cursors, on every replica.
#pragma once

#include "core/config.hpp"
#include "pipeline/hub_feed.hpp"
#include "pipeline/series_cap.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace telemetry::storage {
class store_reader;
class postgresql_listener;
}  // namespace telemetry::storage

namespace telemetry::bridge {

// Why this cannot miss a reading: ids are commit-ordered (store_reader::after_id; postgresql.hpp),
// so a read after id N that found nothing beyond M will never later find an id in (N, M]. It
// wakes on LISTEN (any replica's commit), on this replica's own commits (committed()), and at
// least every poll interval: a notification is a hint, lost while the connection is down.
//
// Thread safety: committed() from the committer's thread; start() and stop() from the owner.
// Only the tailer's thread calls the hub.
class store_tailer final : public commit_sink {
public:
    // Connects (a reader and a listener). Every series read is counted in `series` (the cap on
    // series is the database's, whichever replica created them). Throws storage_error.
    store_tailer(const storage_config& s, hub_feed& feed, series_cap& series);
    ~store_tailer() override;
    store_tailer(const store_tailer&) = delete;
    store_tailer& operator=(const store_tailer&) = delete;

    // This replica committed: its presence changes go to the hub with the next read, which
    // starts now. The readings come back through the read, in id order with everyone's.
    void committed(std::vector<reading>& stored, std::vector<status_event>& changes) override;

    // Reads after `after` (the greatest id the hub holds) from now on.
    void start(std::int64_t after);
    // Hands on everything committed so far (the committer has stopped), then stops.
    void stop();

private:
    void run();
    // Reads and hands on everything after newest_; false if the store failed. Presence changes
    // taken for a read that failed are put back, to go with the next read.
    bool drain();
    // The store failed (logged once per outage), or answered again after failing.
    void failed(const char* what);
    void recovered();

    hub_feed& feed_;
    series_cap& series_;
    std::unique_ptr<storage::store_reader> reader_;
    std::unique_ptr<storage::postgresql_listener> listener_;
    std::int64_t newest_ = 0;  // tailer thread only (and stop(), after it joined)
    std::mutex mutex_;
    std::vector<status_event> changes_;  // committed presence changes not yet handed on
    // The current outage (tailer thread only): when it began and the reads that failed since.
    std::chrono::steady_clock::time_point failing_since_{};
    std::uint64_t failed_reads_ = 0;
    bool listen_failing_ = false;  // LISTEN failed since the last wait that worked
    std::atomic<bool> stopping_{false};
    std::thread thread_;
};

}  // namespace telemetry::bridge
