// The ingest journal: an append-only file where each reading is recorded before the broker gets
// its acknowledgement, so that SQLite can take readings in batches without losing any in a crash;
// and the ring of the last deliveries' identities.
#include "journal.hpp"

#include "database.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace telemetry::storage {
namespace {

constexpr std::uint32_t max_record = 64u << 20;
// A record's count word with this bit set is followed by the key of the delivery it came from.
constexpr std::uint32_t keyed_record = 0x8000'0000u;
constexpr std::size_t kept = journal::deliveries_kept;

// Record areas are whole 8-byte words, so that the ring after one is aligned.
constexpr std::uint64_t whole_words(std::uint64_t bytes) { return (bytes + 7) / 8 * 8; }

void put_u32(std::vector<unsigned char>& b, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) b.push_back(static_cast<unsigned char>(v >> (8 * i)));
}
void put_i64(std::vector<unsigned char>& b, std::int64_t v) {
    const auto u = static_cast<std::uint64_t>(v);
    for (int i = 0; i < 8; ++i) b.push_back(static_cast<unsigned char>(u >> (8 * i)));
}
void put_str(std::vector<unsigned char>& b, const std::string& s) {
    put_u32(b, static_cast<std::uint32_t>(s.size()));
    b.insert(b.end(), s.begin(), s.end());
}

class cursor {
public:
    cursor(const unsigned char* p, std::size_t n) : p_(p), end_(p + n) {}
    bool u32(std::uint32_t& v) {
        if (end_ - p_ < 4) return false;
        v = 0;
        for (int i = 0; i < 4; ++i) v |= std::uint32_t{p_[i]} << (8 * i);
        p_ += 4;
        return true;
    }
    bool i64(std::int64_t& v) {
        if (end_ - p_ < 8) return false;
        std::uint64_t u = 0;
        for (int i = 0; i < 8; ++i) u |= std::uint64_t{p_[i]} << (8 * i);
        p_ += 8;
        v = static_cast<std::int64_t>(u);
        return true;
    }
    bool str(std::string& s) {
        std::uint32_t n = 0;
        if (!u32(n) || static_cast<std::size_t>(end_ - p_) < n) return false;
        s.assign(reinterpret_cast<const char*>(p_), n);
        p_ += n;
        return true;
    }
    bool done() const { return p_ == end_; }

private:
    const unsigned char* p_;
    const unsigned char* end_;
};

[[noreturn]] void fail(const std::string& what) {
    throw storage_error("journal: " + what + ": " + std::strerror(errno));
}

// Sizes as an operator reads them: "64 MiB", "9.8 MiB", "64 KiB", "4096 bytes".
std::string readable(std::uint64_t bytes) {
    constexpr std::uint64_t kib = 1u << 10, mib = 1u << 20;
    if (bytes < 10 * kib) return std::to_string(bytes) + " bytes";
    const bool in_mib = bytes >= mib;
    const double v = static_cast<double>(bytes) / static_cast<double>(in_mib ? mib : kib);
    char out[32];
    std::snprintf(out, sizeof out, "%.*f %s", std::llround(v * 10) % 10 ? 1 : 0, v, in_mib ? "MiB" : "KiB");
    return out;
}

// Whether these words are a ring as remember() leaves one: with n the count, keys (never 0) in the
// first min(n, kept) slots and zeros in the others, but for slot n, which a crash between a key
// and the count leaves written. Stale records in the tail of a file from before the ring are not.
bool ring_shaped(const std::uint64_t* ring) {
    const std::uint64_t n = ring[0];
    const std::uint64_t* slots = ring + 1;
    const auto zero = [](std::uint64_t k) { return k == 0; };
    if (n >= kept) return std::none_of(slots, slots + kept, zero);
    return std::none_of(slots, slots + n, zero) && std::all_of(slots + n + 1, slots + kept, zero);
}

}  // namespace

journal::descriptor& journal::descriptor::operator=(descriptor&& o) noexcept {
    if (this != &o) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
}

journal::descriptor::~descriptor() {
    if (fd_ >= 0) ::close(fd_);
}

journal::mapping::mapping(int fd, std::uint64_t bytes, const std::filesystem::path& file) : bytes_(bytes) {
    void* m = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) fail("cannot map " + file.string());
    data_ = static_cast<unsigned char*>(m);
}

journal::mapping& journal::mapping::operator=(mapping&& o) noexcept {
    if (this != &o) {
        if (data_) ::munmap(data_, bytes_);
        data_ = std::exchange(o.data_, nullptr);
        bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
}

journal::mapping::~mapping() {
    if (data_) ::munmap(data_, bytes_);
}

// Every resource is a member that releases itself, so a throw anywhere below leaks nothing.
journal::journal(const std::filesystem::path& file, std::uint64_t capacity, bool sync)
    : path_(file), sync_(sync), reserve_(whole_words(capacity)), capacity_(reserve_),
      fd_(::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)) {
    if (fd_.get() < 0) fail("cannot open " + path_.string());
    struct stat st {};
    if (::fstat(fd_.get(), &st) != 0) fail("cannot stat " + path_.string());
    const auto existing = static_cast<std::uint64_t>(st.st_size);
    const found f = existing > 0 ? inspect(existing) : found{};
    const std::uint64_t records = std::max(reserve_, f.records);
    if (f.keys && records > f.records) {
        // The ring must move to the end of a larger file. Moved in place, a crash could leave half
        // of it: a copy renamed over the file leaves the old ring or the new one, whole.
        replace(records, nullptr);
    } else {
        // No ring, or an empty one: the file grows by zeros after its records, which are an
        // empty ring at every instant.
        capacity_ = records;
        const std::uint64_t length = capacity_ + ring_bytes;
        if (existing < length) reserve(length, existing);
        map_ = mapping(fd_.get(), length, path_);
    }
    load_ring();
    // The file may be new or enlarged, and load_ring() may have written keys into the ring.
    if (sync_) sync_new();
}

void journal::flush() {
    if (::msync(map_.data(), capacity_ + ring_bytes, MS_SYNC) != 0) fail("cannot sync " + path_.string());
    ++syncs_;
}

void journal::sync_new() {
    flush();  // msync also writes the size and allocation the data needs (as fdatasync does)
    sync_directory();
}

// A new name (a file created, or renamed over another) is durable only once its directory is.
void journal::sync_directory() {
    const auto dir = path_.has_parent_path() ? path_.parent_path() : std::filesystem::path(".");
    const descriptor d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (d.get() < 0 || ::fsync(d.get()) != 0) fail("cannot sync the directory " + dir.string());
}

// Maps the file as it is and finds its layout (the class comment): its records are read to their
// end over the whole file; its last ring_bytes are its ring if the records stop before them and
// they are shaped like one. Else the file is from before the ring and all of it is for records.
journal::found journal::inspect(std::uint64_t file_bytes) {
    map_ = mapping(fd_.get(), file_bytes, path_);
    capacity_ = file_bytes;
    scan(file_bytes, nullptr);  // sets size_
    found f;
    f.records = whole_words(file_bytes);
    if (file_bytes < ring_bytes || file_bytes % 8 != 0 || size_ > file_bytes - ring_bytes) return f;
    const auto* tail = reinterpret_cast<const std::uint64_t*>(map_.data() + file_bytes - ring_bytes);
    if (!ring_shaped(tail)) return f;
    f.records = capacity_ = file_bytes - ring_bytes;
    f.keys = std::any_of(tail + 1, tail + 1 + kept, [](std::uint64_t k) { return k != 0; });
    return f;
}

// Reserve the blocks now: a write into a mapped page that the file system cannot back (disk full)
// would kill the process with SIGBUS; this way a full disk is a clear error when the file is made
// or enlarged. `had`: the file's size before, which a failure restores.
void journal::reserve(std::uint64_t bytes, std::uint64_t had) {
    const int rc = ::posix_fallocate(fd_.get(), 0, static_cast<off_t>(bytes));
    if (rc == 0) return;
    // Give back whatever part of it was allocated: what was after `had` holds nothing.
    [[maybe_unused]] const int ignored = ::ftruncate(fd_.get(), static_cast<off_t>(had));
    const std::string what = "cannot reserve " + readable(capacity_) + " for " + path_.string() + " (and " +
                             readable(ring_bytes) + " for the identities of recent deliveries)";
    if (rc == ENOSPC || rc == EDQUOT || rc == EFBIG) {
        struct statvfs fs {};
        const std::string room =
            ::fstatvfs(fd_.get(), &fs) == 0
                ? readable(std::uint64_t{fs.f_bavail} * fs.f_frsize) + " free on its file system"
                : "free space unknown";
        throw journal_space_error("journal: " + what + ": " + std::strerror(rc) + " (" + room + ")");
    }
    errno = rc;
    fail(what);
}

// Puts every key of the ring into known_, and into the ring every key that a crash kept out of it
// (written into its record, not yet into the ring); finds the end of the intact records.
void journal::load_ring() {
    known_.clear();
    const std::uint64_t* slots = ring() + 1;
    for (std::size_t i = 0; i < kept; ++i)
        if (slots[i] != 0) ++known_[slots[i]];
    std::vector<std::uint64_t> keys;
    scan(capacity_, &keys);
    for (const auto k : keys)
        if (!known_.contains(k)) remember(k);
}

std::uint64_t* journal::ring() const noexcept {
    // The mapping is page aligned and capacity_ a multiple of 8: aligned 8-byte words, which a
    // crash of the process cannot leave half written.
    return reinterpret_cast<std::uint64_t*>(map_.data() + capacity_);
}

// Returns what the slot held before, for an append that must take its key back.
std::uint64_t journal::remember(std::uint64_t delivery) {
    std::uint64_t* r = ring();
    const std::uint64_t written = r[0];
    std::uint64_t& slot = r[1 + written % kept];
    const std::uint64_t evicted = slot;
    if (slot != 0) {
        auto it = known_.find(slot);
        if (it != known_.end() && --it->second == 0) known_.erase(it);
    }
    // The key, then the count: a crash between the two leaves this slot to be overwritten, and
    // the key in its record. (A crash of the process loses no store that was issued; the fences
    // keep the compiler from issuing them in another order.)
    slot = delivery;
    std::atomic_signal_fence(std::memory_order_release);
    r[0] = written + 1;
    ++known_[delivery];
    return evicted;
}

// Undoes the last remember(delivery), which overwrote `evicted`: an append whose sync failed.
void journal::forget_last(std::uint64_t delivery, std::uint64_t evicted) {
    std::uint64_t* r = ring();
    const std::uint64_t written = r[0] - 1;
    r[1 + written % kept] = evicted;
    std::atomic_signal_fence(std::memory_order_release);
    r[0] = written;
    if (auto it = known_.find(delivery); it != known_.end() && --it->second == 0) known_.erase(it);
    if (evicted != 0) ++known_[evicted];
}

bool journal::redelivered(std::uint64_t delivery) {
    if (delivery == 0 || !known_.contains(delivery)) return false;
    remember(delivery);
    return true;
}

void journal::append(std::span<const reading> readings, std::uint64_t delivery) {
    buf_.clear();
    put_u32(buf_, 0);  // length, patched below
    put_u32(buf_, 0);  // crc32 of the payload, patched below
    put_u32(buf_, static_cast<std::uint32_t>(readings.size()) | (delivery != 0 ? keyed_record : 0));
    if (delivery != 0) put_i64(buf_, static_cast<std::int64_t>(delivery));
    for (const auto& r : readings) {
        put_i64(buf_, r.id);
        put_i64(buf_, r.ts);
        std::int64_t bits = 0;
        std::memcpy(&bits, &r.value, sizeof bits);
        put_i64(buf_, bits);
        put_i64(buf_, r.seq ? 1 : 0);
        put_i64(buf_, r.seq.value_or(0));
        put_str(buf_, r.sensor);
        put_str(buf_, r.metric);
        put_str(buf_, r.unit);
    }
    const auto payload = static_cast<std::uint32_t>(buf_.size() - 8);
    const auto crc = static_cast<std::uint32_t>(crc32(0L, buf_.data() + 8, payload));
    for (int i = 0; i < 4; ++i) {
        buf_[static_cast<std::size_t>(i)] = static_cast<unsigned char>(payload >> (8 * i));
        buf_[static_cast<std::size_t>(4 + i)] = static_cast<unsigned char>(crc >> (8 * i));
    }
    if (size_ + buf_.size() + 4 > capacity_) {
        errno = ENOSPC;
        fail("full (" + std::to_string(capacity_) + " bytes)");
    }
    // The end marker first, then the record: at any instant the journal reads as the old records
    // or the old records plus this one (whose crc proves it whole).
    const std::uint64_t before = size_;
    std::memset(map_.data() + size_ + buf_.size(), 0, 4);
    std::memcpy(map_.data() + size_, buf_.data(), buf_.size());
    size_ += buf_.size();
    // Into the ring only once the record holds the readings: a key known without its readings
    // would make their redelivery count as stored.
    std::atomic_signal_fence(std::memory_order_release);
    const std::uint64_t evicted = delivery != 0 ? remember(delivery) : 0;
    if (!sync_) return;
    // One sync covers the record and the key: a power cut after it loses neither, and the key
    // stays known even once the record is reset (its readings then durable in SQLite).
    try {
        flush();
    } catch (...) {
        // Not acknowledged, so not kept: the key forgotten first (a key must never be known
        // without its readings), then the end marker back where the record began; the caller
        // retries the whole append, which overwrites it. What the failed sync left on disk is
        // unknown: a torn record is ignored at recovery (crc); a whole one, if the bridge stops
        // before the retry succeeds, is recovered though never acknowledged, and its redelivery
        // is stored again unless its key reached the disk too or its seq and ts identify it.
        if (delivery != 0) forget_last(delivery, evicted);
        std::atomic_signal_fence(std::memory_order_release);
        std::memset(map_.data() + before, 0, 4);
        size_ = before;
        throw;
    }
}

std::vector<reading> journal::recover() { return scan(capacity_, nullptr); }

// The intact records in the first `end` bytes, and their delivery keys into `keys` if given.
std::vector<reading> journal::scan(std::uint64_t end, std::vector<std::uint64_t>* keys) {
    std::vector<reading> out;
    const unsigned char* data = map_.data();
    std::uint64_t pos = 0;
    while (end - pos >= 8) {
        cursor head(data + pos, 8);
        std::uint32_t len = 0, crc = 0;
        head.u32(len);
        head.u32(crc);
        if (len == 0 || len > max_record || end - pos - 8 < len) break;  // the end, or torn
        const unsigned char* payload = data + pos + 8;
        if (static_cast<std::uint32_t>(crc32(0L, payload, len)) != crc) break;  // corrupt tail
        cursor c(payload, len);
        std::uint32_t count = 0;
        c.u32(count);
        std::int64_t key = 0;
        bool ok = true;
        if (count & keyed_record) {
            count &= ~keyed_record;
            ok = c.i64(key);
        }
        std::vector<reading> record;
        for (std::uint32_t i = 0; i < count && ok; ++i) {
            reading r;
            std::int64_t bits = 0, has_seq = 0, seq = 0;
            ok = c.i64(r.id) && c.i64(r.ts) && c.i64(bits) && c.i64(has_seq) && c.i64(seq) &&
                 c.str(r.sensor) && c.str(r.metric) && c.str(r.unit);
            std::memcpy(&r.value, &bits, sizeof bits);
            if (has_seq) r.seq = seq;
            record.push_back(std::move(r));
        }
        if (!ok || !c.done()) break;
        if (keys && key != 0) keys->push_back(static_cast<std::uint64_t>(key));
        out.insert(out.end(), std::make_move_iterator(record.begin()), std::make_move_iterator(record.end()));
        pos += 8 + len;
    }
    size_ = pos;
    return out;
}

void journal::reset() {
    std::memset(map_.data(), 0, 8);
    size_ = 0;
}

void journal::rewrite(std::span<const reading> pending) { replace(reserve_, &pending); }

// Writes beside the file a new one with `capacity` bytes for records, this ring, and `pending` (or,
// without it, the records as they are), and renames it over the file: a crash leaves either the
// old or the new file whole. On failure nothing of the attempt stays open or on disk.
void journal::replace(std::uint64_t capacity, const std::span<const reading>* pending) {
    const std::filesystem::path tmp = path_.string() + ".new";
    try {
        // A copy a crash left half written is of no use, and must not be opened as a journal.
        std::error_code gone;
        if (!std::filesystem::remove(tmp, gone) && gone) {
            errno = gone.value();
            fail("cannot remove " + tmp.string());
        }
        journal fresh(tmp, capacity);
        std::memcpy(fresh.ring(), ring(), ring_bytes);  // the keys of these readings among them
        if (!pending) {
            if (size_ + 4 > fresh.capacity_) {
                errno = ENOSPC;
                fail("cannot copy " + std::to_string(size_) + " bytes of records into " + tmp.string());
            }
            std::memcpy(fresh.map_.data(), map_.data(), size_);  // the file is new: zeros end it
            fresh.size_ = size_;
        } else if (!pending->empty()) {
            fresh.append(*pending);
        }
        // With sync, the new file is whole on disk before its name replaces the old one's, and
        // the rename is durable (its directory synced) before anything is appended to it.
        if (sync_) fresh.flush();
        if (std::rename(tmp.c_str(), path_.c_str()) != 0) fail("cannot replace " + path_.string());
        syncs_ += fresh.syncs_;
        // `fresh` has the renamed file open and mapped: take both over; the old ones close here.
        // known_ stays: the ring is the same.
        fd_ = std::move(fresh.fd_);
        map_ = std::move(fresh.map_);
        capacity_ = fresh.capacity_;
        size_ = fresh.size_;
        // Once the journal is the new file (a failure here leaves it so, and consistent).
        if (sync_) sync_directory();
    } catch (...) {
        std::error_code ignored;
        std::filesystem::remove(tmp, ignored);  // a half-reserved copy would only hold the space
        throw;
    }
}

}  // namespace telemetry::storage
