// The ingest journal: an append-only file where each reading is recorded before the broker gets
// its acknowledgement, so that SQLite can take readings in batches without losing any in a crash.
#include "journal.hpp"

#include "database.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
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

}  // namespace

journal::journal(const std::filesystem::path& file) : path_(file) { open_file(); }

journal::~journal() {
    if (fd_ >= 0) ::close(fd_);
}

void journal::open_file() {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("cannot open " + path_.string());
    struct stat st {};
    if (::fstat(fd_, &st) != 0) fail("cannot stat " + path_.string());
    size_ = static_cast<std::uint64_t>(st.st_size);
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
    std::size_t done = 0;
    while (done < buf_.size()) {
        const ssize_t n = ::write(fd_, buf_.data() + done, buf_.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            // Cut what was half written so that later records stay readable.
            if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0) { /* recovery ignores a torn tail */ }
            fail("write failed");
        }
        done += static_cast<std::size_t>(n);
    }
    size_ += buf_.size();
}

std::vector<reading> journal::recover() {
    std::vector<reading> out;
    std::vector<unsigned char> data(size_);
    std::size_t got = 0;
    while (got < data.size()) {
        const ssize_t n = ::pread(fd_, data.data() + got, data.size() - got, static_cast<off_t>(got));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += static_cast<std::size_t>(n);
    }
    std::size_t pos = 0;
    while (got - pos >= 8) {
        cursor head(data.data() + pos, 8);
        std::uint32_t len = 0, crc = 0;
        head.u32(len);
        head.u32(crc);
        if (len > max_record || got - pos - 8 < len) break;  // torn tail
        const unsigned char* payload = data.data() + pos + 8;
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
    return out;
}

void journal::reset() {
    if (size_ == 0) return;
    if (::ftruncate(fd_, 0) != 0) fail("cannot truncate " + path_.string());
    size_ = 0;
}

void journal::rewrite(std::span<const reading> pending) {
    // Written beside and renamed over, so a crash leaves either the old or the new file whole.
    const auto tmp = path_.string() + ".new";
    {
        journal fresh(tmp);
        fresh.reset();
        if (!pending.empty()) fresh.append(pending);
    }
    if (std::rename(tmp.c_str(), path_.c_str()) != 0) fail("cannot replace " + path_.string());
    ::close(fd_);
    fd_ = -1;
    open_file();
}

}  // namespace telemetry::storage
