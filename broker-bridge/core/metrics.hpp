// Counters and gauges of the bridge, rendered in the Prometheus text exposition format.
#pragma once

#include "core/payload.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

namespace telemetry::bridge {

// Gauges of the live state, read by the caller when a scrape renders them.
struct live_gauges {
    std::size_t parked = 0;
    std::size_t series = 0;
    std::int64_t newest_id = 0;
    bool storage_writable = true;
};

// Observability only: nothing decides anything by reading these (limits, readiness and shutdown
// read their owners' state). Thread safety: all members are atomics, updated with relaxed ordering from any thread; a scrape
// sees each value as of some recent instant (Prometheus needs nothing stronger).
class metrics {
public:
    // Ingest.
    std::atomic<std::uint64_t> messages_received{0};
    std::atomic<std::uint64_t> readings_stored{0};
    std::atomic<std::uint64_t> readings_duplicate{0};
    std::atomic<std::uint64_t> readings_seq_gaps{0};
    std::atomic<std::uint64_t> status_messages{0};
    std::atomic<std::uint64_t> commit_failures{0};
    std::atomic<std::uint64_t> journal_syncs{0};  // ingest.sync: journal flushes to stable storage
    std::atomic<std::uint64_t> id_lock_ns{0};     // PostgreSQL: time commits held the id lock
    std::atomic<std::int64_t> mqtt_connected{0};
    std::atomic<std::int64_t> mqtt_subscribed{0};
    void reject(reject_reason r) noexcept {
        rejects_[static_cast<std::size_t>(r)].fetch_add(1, std::memory_order_relaxed);
    }
    std::uint64_t rejects(reject_reason r) const noexcept {
        return rejects_[static_cast<std::size_t>(r)].load(std::memory_order_relaxed);
    }
    void observe_commit(std::chrono::nanoseconds d) noexcept;

    // HTTP.
    void count_response(unsigned status) noexcept {
        if (status >= 100 && status < 600) responses_[status - 100].fetch_add(1, std::memory_order_relaxed);
    }
    std::atomic<std::int64_t> http_connections{0};
    std::atomic<std::uint64_t> http_connections_rejected{0};
    std::atomic<std::uint64_t> http_connections_rejected_per_address{0};
    std::atomic<std::uint64_t> http_tls_handshake_failures{0};
    std::atomic<std::uint64_t> http_tls_reloads{0};
    std::atomic<std::uint64_t> query_jobs_rejected{0};
    std::atomic<std::uint64_t> auth_failures{0};
    std::atomic<std::uint64_t> rate_limited{0};

    // Streams.
    std::atomic<std::int64_t> sse_connections{0};
    std::atomic<std::int64_t> ws_connections{0};
    std::atomic<std::int64_t> grpc_streams{0};  // open gRPC Subscribe calls
    std::atomic<std::uint64_t> stream_readings_sent{0};
    std::atomic<std::uint64_t> stream_slow_disconnects{0};
    std::atomic<std::uint64_t> stream_budget_disconnects{0};  // of which: cut by the total budget
    std::atomic<std::int64_t> stream_queued_bytes{0};          // mirrors the send budget's total
    std::atomic<std::uint64_t> stream_conflated{0};

    // MQTT republish ([mqtt_out]); rendered only when it is on.
    std::atomic<bool> mqtt_out_enabled{false};
    std::atomic<std::uint64_t> mqtt_out_published{0};   // readings acknowledged by the out broker
    std::atomic<std::int64_t> mqtt_out_acked_id{0};     // every reading up to it is acknowledged
    std::atomic<std::int64_t> mqtt_out_connected{0};
    std::atomic<std::uint64_t> mqtt_out_fell_behind{0}; // live delivery let go for storage reads

    std::string render(const live_gauges& g) const;

private:
    static constexpr std::array<double, 12> commit_bounds_s{
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0};
    std::array<std::atomic<std::uint64_t>, all_reject_reasons.size()> rejects_{};
    std::array<std::atomic<std::uint64_t>, commit_bounds_s.size() + 1> commit_buckets_{};
    std::atomic<std::uint64_t> commit_count_{0};
    std::atomic<std::uint64_t> commit_sum_ns_{0};
    std::array<std::atomic<std::uint64_t>, 500> responses_{};
};

}  // namespace telemetry::bridge
