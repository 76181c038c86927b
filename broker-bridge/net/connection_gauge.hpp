// Open client connections: the state the connection limit and the shutdown drain read (the
// metrics only report it).
#pragma once

#include <atomic>
#include <cstddef>
#include <optional>
#include <utility>

namespace telemetry::bridge::http {

// Thread safety: any thread. A slot is held by whichever object owns the connection (the HTTP
// session, then the SSE or WebSocket stream it hands the connection to) and frees on destruction.
class connection_gauge {
public:
    explicit connection_gauge(std::size_t limit) : limit_(limit) {}

    class slot {
    public:
        slot() = default;
        explicit slot(connection_gauge* g) noexcept : gauge_(g) {}
        slot(slot&& o) noexcept : gauge_(std::exchange(o.gauge_, nullptr)) {}
        slot& operator=(slot&& o) noexcept {
            if (this != &o) {
                release();
                gauge_ = std::exchange(o.gauge_, nullptr);
            }
            return *this;
        }
        slot(const slot&) = delete;
        slot& operator=(const slot&) = delete;
        ~slot() { release(); }

    private:
        void release() noexcept {
            if (gauge_) gauge_->open_.fetch_sub(1, std::memory_order_relaxed);
            gauge_ = nullptr;
        }
        connection_gauge* gauge_ = nullptr;
    };

    // A slot, or nullopt when `limit` connections are open.
    std::optional<slot> try_open() noexcept {
        std::size_t n = open_.load(std::memory_order_relaxed);
        do {
            if (n >= limit_) return std::nullopt;
        } while (!open_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
        return slot(this);
    }
    std::size_t open() const noexcept { return open_.load(std::memory_order_relaxed); }

private:
    const std::size_t limit_;
    std::atomic<std::size_t> open_{0};
};

}  // namespace telemetry::bridge::http
