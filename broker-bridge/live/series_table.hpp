// The series table: per (sensor, metric) summaries (count, newest reading, unit, median publish
// interval), presence, and the versions that tell whether a stored query's answer can have changed.
#pragma once

#include "database.hpp"
#include "core/selector.hpp"
#include "core/wire_format.hpp"

#include <cstdint>
#include <ctime>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace telemetry::bridge {

// What decides whether a stored query's answer can have changed: the series' newest id and the
// count of retention passes that deleted from it.
struct series_version {
    std::int64_t last_id = 0;
    std::uint64_t retention_epoch = 0;
    std::time_t changed_at = 0;
    friend bool operator==(const series_version&, const series_version&) = default;
};

// One row of the overview (GET /api/v1/sensors), valid while the table's lock is held.
struct series_row {
    std::string_view sensor;
    std::string_view metric;
    std::string_view unit;
    std::optional<bool> online;
    std::int64_t count = 0;
    std::optional<std::int64_t> interval_ms;  // median interval between recent readings
    std::optional<std::int64_t> seq_gaps;      // seq values skipped since the bridge started;
                                               // nullopt when not counted (count_seq_gaps)
    const reading* latest = nullptr;
};

// A series' seq jumped forward: the readings in between never arrived (docs/api.md section 3.3).
struct seq_gap {
    std::string sensor;
    std::string metric;
    std::int64_t after_seq = 0;  // the seq before the gap
    std::int64_t seq = 0;        // the seq after it
    std::int64_t missing() const noexcept { return seq - after_seq - 1; }
};

// Thread safety: every member function may be called from any thread; one mutex guards the table,
// held for short, non-blocking work. Derived values (the HTTP layer's representations) are built
// under it by the caller's function and cached until what they derive from changes, so a
// revalidation costs one lookup and a reference count.
class series_table {
public:
    using derived = std::shared_ptr<const void>;

    // `retired_unattributed`: the greatest id retention deleted without recording from which
    // series (storage::reader::retired_unattributed).
    void load(const std::vector<storage::series_info>& series, std::int64_t retired_unattributed = 0);
    // Returns the gaps in `seq` the readings reveal: a reading whose seq is greater than the
    // previous one of its series (by id) plus one. A seq going back to 0 or 1 is a sensor that
    // restarted and counts from there; other steps back (late or repeated readings) are ignored.
    std::vector<seq_gap> apply(const std::vector<live_ptr>& committed);
    // Off: apply() finds no gaps and rows carry no count. For replicas on a shared subscription
    // (mqtt.shared_group), where one sensor's readings arrive through several replicas and
    // commit in any order, so that id order is not the sensor's order and a step in `seq` says
    // nothing about loss. Before the first apply().
    void count_seq_gaps(bool on);
    void set_online(const std::vector<status_ptr>& changes);
    void retention_applied(const storage::retention_result& r);
    // True if retention deleted a reading with an id greater than `after` from a series that `sel`
    // selects (topics are `prefix/sensor/metric`): a client resuming after `after` missed it.
    bool deleted_after(std::int64_t after, const reading_selector& sel, std::string_view prefix) const;

    std::optional<series_version> version(std::string_view sensor, std::string_view metric) const;
    std::size_t size() const;

    // The series' latest reading (greatest ts, ties: greatest id) turned into a value by `make`
    // (called with the reading and when it became the latest), cached until the latest changes.
    // nullptr for an unknown series.
    derived latest(std::string_view sensor, std::string_view metric,
                   const std::function<derived(const reading&, std::time_t)>& make);
    // Every series, in (sensor, metric) order, turned into a value by `make`, cached under
    // `cache_key` (one value per key: e.g. per read grant) until any summary or presence changes.
    derived overview(const std::string& cache_key,
                     const std::function<derived(const std::vector<series_row>&, std::time_t)>& make);

private:
    struct state {
        std::string unit;
        std::optional<bool> online;
        std::int64_t count = 0;
        std::optional<reading> latest;
        std::time_t latest_changed_at = 0;
        series_version version;
        std::deque<std::int64_t> recent_ts;
        std::optional<std::int64_t> last_seq;  // the seq gaps are counted from
        std::int64_t seq_gaps = 0;
        std::int64_t retired_max_id = 0;  // greatest id retention deleted from the series
        derived latest_derived;  // reset when latest changes
    };
    using key = std::pair<std::string, std::string>;
    // Orders keys by (sensor, metric) and lets string_view pairs look them up without allocating.
    struct key_less {
        using is_transparent = void;
        template <typename A, typename B>
        bool operator()(const A& a, const B& b) const noexcept {
            return std::pair<std::string_view, std::string_view>(a.first, a.second) <
                   std::pair<std::string_view, std::string_view>(b.first, b.second);
        }
    };
    void changed(std::time_t now);  // lock held

    mutable std::mutex mutex_;
    bool count_seq_gaps_ = true;
    std::map<key, state, key_less> series_;
    std::map<std::string, bool, std::less<>> online_;  // sensors with a status but maybe no series
    std::int64_t retired_unattributed_ = 0;
    std::int64_t retired_max_id_ = 0;  // over every series and retired_unattributed_: a quick "no"
    mutable std::string topic_;        // deleted_after's buffer, lock held
    std::uint64_t version_ = 0;  // bumps on any change the overview shows
    std::time_t changed_at_ = 0;
    // Cached overviews by key, all of the same version_; bounded (cleared when full).
    std::uint64_t overview_version_ = 0;
    std::unordered_map<std::string, derived> overviews_;
};

}  // namespace telemetry::bridge
