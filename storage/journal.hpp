// The ingest journal: an append-only file where each reading is recorded before the broker gets
// its acknowledgement, so that SQLite can take readings in batches without losing any in a crash.
// Beside the readings it keeps the identities of the last MQTT deliveries it recorded, so that a
// redelivery of one of them is recognised however its payload is written.
#pragma once

#include "database.hpp"
#include "reading.hpp"

#include <cstdint>
#include <filesystem>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

namespace telemetry::storage {

// Thrown when the file system cannot hold the journal's reservation; the message names the file,
// the size and the space free.
struct journal_space_error : storage_error {
    using storage_error::storage_error;
};

// Durability: the file is mapped shared into memory and an append is a copy into the mapping.
// Without `sync` that is all: no system call, and the same promise as SQLite's WAL with
// synchronous=NORMAL: everything appended survives a crash of the process (the kernel owns the
// page cache), not a power cut. With `sync` (ingest.sync) an append returns only once the mapping
// is on stable storage (msync MS_SYNC: the record and the ring's new key in one call), so it also
// survives a power cut; a compaction's new file is synced before it is renamed over the old one,
// and the directory after; a file created is synced with its directory. A record is
// [length][crc32][readings] followed by a zero length word that ends the journal; a torn or
// corrupt tail (a crash mid-copy) is ignored at recovery.
//
// Layout: [records: capacity() bytes][ring: ring_bytes]. The ring is always the file's last
// ring_bytes, so a file is read the same whatever reservation it was written with: its record area
// is its size minus the ring. A file from before the ring (records only, to its end) is recognised
// because its records run into those last bytes or they are not shaped like a ring (see
// journal.cpp); it gets an empty ring after its records, which all stay.
//
// Deliveries: the ring holds the identities of the last `deliveries_kept` deliveries appended
// (8-byte keys, 0 = none). An append that carries a key writes it into its record first and into
// the ring after: a crash between the two leaves the key in the record, and opening the file puts
// every recorded key back into the ring. So a key is known from the moment its readings are
// durable, and stays known for the next `deliveries_kept` deliveries, across resets, compactions,
// restarts and changes of the reservation.
//
// Thread safety: none; the caller serialises (the bridge holds one mutex around it).
class journal {
public:
    static constexpr std::size_t deliveries_kept = 8192;
    // The ring at the end of the file: the number of keys ever written into it, then the slots.
    static constexpr std::uint64_t ring_bytes = 8 * (1 + deliveries_kept);

    // Opens or creates the file with `capacity` bytes for records reserved on disk, and the ring
    // after them. A file whose record area is already larger keeps its size: a journal written
    // with a larger reservation may hold acknowledged readings beyond `capacity`. A smaller one is
    // enlarged (in place; by a copy renamed over it when its ring holds keys, so that a crash
    // leaves one whole ring). Throws journal_space_error when the file system has no room for the
    // reservation, storage_error for other failures; either way nothing is left open.
    // `sync`: every append (and compaction) reaches stable storage before it returns (above).
    explicit journal(const std::filesystem::path& file, std::uint64_t capacity = 64ull << 20, bool sync = false);
    journal(const journal&) = delete;
    journal& operator=(const journal&) = delete;

    // Appends the readings (ids already assigned) as one record, with the key of the delivery
    // that brought them (0: none). Throws storage_error when the journal is full (the caller
    // retries once the writer has caught up and emptied it), or, with sync, when the sync fails:
    // then the record and its key are taken back (the next append overwrites them).
    void append(std::span<const reading> readings, std::uint64_t delivery = 0);
    // True if `delivery` is among the keys kept; then it is recorded again, so that it stays known
    // for another `deliveries_kept` deliveries.
    bool redelivered(std::uint64_t delivery);
    // Every reading of every intact record, in order.
    std::vector<reading> recover();
    // Empties the file: everything in it is in SQLite. Delivery keys are kept.
    void reset();
    // Replaces the content with just these readings (those not yet in SQLite), so the file does
    // not grow without bound under sustained load. Delivery keys are kept. The new file is written
    // beside the old one and reserved at `capacity` too, so this needs that much free space; when
    // it fails (it throws), the journal is unchanged and nothing of the attempt is left open or on
    // disk.
    void rewrite(std::span<const reading> pending);
    std::uint64_t size() const noexcept { return size_; }
    bool sync() const noexcept { return sync_; }
    // Syncs to stable storage made so far (appends, compactions, creation); 0 without sync.
    std::uint64_t syncs() const noexcept { return syncs_; }
    // Bytes for records: the reservation, or more if the file was larger. The ring starts here.
    std::uint64_t capacity() const noexcept { return capacity_; }

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
        mapping(int fd, std::uint64_t bytes, const std::filesystem::path& file);  // throws storage_error
        mapping(mapping&& o) noexcept
            : data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
        mapping& operator=(mapping&& o) noexcept;
        ~mapping();
        unsigned char* data() const noexcept { return data_; }

    private:
        unsigned char* data_ = nullptr;
        std::uint64_t bytes_ = 0;
    };

    // What opening found in the file: the bytes for records it has, and whether it has a ring
    // after them that holds any key.
    struct found {
        std::uint64_t records = 0;
        bool keys = false;
    };
    found inspect(std::uint64_t file_bytes);
    void reserve(std::uint64_t bytes, std::uint64_t had);
    void replace(std::uint64_t capacity, const std::span<const reading>* pending);
    void load_ring();
    std::vector<reading> scan(std::uint64_t end, std::vector<std::uint64_t>* keys);
    std::uint64_t remember(std::uint64_t delivery);
    void forget_last(std::uint64_t delivery, std::uint64_t evicted);
    void flush();     // the whole mapping to stable storage (msync MS_SYNC); throws storage_error
    void sync_new();  // a file just created or enlarged: its data and size, then its directory
    void sync_directory();
    std::uint64_t* ring() const noexcept;

    std::filesystem::path path_;
    bool sync_;
    std::uint64_t syncs_ = 0;
    std::uint64_t reserve_;   // what the owner asked for; a compaction writes a file this large
    std::uint64_t capacity_;  // bytes for records: reserve_, or more if the file was larger
    descriptor fd_;
    mapping map_;             // capacity_ + ring_bytes
    std::uint64_t size_ = 0;  // bytes of intact records from the start
    std::vector<unsigned char> buf_;
    std::unordered_map<std::uint64_t, std::uint32_t> known_;  // key -> its slots in the ring
};

}  // namespace telemetry::storage
