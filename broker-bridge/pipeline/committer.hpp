// Group commit for ingest: readings are journaled (durable) in the MQTT callback, acknowledged,
// and moved into the store in batches by one writer thread, which then hands them on (a
// commit_sink: the hub, or with PostgreSQL the tailer that feeds it in id order).
#pragma once

#include "core/wire_format.hpp"
#include "store.hpp"
#include "live/series_table.hpp"
#include "journal.hpp"
#include "pipeline/batch_gathering.hpp"
#include "pipeline/hub_feed.hpp"
#include "pipeline/storage_health.hpp"

#include <condition_variable>
#include <deque>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace telemetry::bridge {

class metrics;

// Why: Paho acknowledges a QoS 1 message when its callback returns, one message at a time, so
// committing each message to SQLite in the callback costs a transaction per reading (measured:
// ~14k readings/s, a fifth of what the broker delivers). Appending to the journal costs one
// write() with the same crash durability as SQLite's WAL at synchronous=NORMAL; SQLite then
// commits whatever has accumulated in one transaction.
//
// Power cuts (ingest.sync): the journal append is followed by an msync before submit() returns,
// so before the PUBACK; one per message, because Paho acknowledges each message when its own
// callback returns: no two messages share an ack point, so no sync can cover several. The writer
// then runs with synchronous=FULL (storage::writer), because the journal is emptied (reset) or
// compacted (rewrite) right after a commit returns, on the strength of that commit: with NORMAL a
// power cut could lose the last commits after the journal had dropped their readings. FULL costs
// one WAL fsync per batch (up to max_batch readings), off the acknowledgement path; the
// alternative, keeping the journal until a checkpoint syncs SQLite, would need checkpoint
// tracking and a larger journal for the same promise.
//
// Invariants: journal ids are assigned here, in journal order, so they increase in commit order
// (with SQLite they are the readings' ids; PostgreSQL assigns its own under its id lock and
// records the journal position per replica); a reading is handed on only after its transaction
// committed; the journal is emptied only when every reading in it is in the store.
//
// Thread safety: submit*() from the ingest thread, the rest from the owner; one mutex guards the
// journal and the queue, never held across a SQLite call.
class committer {
public:
    // Opens the journal with `journal_bytes` reserved (ingest.journal_reserve_mb); it is compacted
    // above a quarter of that. Throws storage_error, naming the setting when the space is lacking.
    // `sync` (ingest.sync): every journal append is on stable storage before submit() returns;
    // the store must then be power-safe too (store_writer::power_safe), which this checks.
    committer(storage::store_writer& writer, const std::filesystem::path& journal_file,
              std::uint64_t journal_bytes, commit_sink& sink, metrics& m, std::size_t max_pending = 100'000,
              bool sync = false);
    ~committer();
    committer(const committer&) = delete;
    committer& operator=(const committer&) = delete;

    // Start-up, before start(): stores whatever the journal holds that SQLite lacks (a crash
    // between acknowledgement and commit). Returns how many readings it stored.
    std::size_t recover();
    void start();
    // Journals the readings of one MQTT delivery (assigning their ids) with the delivery's
    // identity (delivery_key; 0: none), and queues them; once this returns they are durable and
    // may be acknowledged. Blocks while max_pending readings wait for SQLite (so a slow disk slows
    // ingest instead of growing memory). Throws storage_error if the journal cannot be written:
    // then nothing was queued and nothing may be acknowledged.
    void submit(std::vector<reading> readings, std::uint64_t delivery = 0);
    // True if a delivery with this identity was journaled (among the journal's last
    // deliveries_kept): a redelivery whose readings are durable already.
    bool redelivered(std::uint64_t delivery);
    // Queues a presence change. Changes not yet committed are conflated to the newest per sensor,
    // so a fleet reconnecting costs one entry per sensor, never a queue per message.
    void submit_status(std::string sensor, bool online, std::int64_t at_ms);
    storage_health& health() noexcept { return health_; }
    // Commits everything queued, then stops the thread.
    void stop();

private:
    struct status_change {
        std::string sensor;
        bool online;
        std::int64_t at_ms;
    };
    void run();
    void commit(std::vector<reading>& batch, std::vector<status_change>& statuses);
    void count_syncs();  // under mutex_

    storage::store_writer& writer_;
    storage::journal journal_;
    const std::uint64_t compact_bytes_;
    commit_sink& sink_;
    metrics& metrics_;
    const std::size_t max_pending_;
    storage_health health_;

    std::mutex mutex_;
    std::condition_variable work_cv_;
    std::condition_variable space_cv_;
    std::deque<reading> pending_;
    std::vector<status_change> statuses_;  // in arrival order, one per sensor
    std::unordered_map<std::string, std::size_t> status_index_;  // sensor -> its place in statuses_
    std::int64_t next_id_ = 1;
    batch_gathering gathering_rule_;  // writer thread only
    bool compaction_failing_ = false;  // writer thread only: logged once until one succeeds
    bool writer_idle_ = false;    // the writer waits for any work
    bool gathering_ = false;      // the writer waits briefly for a fuller batch
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace telemetry::bridge
