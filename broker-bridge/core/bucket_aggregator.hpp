// Live aggregates of one subscription (docs/api.md section 4.1): committed readings in id order
// in, per-series bucket events (closed, corrected, provisional) out. Pure: what it needs from
// storage it asks for, and the caller brings it back.
#pragma once

#include "core/wire_format.hpp"
#include "database.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace telemetry::bridge {

// What a subscription asks for: `bucket=` (its width) and `provisional=`.
struct bucket_spec {
    std::int64_t width_ms = 60'000;
    bool provisional = false;  // also send the open bucket's value as it grows
};
// Widths a live subscription may ask for (the syntax is /aggregate's).
inline constexpr std::int64_t min_live_bucket_ms = 1'000;
inline constexpr std::int64_t max_live_bucket_ms = 31LL * 86'400'000;
// The width of a live subscription's `bucket` ("10s", "1m", ...), or nullopt with
// live_bucket_error the message every transport answers.
std::optional<std::int64_t> live_bucket_width(std::string_view text) noexcept;
inline constexpr std::string_view live_bucket_error =
    "bucket must be a duration from 1s to 31d, such as 10s, 1m, 1h or 1d";

struct bucket_values {
    std::int64_t count = 0;
    double min = 0, max = 0, sum = 0;
    void add(double v) noexcept;
    static bucket_values from(const storage::partial_bucket& p) noexcept { return {p.count, p.min, p.max, p.sum}; }
};

struct bucket_event {
    enum class kind { provisional, closed, corrected };
    kind what = kind::closed;
    std::int64_t id = 0;  // every reading up to this id is in: a client resumes after it
    live_ptr series;      // a reading of the series (for its sensor and metric)
    std::int64_t t = 0;   // bucket start
    bucket_values values;
};

// {"sensor":..,"metric":..,"t":..,"count":..,"min":..,"max":..,"avg":..,"final":b,"correction":b}
void append_bucket_json(std::string& out, const bucket_event& e);
// id:, event: bucket, data: the JSON above.
void append_sse_bucket(std::string& out, const bucket_event& e, std::string_view at_epoch);
// {"op":"bucket","topic":<subscription>,"id":N, then the JSON's fields}
std::string ws_bucket_message(std::string_view topic, const bucket_event& e);

// Invariant: for every series it has seen, `open` holds the full aggregate (every committed
// reading with an id up to the last one added, whichever stream it came from) of the series'
// newest bucket, and every bucket above `settled_upto` other than the open one is empty up to that
// id. So an event always carries a bucket's whole value, never a difference: a client keeps the
// newest event per (series, t), and a repeated event changes nothing.
// Memory: one entry per series selected that has had a reading since the subscription started.
// Not thread safe: owned by one stream, used on its thread.
class bucket_aggregator {
public:
    explicit bucket_aggregator(bucket_spec spec) : spec_(spec) {}

    // Adds a reading, newer (by id) than every reading added before. Returns false, adding
    // nothing, when it needs storage's view of the series before this reading first: the caller
    // reads it (storage::reader::seed_bucket with before_id = the reading's id, this width and
    // its ts) and calls again with it.
    bool add(const live_ptr& l, const storage::bucket_seed* seed, std::vector<bucket_event>& out);
    // Whether add() needs a seed for the first reading of a series it has not seen yet.
    bool knows(std::string_view topic) const { return series_.count(topic) != 0; }
    // The open buckets that grew since the last call, as provisional events at `id`.
    void take_provisional(std::int64_t id, std::vector<bucket_event>& out);
    const bucket_spec& spec() const noexcept { return spec_; }
    std::int64_t bucket_of(std::int64_t ts) const noexcept;

private:
    struct series_state {
        bool has_open = false;
        std::int64_t open_t = 0;
        bucket_values open;
        std::int64_t settled_upto = INT64_MIN;  // buckets above it, but the open one, are empty
        bool dirty = false;                     // grew since the last provisional event
        live_ptr name;
    };
    bucket_spec spec_;
    // By topic: a view of the topic of the entry's own `name`, which keeps it alive (no copy).
    std::unordered_map<std::string_view, series_state> series_;
    std::vector<series_state*> dirty_;
};

}  // namespace telemetry::bridge
