// Group commit for ingest: readings are journaled (durable) in the MQTT callback, acknowledged,
// and moved into SQLite in batches by one writer thread, which then hands them to the hub.
#include "pipeline/committer.hpp"

#include "core/metrics.hpp"

#include <spdlog/spdlog.h>

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <utility>

namespace telemetry::bridge {
namespace {
// Past this share of its reservation the journal is rewritten with only what SQLite still lacks.
constexpr std::uint64_t journal_compact_share = 4;
constexpr std::size_t recovery_chunk = 10'000;
// At most this many readings per transaction (and per hub batch): large enough to amortise a
// commit, small enough that one batch never fills a streaming client's send queue on its own.
constexpr std::size_t max_batch = 1000;
constexpr std::size_t min_busy_batch = 500;
constexpr auto busy_batch_wait = std::chrono::milliseconds(2);

// The journal, or an error that says which setting to change when the volume is too small for it.
storage::journal open_journal(const std::filesystem::path& file, std::uint64_t bytes, bool sync) {
    try {
        return storage::journal(file, bytes, sync);
    } catch (const storage::journal_space_error& e) {
        throw storage::storage_error(std::string(e.what()) +
                                     "; lower [ingest] journal_reserve_mb (compaction needs as much again "
                                     "free), or free space there");
    }
}
}  // namespace

committer::committer(storage::store_writer& writer, const std::filesystem::path& journal_file,
                     std::uint64_t journal_bytes, commit_sink& sink, metrics& m, std::size_t max_pending, bool sync)
    : writer_(writer), journal_(open_journal(journal_file, journal_bytes, sync)),
      compact_bytes_(journal_bytes / journal_compact_share), sink_(sink), metrics_(m), max_pending_(max_pending) {
    // The journal drops what the store committed: with sync, only once the store has it durably.
    if (sync && !writer_.power_safe())
        throw storage::storage_error("ingest.sync needs a power-safe store (SQLite synchronous=FULL, "
                                     "PostgreSQL synchronous_commit on)");
    next_id_ = writer_.next_journal_id();
    count_syncs();
}

void committer::count_syncs() { metrics_.journal_syncs.store(journal_.syncs(), std::memory_order_relaxed); }

committer::~committer() { stop(); }

std::size_t committer::recover() {
    auto journaled = journal_.recover();
    std::size_t stored = 0;
    std::int64_t max_journaled = 0;
    for (const auto& r : journaled) max_journaled = std::max(max_journaled, r.id);
    // Entries below the writer's next journal id were committed before the crash.
    const std::int64_t committed_below = writer_.next_journal_id();
    std::erase_if(journaled, [&](const reading& r) { return r.id < committed_below; });
    for (std::size_t i = 0; i < journaled.size(); i += recovery_chunk) {
        const auto n = std::min(recovery_chunk, journaled.size() - i);
        stored += writer_.insert(std::span<const reading>(journaled.data() + i, n)).size();
    }
    journal_.reset();
    next_id_ = std::max(writer_.next_journal_id(), max_journaled + 1);
    if (!journaled.empty())
        spdlog::info("storage: recovered {} journaled readings ({} new)", journaled.size(), stored);
    return stored;
}

void committer::start() {
    if (!thread_.joinable())
        thread_ = std::thread([this] {
            pthread_setname_np(pthread_self(), "committer");  // visible in top -H and perf
            run();
        });
}

void committer::submit(std::vector<reading> readings, std::uint64_t delivery) {
    std::unique_lock lock(mutex_);
    space_cv_.wait(lock, [&] { return pending_.size() < max_pending_ || stopping_; });
    const std::int64_t first = next_id_;
    for (auto& r : readings) r.id = next_id_++;
    try {
        journal_.append(readings, delivery);  // with sync, on stable storage once it returns
        count_syncs();
    } catch (...) {
        next_id_ = first;
        throw;
    }
    pending_.insert(pending_.end(), std::make_move_iterator(readings.begin()),
                    std::make_move_iterator(readings.end()));
    // Wake the writer only when it waits for this: not once per message while it gathers a batch.
    const bool wake = writer_idle_ || (gathering_ && pending_.size() >= min_busy_batch);
    lock.unlock();
    if (wake) work_cv_.notify_one();
}

bool committer::redelivered(std::uint64_t delivery) {
    std::lock_guard lock(mutex_);
    return journal_.redelivered(delivery);
}

void committer::submit_status(std::string sensor, bool online, std::int64_t at_ms) {
    {
        std::lock_guard lock(mutex_);
        auto [it, fresh] = status_index_.try_emplace(sensor, statuses_.size());
        if (fresh) statuses_.push_back({std::move(sensor), online, at_ms});
        else statuses_[it->second] = {std::move(sensor), online, at_ms};
    }
    work_cv_.notify_one();
}

void committer::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    work_cv_.notify_all();
    space_cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void committer::run() {
    std::vector<reading> batch;
    std::vector<status_change> statuses;
    for (;;) {
        {
            std::unique_lock lock(mutex_);
            writer_idle_ = true;
            work_cv_.wait(lock, [&] { return stopping_ || !pending_.empty() || !statuses_.empty(); });
            writer_idle_ = false;
            if (pending_.empty() && statuses_.empty()) return;  // stopping, all committed
            // Under load, wait a moment for a fuller batch: a transaction costs ~200 us however
            // many rows it holds, so 20-reading commits spend most of the CPU on commits. When
            // batches hold a single reading (batch_gathering.hpp) a reading is committed at once.
            if (pending_.size() < min_busy_batch && !stopping_ && gathering_rule_.worth_waiting()) {
                gathering_ = true;
                work_cv_.wait_for(lock, busy_batch_wait,
                                  [&] { return stopping_ || pending_.size() >= min_busy_batch; });
                gathering_ = false;
            }
            const auto n = std::min(max_batch, pending_.size());
            batch.assign(std::make_move_iterator(pending_.begin()),
                         std::make_move_iterator(pending_.begin() + static_cast<std::ptrdiff_t>(n)));
            pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
            statuses.swap(statuses_);
            status_index_.clear();
            gathering_rule_.taken(batch.size());
        }
        space_cv_.notify_all();
        commit(batch, statuses);
        batch.clear();
        statuses.clear();
        std::lock_guard lock(mutex_);
        // Everything journaled so far is committed unless more arrived meanwhile (journaled and
        // queued together, under this mutex).
        try {
            if (pending_.empty()) {
                journal_.reset();
            } else if (journal_.size() > compact_bytes_) {
                journal_.rewrite(std::vector<reading>(pending_.begin(), pending_.end()));
                count_syncs();
                if (std::exchange(compaction_failing_, false))
                    spdlog::info("storage: journal compacted again");
            }
        } catch (const std::exception& e) {
            // Tried again after every commit (a full journal makes ingest wait, it loses nothing).
            if (!std::exchange(compaction_failing_, true))
                spdlog::warn("storage: journal not compacted: {}; retrying after each commit", e.what());
        }
    }
}

void committer::commit(std::vector<reading>& batch, std::vector<status_change>& statuses) {
    std::vector<reading> stored;
    auto pause = std::chrono::milliseconds(50);
    for (int attempt = 0;; ++attempt) {
        try {
            const auto t0 = std::chrono::steady_clock::now();
            stored = writer_.insert(batch);
            metrics_.observe_commit(std::chrono::steady_clock::now() - t0);
            metrics_.id_lock_ns.store(static_cast<std::uint64_t>(writer_.id_lock_held().count()),
                                      std::memory_order_relaxed);
            if (health_.commit(true)) spdlog::info("storage: writable again");
            break;
        } catch (const storage::storage_error& e) {
            metrics_.commit_failures.fetch_add(1, std::memory_order_relaxed);
            if (health_.commit(false))
                spdlog::error("storage: commit failed: {}; retrying (readings are safe in the journal)", e.what());
            bool stopping = false;
            {
                std::lock_guard lock(mutex_);
                stopping = stopping_;
            }
            if (stopping && attempt > 3) {
                // They stay in the journal; the next start commits them.
                spdlog::critical("storage: giving up at shutdown; {} readings stay journaled", batch.size());
                std::_Exit(3);
            }
            std::this_thread::sleep_for(pause);
            pause = std::min(pause * 2, std::chrono::milliseconds(2000));
        } catch (const std::exception& e) {
            // Not a storage failure but data the store refuses: a bug upstream. Do not spin.
            spdlog::critical("storage: batch of {} readings refused: {}", batch.size(), e.what());
            return;
        }
    }
    for (const auto& s : statuses) {
        try {
            writer_.set_status(s.sensor, s.online, s.at_ms);
        } catch (const std::exception& e) {
            spdlog::warn("storage: presence of {} not stored: {}", s.sensor, e.what());
        }
    }
    metrics_.readings_stored.fetch_add(stored.size(), std::memory_order_relaxed);
    metrics_.readings_duplicate.fetch_add(batch.size() - stored.size(), std::memory_order_relaxed);
    std::vector<status_event> changes;
    changes.reserve(statuses.size());
    for (auto& s : statuses) changes.push_back({std::move(s.sensor), s.online});
    sink_.committed(stored, changes);
}

}  // namespace telemetry::bridge
