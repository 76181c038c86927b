// The MQTT republisher's durable cursor (see ack_cursor.hpp for what survives which crash).
#include "republish/ack_cursor.hpp"

#include <spdlog/spdlog.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <fcntl.h>
#include <unistd.h>

namespace telemetry::bridge {
namespace {

constexpr std::array<char, 8> magic{'T', 'M', 'Q', 'O', 'U', 'T', '1', '\n'};
constexpr off_t id_offset = 8;

[[noreturn]] void fail(const std::filesystem::path& f, const char* what) {
    throw std::runtime_error("mqtt_out: cursor file " + f.string() + ": " + what + ": " + std::strerror(errno));
}

void sync_directory(const std::filesystem::path& f) {
    const auto dir = f.has_parent_path() ? f.parent_path() : std::filesystem::path(".");
    const int d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0) return;
    ::fsync(d);
    ::close(d);
}

}  // namespace

ack_cursor::ack_cursor(std::filesystem::path file, std::int64_t initial) : file_(std::move(file)) {
    fd_ = ::open(file_.c_str(), O_RDWR | O_CLOEXEC);
    if (fd_ < 0 && errno == ENOENT) {
        // Written whole under a temporary name and renamed: a crash leaves no cursor or a whole one.
        const auto tmp = std::filesystem::path(file_.string() + ".tmp");
        const int t = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (t < 0) fail(tmp, "cannot create");
        std::array<char, 16> init{};
        std::memcpy(init.data(), magic.data(), magic.size());
        std::memcpy(init.data() + id_offset, &initial, sizeof initial);
        const bool ok = ::pwrite(t, init.data(), init.size(), 0) == static_cast<ssize_t>(init.size()) && ::fsync(t) == 0;
        ::close(t);
        if (!ok || ::rename(tmp.c_str(), file_.c_str()) != 0) fail(file_, "cannot write");
        sync_directory(file_);
        created_ = true;
        fd_ = ::open(file_.c_str(), O_RDWR | O_CLOEXEC);
    }
    if (fd_ < 0) fail(file_, "cannot open");
    std::array<char, 16> head{};
    if (::pread(fd_, head.data(), head.size(), 0) != static_cast<ssize_t>(head.size()) ||
        std::memcmp(head.data(), magic.data(), magic.size()) != 0) {
        ::close(fd_);
        errno = EINVAL;
        fail(file_, "not a cursor file (remove it to start republishing from the newest reading)");
    }
    std::memcpy(&value_, head.data() + id_offset, sizeof value_);
}

ack_cursor::~ack_cursor() {
    if (fd_ < 0) return;
    sync();
    ::close(fd_);
}

bool ack_cursor::store(std::int64_t id) {
    if (id == value_) return true;
    if (::pwrite(fd_, &id, sizeof id, id_offset) != static_cast<ssize_t>(sizeof id)) {
        spdlog::error("mqtt_out: cannot record acknowledged id {} in {}: {}", id, file_.string(), std::strerror(errno));
        return false;
    }
    value_ = id;
    dirty_ = true;
    return true;
}

void ack_cursor::sync() {
    if (!dirty_) return;
    if (::fdatasync(fd_) == 0) dirty_ = false;
}

}  // namespace telemetry::bridge
