// How fast readings reach the committer: decides whether it waits for a fuller batch.
//
// A transaction costs the same fixed work (WAL frames for every page it dirtied) however few rows
// it holds, so at thousands of readings a second the committer waits a few milliseconds and
// commits them together. At a few hundred a second that wait would gather one or two readings and
// only delay them: every live stream would see it. The rate is a moving mean of the gap between
// readings, not the size of the last batch, so that two readings that happen to arrive together
// at a low rate do not make the next one wait.
//
// Not thread-safe: the committer calls it under its mutex.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace telemetry::bridge {

class arrival_rate {
public:
    using clock = std::chrono::steady_clock;

    // n readings arrived together at `now`.
    void note(std::size_t n, clock::time_point now) {
        if (n == 0) return;
        const auto gap = std::min<clock::duration>(now - last_, longest_gap);
        last_ = now;
        const std::int64_t per_reading = std::chrono::nanoseconds(gap).count() / static_cast<std::int64_t>(n);
        mean_gap_ns_ += (per_reading - mean_gap_ns_) / smoothing;
    }

    // Whether waiting `wait` is expected to gather at least `worth` more readings.
    bool gathers(clock::duration wait, std::int64_t worth) const {
        return std::chrono::nanoseconds(wait).count() >= worth * mean_gap_ns_;
    }

    std::chrono::nanoseconds mean_gap() const { return std::chrono::nanoseconds(mean_gap_ns_); }

private:
    // The mean follows about this many arrivals.
    static constexpr std::int64_t smoothing = 8;
    // A longer gap counts as this one: after an idle hour, a burst is seen as one within a few dozen
    // readings. It is also where the mean starts.
    static constexpr clock::duration longest_gap = std::chrono::milliseconds(100);

    clock::time_point last_{};
    std::int64_t mean_gap_ns_ = std::chrono::nanoseconds(longest_gap).count();
};

}  // namespace telemetry::bridge
