// The ingest journal: an append-only file where each reading is recorded before the broker gets
// its acknowledgement, so that SQLite can take readings in batches without losing any in a crash.
#pragma once

#include "database.hpp"
#include "reading.hpp"

#include <cstdint>
#include <filesystem>
#include <span>
#include <utility>
#include <vector>

namespace telemetry::storage {

// Thrown when the file system cannot hold the journal's reservation; the message names the file,
// the size and the space free.
struct journal_space_error : storage_error {
    using storage_error::storage_error;
};

// Durability: the file is mapped shared into memory and an append is a copy into the mapping: no
// system call, and the same promise as SQLite's WAL with synchronous=NORMAL: everything appended
// survives a crash of the process (the kernel owns the page cache), not a power cut. A record is
// [length][crc32][readings] followed by a zero length word that ends the journal; a torn or
// corrupt tail (a crash mid-copy) is ignored at recovery.
//
// Thread safety: none; the caller serialises (the bridge holds one mutex around it).
class journal {
public:
    // Opens or creates the file with `capacity` bytes reserved on disk (a file already larger keeps
    // its size: a journal written with a larger reservation may hold acknowledged readings beyond
    // `capacity`). Throws journal_space_error when the file system has no room for the
    // reservation, storage_error for other failures.
    explicit journal(const std::filesystem::path& file, std::uint64_t capacity = 64ull << 20);
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
    // not grow without bound under sustained load. The new file is written beside the old one and
    // reserved at `capacity` too, so this needs that much free space; when it fails (it throws),
    // the journal is unchanged and nothing of the attempt is left open or on disk.
    void rewrite(std::span<const reading> pending);
    std::uint64_t size() const noexcept { return size_; }

private:
    // An open descriptor, closed when this goes, so that no way out of a constructor or of a
    // compaction leaks one.
    class descriptor {
    public:
        explicit descriptor(int fd = -1) noexcept : fd_(fd) {}
        descriptor(descriptor&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
        descriptor& operator=(descriptor&& o) noexcept;
        ~descriptor();
        int get() const noexcept { return fd_; }

    private:
        int fd_;
    };
    // A shared mapping of `bytes` of a file, unmapped when this goes.
    class mapping {
    public:
        mapping() = default;
        mapping(unsigned char* data, std::uint64_t bytes) noexcept : data_(data), bytes_(bytes) {}
        mapping(mapping&& o) noexcept
            : data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
        mapping& operator=(mapping&& o) noexcept;
        ~mapping();
        unsigned char* data() const noexcept { return data_; }

    private:
        unsigned char* data_ = nullptr;
        std::uint64_t bytes_ = 0;
    };

    void reserve(bool created);
    std::filesystem::path path_;
    std::uint64_t reserve_;   // what the owner asked for; a compaction writes a file this large
    std::uint64_t capacity_;  // the mapped length: reserve_, or more if the file was larger
    descriptor fd_;
    mapping map_;
    std::uint64_t size_ = 0;  // bytes of intact records from the start
    std::vector<unsigned char> buf_;
};

}  // namespace telemetry::storage
