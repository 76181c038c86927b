// The ingest journal: an append-only file where each reading is recorded before the broker gets
// its acknowledgement, so that SQLite can take readings in batches without losing any in a crash;
// and the ring of the last deliveries' identities.
#include "journal.hpp"

#include "database.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <cerrno>
#include <cstring>

namespace telemetry::storage {
namespace {

constexpr std::uint32_t max_record = 64u << 20;
// A record's count word with this bit set is followed by the key of the delivery it came from.
constexpr std::uint32_t keyed_record = 0x8000'0000u;
// The ring after the records: the number of keys ever written into it, then the slots.
constexpr std::uint64_t ring_bytes = 8 * (1 + journal::deliveries_kept);

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

}  // namespace

journal::journal(const std::filesystem::path& file, std::uint64_t capacity)
    : path_(file), capacity_(capacity) {
    open_file();
}

journal::~journal() { close_file(); }

void journal::close_file() noexcept {
    if (map_) ::munmap(map_, ring_offset() + ring_bytes);
    if (fd_ >= 0) ::close(fd_);
    map_ = nullptr;
    fd_ = -1;
}

void journal::open_file() {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("cannot open " + path_.string());
    struct stat st {};
    if (::fstat(fd_, &st) != 0) fail("cannot stat " + path_.string());
    // Reserve the blocks now: a write into a mapped page that the file system cannot back (disk
    // full) would kill the process with SIGBUS; this way a full disk is a clear error at start-up.
    // A file written before the ring existed is extended with zeros: an empty ring.
    const std::uint64_t length = ring_offset() + ring_bytes;
    if (static_cast<std::uint64_t>(st.st_size) < length) {
        const int rc = ::posix_fallocate(fd_, 0, static_cast<off_t>(length));
        if (rc != 0) {
            errno = rc;
            fail("cannot reserve " + std::to_string(length) + " bytes for " + path_.string());
        }
    }
    void* m = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (m == MAP_FAILED) fail("cannot map " + path_.string());
    map_ = static_cast<unsigned char*>(m);
    size_ = 0;
    known_.clear();
    const std::uint64_t* slots = ring() + 1;
    for (std::size_t i = 0; i < deliveries_kept; ++i)
        if (slots[i] != 0) ++known_[slots[i]];
    // Finds the end of the intact records, and puts back into the ring a key that a crash kept
    // out of it (written into its record, not yet into the ring).
    std::vector<std::uint64_t> keys;
    scan(&keys);
    for (const auto k : keys)
        if (!known_.contains(k)) remember(k);
}

std::uint64_t* journal::ring() const noexcept {
    // The mapping is page aligned and ring_offset() a multiple of 8: aligned 8-byte words, which
    // a crash of the process cannot leave half written.
    return reinterpret_cast<std::uint64_t*>(map_ + ring_offset());
}

void journal::remember(std::uint64_t delivery) {
    std::uint64_t* r = ring();
    const std::uint64_t written = r[0];
    std::uint64_t& slot = r[1 + written % deliveries_kept];
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
    std::memset(map_ + size_ + buf_.size(), 0, 4);
    std::memcpy(map_ + size_, buf_.data(), buf_.size());
    size_ += buf_.size();
    // Into the ring only once the record holds the readings: a key known without its readings
    // would make their redelivery count as stored.
    std::atomic_signal_fence(std::memory_order_release);
    if (delivery != 0) remember(delivery);
}

std::vector<reading> journal::recover() { return scan(nullptr); }

std::vector<reading> journal::scan(std::vector<std::uint64_t>* keys) {
    std::vector<reading> out;
    const unsigned char* data = map_;
    const std::uint64_t got = capacity_;
    std::uint64_t pos = 0;
    while (got - pos >= 8) {
        cursor head(data + pos, 8);
        std::uint32_t len = 0, crc = 0;
        head.u32(len);
        head.u32(crc);
        if (len == 0 || len > max_record || got - pos - 8 < len) break;  // the end, or torn
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
    std::memset(map_, 0, 8);
    size_ = 0;
}

void journal::rewrite(std::span<const reading> pending) {
    // Written beside and renamed over, so a crash leaves either the old or the new file whole.
    const auto tmp = path_.string() + ".new";
    {
        journal fresh(tmp, capacity_);
        fresh.reset();
        std::memcpy(fresh.ring(), ring(), ring_bytes);  // the keys of these readings among them
        if (!pending.empty()) fresh.append(pending);
    }
    if (std::rename(tmp.c_str(), path_.c_str()) != 0) fail("cannot replace " + path_.string());
    close_file();
    open_file();
}

}  // namespace telemetry::storage
