// Test support for disk-full cases: a small file system of our own, and a count of a process's open
// descriptors, to show that a failure leaks none.
#pragma once

#include "temp_dir.hpp"

#include <sys/mount.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>

namespace telemetry::testing {

// A tmpfs of `bytes` mounted on a fresh folder, unmounted at scope exit. Mounting needs root
// (CAP_SYS_ADMIN); when it is refused, mounted() is false and why_not() says why, and the test
// skips with that message rather than fail on a machine that cannot run it.
class small_fs {
public:
    explicit small_fs(std::uint64_t bytes) {
        const std::string size = "size=" + std::to_string(bytes);
        if (::mount("tmpfs", dir_.path().c_str(), "tmpfs", MS_NOSUID | MS_NODEV, size.c_str()) == 0)
            mounted_ = true;
        else
            why_not_ = std::string("cannot mount a tmpfs: ") + std::strerror(errno);
    }
    ~small_fs() {
        if (mounted_) ::umount2(dir_.path().c_str(), MNT_DETACH);
    }
    small_fs(const small_fs&) = delete;
    small_fs& operator=(const small_fs&) = delete;

    bool mounted() const { return mounted_; }
    const std::string& why_not() const { return why_not_; }
    const std::filesystem::path& path() const { return dir_.path(); }
    std::filesystem::path operator/(const std::string& name) const { return dir_ / name; }

private:
    temp_dir dir_;  // built before the mount, removed after it
    bool mounted_ = false;
    std::string why_not_;
};

// In a doctest test case: ends it, saying why, where `fs` could not be mounted.
#define SKIP_UNLESS_MOUNTED(fs)                          \
    do {                                                 \
        if (!(fs).mounted()) {                           \
            MESSAGE("skipped: " << (fs).why_not());      \
            return;                                      \
        }                                                \
    } while (false)

// Descriptors open in process `pid` ("self": this one).
inline std::size_t open_descriptors(const std::string& pid = "self") {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/" + pid + "/fd")) ++n;
    return n;
}

// What the descriptors of process `pid` refer to, one per line (for a failure's message).
inline std::string descriptor_targets(const std::string& pid = "self") {
    std::string out;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/proc/" + pid + "/fd", ec)) {
        out += e.path().filename().string() + " -> " + std::filesystem::read_symlink(e.path(), ec).string() + "\n";
    }
    return out;
}

}  // namespace telemetry::testing
