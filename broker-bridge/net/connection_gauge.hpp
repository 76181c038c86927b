// Open client connections, in all and per client address: the state the connection limits and
// the shutdown drain read (the metrics only report it).
#pragma once

#include <boost/asio/ip/address.hpp>

#include <atomic>
#include <cstddef>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>

namespace telemetry::bridge::http {

// Thread safety: any thread. A slot is held by whichever object owns the connection (the HTTP
// session, then the SSE or WebSocket stream it hands the connection to) and frees on destruction.
class connection_gauge {
public:
    connection_gauge(std::size_t limit, std::size_t per_address) : limit_(limit), per_address_(per_address) {}

    class slot {
    public:
        slot() = default;
        slot(connection_gauge* g, boost::asio::ip::address a) noexcept : gauge_(g), address_(std::move(a)) {}
        slot(slot&& o) noexcept : gauge_(std::exchange(o.gauge_, nullptr)), address_(o.address_) {}
        slot& operator=(slot&& o) noexcept {
            if (this != &o) {
                release();
                gauge_ = std::exchange(o.gauge_, nullptr);
                address_ = o.address_;
            }
            return *this;
        }
        slot(const slot&) = delete;
        slot& operator=(const slot&) = delete;
        ~slot() { release(); }

    private:
        void release() noexcept {
            if (gauge_) gauge_->close(address_);
            gauge_ = nullptr;
        }
        connection_gauge* gauge_ = nullptr;
        boost::asio::ip::address address_;
    };

    enum class refusal { none, total, per_address };
    // A slot for a connection from `from`, or why not: `limit` connections are open, or
    // `per_address` of them from that address (one client cannot lock everyone else out).
    std::pair<std::optional<slot>, refusal> try_open(const boost::asio::ip::address& from) {
        std::lock_guard lock(mutex_);
        if (open_.load(std::memory_order_relaxed) >= limit_) return {std::nullopt, refusal::total};
        std::size_t& n = by_address_[from];
        if (n >= per_address_) return {std::nullopt, refusal::per_address};
        ++n;
        open_.fetch_add(1, std::memory_order_relaxed);
        return {slot(this, from), refusal::none};
    }
    std::size_t open() const noexcept { return open_.load(std::memory_order_relaxed); }

private:
    struct address_hash {
        std::size_t operator()(const boost::asio::ip::address& a) const noexcept {
            return std::hash<std::string>{}(a.to_string());
        }
    };
    void close(const boost::asio::ip::address& from) noexcept {
        std::lock_guard lock(mutex_);
        if (auto it = by_address_.find(from); it != by_address_.end() && --it->second == 0) by_address_.erase(it);
        open_.fetch_sub(1, std::memory_order_relaxed);
    }

    const std::size_t limit_;
    const std::size_t per_address_;
    std::mutex mutex_;
    std::unordered_map<boost::asio::ip::address, std::size_t, address_hash> by_address_;  // guarded
    std::atomic<std::size_t> open_{0};
};

}  // namespace telemetry::bridge::http
