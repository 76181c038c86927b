// The ingest journal: an append-only file where each reading is recorded before the broker gets
// its acknowledgement, so that SQLite can take readings in batches without losing any in a crash.
#pragma once

#include "reading.hpp"

#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

namespace telemetry::storage {

// Durability: the file is mapped shared into memory and an append is a copy into the mapping: no
// system call, and the same promise as SQLite's WAL with synchronous=NORMAL: everything appended
// survives a crash of the process (the kernel owns the page cache), not a power cut. A record is
// [length][crc32][readings] followed by a zero length word that ends the journal; a torn or
// corrupt tail (a crash mid-copy) is ignored at recovery.
//
// Thread safety: none; the caller serialises (the bridge holds one mutex around it).
class journal {
public:
    // Opens or creates the file with `capacity` bytes reserved on disk; throws storage_error.
    explicit journal(const std::filesystem::path& file, std::uint64_t capacity = 64ull << 20);
    ~journal();
    journal(const journal&) = delete;
    journal& operator=(const journal&) = delete;

    // Appends the readings (ids already assigned) as one record. Throws storage_error when the
    // journal is full (the caller retries once the writer has caught up and emptied it).
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
    void close_file() noexcept;
    std::filesystem::path path_;
    std::uint64_t capacity_;
    int fd_ = -1;
    unsigned char* map_ = nullptr;
    std::uint64_t size_ = 0;  // bytes of intact records from the start
    std::vector<unsigned char> buf_;
};

}  // namespace telemetry::storage
