// Whether the committer waits a moment for a fuller batch before committing.
//
// A transaction costs the same fixed work (WAL frames for every page it dirtied) however few rows
// it holds, and every batch handed to the live streams costs each of them a write. When readings
// pile up while a batch is being committed and handed on, the committer is busy, and waiting a
// little for more makes fewer, fuller batches. When each batch holds a single reading, waiting
// would only delay readings that are not coming; every live stream would see it.
//
// The signal is a moving mean of batch sizes, not the last one: at 100 readings/s two readings
// that happen to arrive together must not make the next reading wait.
//
// Not thread-safe: the committer's thread only.
#pragma once

#include <algorithm>
#include <cstddef>

namespace telemetry::bridge {

class batch_gathering {
public:
    // The committer took a batch of n readings.
    void taken(std::size_t n) {
        if (n == 0) return;  // a wake-up for presence changes only
        // Counted at most as largest: a backlog's 1000-reading batches say "busy" as well as 3 do,
        // and the committer stops waiting within a dozen batches once they hold one reading again.
        mean_ += (static_cast<double>(std::min(n, largest)) - mean_) / smoothing;
    }
    // Whether to wait for more before committing the next batch.
    bool worth_waiting() const { return mean_ >= busy_mean; }
    double mean_batch() const { return mean_; }

private:
    static constexpr double smoothing = 8;    // the mean follows about this many batches
    static constexpr double busy_mean = 1.5;  // readings per batch from which the committer waits
    static constexpr std::size_t largest = 3;
    double mean_ = 1;
};

}  // namespace telemetry::bridge
