// Committed readings to the hub, and the log of what their `seq` reveals lost upstream.
#include "pipeline/hub_feed.hpp"

#include "core/metrics.hpp"
#include "live/hub.hpp"

#include <spdlog/spdlog.h>

namespace telemetry::bridge {
namespace {
// A sensor losing readings upstream can reveal a gap with every reading: the log says so for at
// most this many gaps a minute, and how many it left out.
constexpr int gap_lines_per_minute = 10;
}  // namespace

void hub_feed::committed(std::vector<reading>& stored, std::vector<status_event>& changes) {
    report(hub_.publish(stored, changes));
}

void hub_feed::report(const std::vector<seq_gap>& gaps) {
    if (gaps.empty()) return;
    std::uint64_t missing = 0;
    for (const auto& g : gaps) missing += static_cast<std::uint64_t>(g.missing());
    metrics_.readings_seq_gaps.fetch_add(missing, std::memory_order_relaxed);
    const auto now = std::chrono::steady_clock::now();
    if (now - gap_log_minute_ >= std::chrono::minutes(1)) {
        if (gap_lines_left_out_ > 0)
            spdlog::warn("ingest: {} more seq gaps in the last minute were not logged "
                         "(telemetry_readings_seq_gaps_total counts every missing reading)",
                         gap_lines_left_out_);
        gap_log_minute_ = now;
        gap_lines_ = 0;
        gap_lines_left_out_ = 0;
    }
    for (const auto& g : gaps) {
        if (gap_lines_ == gap_lines_per_minute) {
            ++gap_lines_left_out_;
            continue;
        }
        ++gap_lines_;
        spdlog::warn("ingest: {}/{}: seq jumped from {} to {}: {} readings missing upstream", g.sensor, g.metric,
                     g.after_seq, g.seq, g.missing());
    }
}

}  // namespace telemetry::bridge
