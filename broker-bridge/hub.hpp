// The one piece of shared live state: newest committed id, per-series summaries, a bounded window
// of recent readings, and the parked long polls waiting for them.
#pragma once

#include "database.hpp"
#include "reading.hpp"
#include "topic_filter.hpp"

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
#include <vector>

namespace telemetry::bridge {

// A committed reading as the hub hands it out: its MQTT topic (for filter matching) and its JSON
// (serialised once, shared by every client that receives it).
struct live_reading {
    reading r;
    std::string topic;
    std::string json;
    std::string ws_json;  // the same as a WebSocket message: {"op":"reading",...}
};
using live_ptr = std::shared_ptr<const live_reading>;

struct poll_result {
    std::int64_t cursor = 0;  // resume after this id
    std::vector<live_ptr> readings;
};

// A parked long poll. The hub completes it at most once: with matching readings, or the owner
// cancels it (timeout). `done` runs on the committing thread and must only post work elsewhere.
struct poll_waiter {
    std::vector<topic_filter> filters;
    std::size_t limit = 1000;
    std::function<void(poll_result)> done;
};

// A streaming subscriber (an SSE or WebSocket session). The hub holds it weakly and calls it on
// the committing thread, after releasing its lock: implementations only hand the call over to
// their own I/O thread.
class stream_subscriber {
public:
    virtual ~stream_subscriber() = default;
    // A commit's new readings, in id order (unfiltered: the subscriber applies its filters).
    virtual void on_readings(const std::shared_ptr<const std::vector<live_ptr>>& batch) = 0;
    virtual void on_status(const std::string& sensor, bool online) = 0;
    // The bridge is stopping: close with a retry hint.
    virtual void on_shutdown() = 0;
};

// A cached HTTP representation: body, strong ETag of the body, and when it last changed.
struct representation {
    std::string body;
    std::string etag;
    std::time_t last_modified = 0;
    std::shared_ptr<const std::string> not_modified_http11;  // the whole 304, ready to write
};

// What decides whether a stored query's answer can have changed: the series' newest id and the
// count of retention passes that deleted from it.
struct series_version {
    std::int64_t last_id = 0;
    std::uint64_t retention_epoch = 0;
    std::time_t changed_at = 0;
    friend bool operator==(const series_version&, const series_version&) = default;
};

// Thread safety: every member function may be called from any thread; one mutex guards the state,
// held only for short, non-blocking work (no I/O, no SQLite, no callbacks into clients: completed
// waiters are called after the lock is released).
class hub {
public:
    hub(std::string topic_prefix, std::size_t window);

    // Start-up: the stored series, the greatest id ever handed out, and the newest readings
    // (ascending id, the last `window` or fewer) that seed the in-memory window.
    void load(const std::vector<storage::series_info>& series, std::int64_t max_id,
              std::vector<reading> tail, std::int64_t tail_after, std::int64_t retired_max_id);

    // Committed readings, in id order, from the ingest thread. Never call before the commit.
    void publish(const std::vector<reading>& committed);
    void set_online(std::string_view sensor, bool online);
    // Retention deleted readings with ts < cutoff_ms: counts, versions, and the window follow.
    void retention_applied(const storage::retention_result& r, std::int64_t cutoff_ms);
    // Greatest id retention ever deleted: a stream resuming below it may have missed readings.
    std::int64_t retired_max_id() const;

    std::int64_t newest_id() const;
    std::size_t series_count() const;
    std::size_t parked() const;

    // Immutable and shared: a revalidation costs a reference count, not a copy of the body.
    std::shared_ptr<const representation> latest(std::string_view sensor, std::string_view metric);
    std::shared_ptr<const representation> sensors();
    std::optional<series_version> version(std::string_view sensor, std::string_view metric) const;

    enum class poll_outcome { ready, parked, need_storage };
    // Readings with id > after matching the waiter's filters. `ready`: `out` holds them (at most
    // limit). `parked`: none yet; the waiter is registered and will be completed by publish().
    // `need_storage`: `after` is older than the window; the caller scans storage from `after` up to
    // window_floor() and calls poll again from there.
    poll_outcome poll(std::int64_t after, const std::shared_ptr<poll_waiter>& w, poll_result& out);
    // Unregisters a parked waiter. Returns the newest id if the waiter was still parked (so the
    // caller owns its completion), nullopt if publish() has already completed it.
    std::optional<std::int64_t> cancel(const std::shared_ptr<poll_waiter>& w);
    // Shutdown: completes every parked poll now, with no readings and the newest id, and tells
    // every stream to close.
    void release_all();

    // Attaches a stream that has seen everything up to `after`. Under the same lock that publish()
    // takes, it copies the window's readings with id > after that match `filters` into `replay`
    // and registers the subscriber for everything committed later, so nothing is missed or sent
    // twice between replay and live (`attached`). When more than `max_replay` would be copied it
    // copies that many and does not register (`more`: send them, then call again after the last
    // one). When `after` is older than the window: `need_storage` (replay from storage up to
    // window_floor(), then call again).
    enum class attach_outcome { attached, more, need_storage };
    attach_outcome attach(std::int64_t after, const std::vector<topic_filter>& filters,
                          const std::shared_ptr<stream_subscriber>& s, std::vector<live_ptr>& replay,
                          std::size_t max_replay);
    // Registers a stream for everything committed from now on and returns the newest id at that
    // instant, atomically: older readings are in the window or storage, newer ones are delivered.
    std::int64_t register_stream(const std::shared_ptr<stream_subscriber>& s);
    // Up to `limit` window readings with after < id <= upto that match `filter`, in id order.
    // False when `after` is older than the window (the caller reads storage instead).
    bool window_range(std::int64_t after, std::int64_t upto, const topic_filter& filter,
                      std::size_t limit, std::vector<live_ptr>& out) const;
    void detach(const stream_subscriber* s);
    std::size_t streams() const;
    // Every reading with id > window_floor() is in memory.
    std::int64_t window_floor() const;

    const std::string& topic_prefix() const noexcept { return prefix_; }
    live_ptr make_live(reading r) const;

private:
    struct series_state {
        std::string unit;
        std::optional<bool> online;
        std::int64_t count = 0;
        std::optional<reading> latest;
        std::time_t latest_changed_at = 0;
        series_version version;
        std::deque<std::int64_t> recent_ts;
        std::shared_ptr<const representation> latest_repr;  // cache, reset when latest changes
    };
    using series_key = std::pair<std::string, std::string>;
    // Orders keys by (sensor, metric) and lets string_view pairs look them up without allocating.
    struct key_less {
        using is_transparent = void;
        template <typename A, typename B>
        bool operator()(const A& a, const B& b) const noexcept {
            return std::pair<std::string_view, std::string_view>(a.first, a.second) <
                   std::pair<std::string_view, std::string_view>(b.first, b.second);
        }
    };

    series_state* find(std::string_view sensor, std::string_view metric);
    const series_state* find(std::string_view sensor, std::string_view metric) const;
    void scan_window(std::int64_t after, const poll_waiter& w, poll_result& out) const;
    void collect_streams(std::vector<std::shared_ptr<stream_subscriber>>& out);  // lock held
    static std::optional<std::int64_t> median_interval(const std::deque<std::int64_t>& ts);

    const std::string prefix_;
    const std::size_t window_;

    mutable std::mutex mutex_;
    std::map<series_key, series_state, key_less> series_;
    std::map<std::string, bool, std::less<>> online_;  // sensors with a status but maybe no series
    std::deque<live_ptr> recent_;
    std::int64_t floor_ = 0;
    std::int64_t retired_max_id_ = 0;
    std::int64_t newest_ = 0;
    std::uint64_t version_ = 0;        // bumps on any change the sensors list shows
    std::time_t changed_at_ = 0;
    std::uint64_t sensors_repr_version_ = 0;
    std::shared_ptr<const representation> sensors_repr_;
    std::vector<std::shared_ptr<poll_waiter>> waiters_;
    std::vector<std::weak_ptr<stream_subscriber>> streams_;
};

}  // namespace telemetry::bridge
