// The ingest journal: an append-only file where each reading is recorded before the broker gets
// its acknowledgement, so that SQLite can take readings in batches without losing any in a crash.
#pragma once

#include "reading.hpp"

#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

namespace telemetry::storage {

// Durability: one write() per append and no fsync, the same promise as SQLite's WAL with
// synchronous=NORMAL: everything appended survives a crash of the process (not a power cut).
// A record is [length][crc32][readings]; a torn or corrupt tail (a crash mid-write) is ignored at
// recovery, and a record is only acknowledged once its write() returned.
//
// Thread safety: none; the caller serialises (the bridge holds one mutex around it).
class journal {
public:
    explicit journal(const std::filesystem::path& file);  // opens or creates; throws storage_error
    ~journal();
    journal(const journal&) = delete;
    journal& operator=(const journal&) = delete;

    // Appends the readings (ids already assigned) as one record. Throws storage_error.
    void append(std::span<const reading> readings);
    // Every reading of every intact record, in order.
    std::vector<reading> recover();
    // Empties the file: everything in it is in SQLite.
    void reset();
    // Replaces the content with just these readings (those not yet in SQLite), so the file does
    // not grow without bound under sustained load.
    void rewrite(std::span<const reading> pending);
    std::uint64_t size() const noexcept { return size_; }

private:
    void open_file();
    std::filesystem::path path_;
    int fd_ = -1;
    std::uint64_t size_ = 0;
    std::vector<unsigned char> buf_;
};

}  // namespace telemetry::storage
