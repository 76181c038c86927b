// The MQTT republisher's durable cursor: the id up to which the out broker acknowledged every
// republished reading, in a small file beside the database (`<db_path>.mqtt-out-cursor`).
#pragma once

#include <cstdint>
#include <filesystem>

namespace telemetry::bridge {

// Why a file of its own and not a table in the SQLite file: the committer's one write connection
// is the ingest path, and a second writer would wait on SQLite's single write lock (and make the
// committer wait on ours) once per acknowledgement; writing it through the committer would tie
// acknowledgements from the out broker to ingest's batches. Here a store is one pwrite() of 8
// bytes into the page cache: it survives a crash of the process as soon as it returns (like the
// journal and SQLite's WAL at synchronous=NORMAL), and sync() (a second's worth at a time, off
// the acknowledgement path) makes it survive a power loss too.
//
// What a lost or stale value costs: the stored id only ever trails the truth (it is written after
// the PUBACK), so the worst case after a crash is that readings the broker already acknowledged
// are published again, with the same ids (what QoS 1 redelivery does anyway); nothing is skipped.
//
// Layout: 8 bytes of magic, then the id (little-endian int64, 8-aligned, so a crash never leaves
// half of one value and half of another).
//
// Thread safety: none; owned by the republisher's thread (the constructor runs before it starts).
class ack_cursor {
public:
    // Opens `file`, or creates it holding `initial` (synced with its directory, so that readings
    // committed from now on are republished even if the bridge crashes before the first PUBACK).
    // Throws std::runtime_error when the file cannot be used or is not a cursor file.
    ack_cursor(std::filesystem::path file, std::int64_t initial);
    ~ack_cursor();
    ack_cursor(const ack_cursor&) = delete;
    ack_cursor& operator=(const ack_cursor&) = delete;

    std::int64_t value() const noexcept { return value_; }
    bool created() const noexcept { return created_; }
    // Records `id`; false (and logged) if the write failed: the old value stays, so a restart repeats.
    bool store(std::int64_t id);
    // Flushes to stable storage if a store happened since the last sync.
    void sync();

private:
    std::filesystem::path file_;
    int fd_ = -1;
    std::int64_t value_ = 0;
    bool created_ = false;
    bool dirty_ = false;
};

}  // namespace telemetry::bridge
