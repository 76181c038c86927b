// The ingest journal: an append-only file where each reading is recorded before the broker gets
// its acknowledgement, so that SQLite can take readings in batches without losing any in a crash.
#include "journal.hpp"

#include "database.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace telemetry::storage {
namespace {

constexpr std::uint32_t max_record = 64u << 20;

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

// Sizes as an operator reads them: "64 MiB", "9.8 MiB", "4096 bytes".
std::string readable(std::uint64_t bytes) {
    constexpr std::uint64_t mib = 1u << 20;
    if (bytes < mib / 10) return std::to_string(bytes) + " bytes";
    char out[32];
    std::snprintf(out, sizeof out, "%.*f MiB", bytes % mib ? 1 : 0, static_cast<double>(bytes) / mib);
    return out;
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
journal::journal(const std::filesystem::path& file, std::uint64_t capacity)
    : path_(file), reserve_(capacity), capacity_(capacity),
      fd_(::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)) {
    if (fd_.get() < 0) fail("cannot open " + path_.string());
    struct stat st {};
    if (::fstat(fd_.get(), &st) != 0) fail("cannot stat " + path_.string());
    const auto existing = static_cast<std::uint64_t>(st.st_size);
    capacity_ = std::max(capacity_, existing);
    if (existing < capacity_) reserve(existing == 0);
    void* m = ::mmap(nullptr, capacity_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
    if (m == MAP_FAILED) fail("cannot map " + path_.string());
    map_ = mapping(static_cast<unsigned char*>(m), capacity_);
    recover();  // finds the end of the intact records
}

// Reserve the blocks now: a write into a mapped page that the file system cannot back (disk full)
// would kill the process with SIGBUS; this way a full disk is a clear error when the file is made.
void journal::reserve(bool created) {
    const int rc = ::posix_fallocate(fd_.get(), 0, static_cast<off_t>(capacity_));
    if (rc == 0) return;
    // A file we just created holds nothing: give back whatever part of it was allocated.
    if (created) {
        [[maybe_unused]] const int ignored = ::ftruncate(fd_.get(), 0);
    }
    const std::string what = "cannot reserve " + readable(capacity_) + " for " + path_.string();
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

void journal::append(std::span<const reading> readings) {
    buf_.clear();
    put_u32(buf_, 0);  // length, patched below
    put_u32(buf_, 0);  // crc32 of the payload, patched below
    put_u32(buf_, static_cast<std::uint32_t>(readings.size()));
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
    std::memset(map_.data() + size_ + buf_.size(), 0, 4);
    std::memcpy(map_.data() + size_, buf_.data(), buf_.size());
    size_ += buf_.size();
}

std::vector<reading> journal::recover() {
    std::vector<reading> out;
    const unsigned char* data = map_.data();
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
        std::vector<reading> record;
        bool ok = true;
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

void journal::rewrite(std::span<const reading> pending) {
    // Written beside and renamed over, so a crash leaves either the old or the new file whole.
    const std::filesystem::path tmp = path_.string() + ".new";
    try {
        journal fresh(tmp, reserve_);
        fresh.reset();
        if (!pending.empty()) fresh.append(pending);
        if (std::rename(tmp.c_str(), path_.c_str()) != 0) fail("cannot replace " + path_.string());
        // `fresh` has the renamed file open and mapped: take both over; the old ones close here.
        fd_ = std::move(fresh.fd_);
        map_ = std::move(fresh.map_);
        capacity_ = fresh.capacity_;
        size_ = fresh.size_;
    } catch (...) {
        std::error_code ignored;
        std::filesystem::remove(tmp, ignored);  // a half-reserved copy would only hold the space
        throw;
    }
}

}  // namespace telemetry::storage
