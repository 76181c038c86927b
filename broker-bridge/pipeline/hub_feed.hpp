// Hands committed readings and presence changes to the hub, and logs the gaps in `seq` they
// reveal: the one step between storage and fan-out, whichever engine stores.
#pragma once

#include "reading.hpp"
#include "live/series_table.hpp"

#include <chrono>
#include <cstdint>
#include <vector>

namespace telemetry::bridge {

class hub;
class metrics;

// Where the committer hands what it committed, on its own thread, right after the commit.
class commit_sink {
public:
    virtual ~commit_sink() = default;
    // `stored`: the readings the writer returned (ids filled, id order); `changes`: the presence
    // changes committed with them, newest per sensor. The callee may move from both.
    virtual void committed(std::vector<reading>& stored, std::vector<status_event>& changes) = 0;
};

// Thread safety: one thread at a time (the committer's with SQLite, the tailer's with
// PostgreSQL): the hub takes commits in id order from one publisher.
class hub_feed final : public commit_sink {
public:
    hub_feed(hub& h, metrics& m) : hub_(h), metrics_(m) {}

    void committed(std::vector<reading>& stored, std::vector<status_event>& changes) override;

private:
    void report(const std::vector<seq_gap>& gaps);

    hub& hub_;
    metrics& metrics_;
    // Gap log lines in the current minute, and those left out.
    std::chrono::steady_clock::time_point gap_log_minute_{};
    int gap_lines_ = 0;
    std::uint64_t gap_lines_left_out_ = 0;
};

}  // namespace telemetry::bridge
