// What the live side hands a subscriber (an SSE or WebSocket stream, a parked long poll): one
// commit's readings and presence changes that its filters select, and nothing else.
#pragma once

#include "core/selector.hpp"
#include "core/wire_format.hpp"

#include <cstdint>
#include <memory>
#include <vector>

namespace telemetry::bridge {

using reading_batch = std::shared_ptr<const std::vector<live_ptr>>;
using status_batch = std::shared_ptr<const std::vector<status_ptr>>;

// One commit as one subscriber sees it. Either batch may be null (nothing selected).
struct delivery {
    reading_batch readings;  // in id order; shared with every subscriber that selects all of them
    status_batch statuses;   // the newest state per sensor, for sensors its filters can match
    std::int64_t newest = 0; // the newest committed id once this commit is visible
};

// Where subscribers hand their deliveries over to other threads (the I/O shards), told before and
// after the on_delivery calls of one commit, on the committing thread: each of those threads is
// then woken once per commit, with all of its subscribers' deliveries queued, instead of at the
// first one and again while the rest are queued (bench/README.md, "SSE tail latency").
class delivery_batching {
public:
    virtual ~delivery_batching() = default;
    virtual void begin_commit() = 0;
    virtual void end_commit() = 0;
};

// Implemented by the transports. The hub calls these on the committing thread after releasing
// its locks; implementations only hand the call over to their own I/O thread.
class subscriber {
public:
    virtual ~subscriber() = default;
    virtual void on_delivery(const delivery& d) = 0;
    // The bridge is stopping: answer (a long poll) or close with a retry hint (a stream).
    virtual void on_shutdown() = 0;
};

}  // namespace telemetry::bridge
