// The ingest journal: an append-only file where each reading is recorded before the broker gets
// its acknowledgement, so that SQLite can take readings in batches without losing any in a crash.
// Beside the readings it keeps the identities of the last MQTT deliveries it recorded, so that a
// redelivery of one of them is recognised however its payload is written.
#pragma once

#include "reading.hpp"

#include <cstdint>
#include <filesystem>
#include <span>
#include <unordered_map>
#include <vector>

namespace telemetry::storage {

// Durability: the file is mapped shared into memory and an append is a copy into the mapping: no
// system call, and the same promise as SQLite's WAL with synchronous=NORMAL: everything appended
// survives a crash of the process (the kernel owns the page cache), not a power cut. A record is
// [length][crc32][readings] followed by a zero length word that ends the journal; a torn or
// corrupt tail (a crash mid-copy) is ignored at recovery.
//
// Deliveries: after the `capacity` bytes for records the file holds a ring of the identities of
// the last `deliveries_kept` deliveries appended (8-byte keys, 0 = none). An append that carries
// a key writes it into its record first and into the ring after: a crash between the two leaves
// the key in the record, and opening the file puts every recorded key back into the ring. So a
// key is known from the moment its readings are durable, and stays known for the next
// `deliveries_kept` deliveries, across resets, rewrites and restarts.
//
// Thread safety: none; the caller serialises (the bridge holds one mutex around it).
class journal {
public:
    static constexpr std::size_t deliveries_kept = 8192;

    // Opens or creates the file with `capacity` bytes for records reserved on disk (and the
    // delivery ring after them); throws storage_error.
    explicit journal(const std::filesystem::path& file, std::uint64_t capacity = 64ull << 20);
    ~journal();
    journal(const journal&) = delete;
    journal& operator=(const journal&) = delete;

    // Appends the readings (ids already assigned) as one record, with the key of the delivery
    // that brought them (0: none). Throws storage_error when the journal is full (the caller
    // retries once the writer has caught up and emptied it).
    void append(std::span<const reading> readings, std::uint64_t delivery = 0);
    // True if `delivery` is among the keys kept; then it is recorded again, so that it stays known
    // for another `deliveries_kept` deliveries.
    bool redelivered(std::uint64_t delivery);
    // Every reading of every intact record, in order.
    std::vector<reading> recover();
    // Empties the file: everything in it is in SQLite. Delivery keys are kept.
    void reset();
    // Replaces the content with just these readings (those not yet in SQLite), so the file does
    // not grow without bound under sustained load. Delivery keys are kept.
    void rewrite(std::span<const reading> pending);
    std::uint64_t size() const noexcept { return size_; }

private:
    void open_file();
    void close_file() noexcept;
    std::vector<reading> scan(std::vector<std::uint64_t>* keys);
    void load_ring();
    void remember(std::uint64_t delivery);
    std::uint64_t ring_offset() const noexcept { return (capacity_ + 7) / 8 * 8; }
    std::uint64_t* ring() const noexcept;

    std::filesystem::path path_;
    std::uint64_t capacity_;
    int fd_ = -1;
    unsigned char* map_ = nullptr;
    std::uint64_t size_ = 0;  // bytes of intact records from the start
    std::vector<unsigned char> buf_;
    std::unordered_map<std::uint64_t, std::uint32_t> known_;  // key -> its slots in the ring
};

}  // namespace telemetry::storage
