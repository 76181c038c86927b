// MQTT republish of committed readings ([mqtt_out], docs/api.md section 13): a consumer on the
// fan-out side that publishes every committed reading, id-stamped, to another MQTT topic tree.
#pragma once

#include "core/config.hpp"
#include "core/selector.hpp"
#include "live/subscriber.hpp"
#include "republish/ack_cursor.hpp"
#include "republish/out_connection.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

namespace telemetry::bridge {

class catch_up;
struct catch_up_chunk;
class hub;
class metrics;

// Where readings come from: the hub, through the one catch-up path (pipeline/catch_up) and the
// subscriber registry, exactly as a stream's: it reads committed readings after its cursor from
// the window or storage, and attaches to the registry for live delivery once it reaches the
// newest reading. Never from ingest, so only committed, validated, deduplicated readings go out.
//
// Exactly once per id, from our side: each reading goes out at QoS 1 (and, when it is its
// series' latest, once more retained under the latest prefix, conflated per window); when the
// broker has acknowledged every message of every reading up to id N, N is stored (ack_cursor).
// A start resumes after the stored N, so a restart skips nothing, and repeats only what was sent
// after N: those go out again with the same id, as a QoS 1 redelivery would (about two windows
// at most). Losing the connection does the same, with a fresh client so that nothing the old one
// still held goes out ahead of the replay.
//
// Bounded memory: at most `max_inflight` messages await a PUBACK, and at most `max_queued`
// readings handed over live await publishing. Beyond that (the out broker is away or slow) the
// republisher detaches from live delivery and, once it can send again, catches up from storage
// from its cursor, one chunk at a time, like a stream that was cut and resumes.
//
// Threads: one of its own running an io_context; all state below is touched only there,
// including the connection to the out broker (out_connection). Live deliveries arrive on the
// committing thread and are posted.
class mqtt_republisher {
public:
    // Opens the cursor file (`<db_path>.mqtt-out-cursor`; created at the newest committed id) and
    // the MQTT client. Call after the hub is loaded. Throws if either cannot be used.
    mqtt_republisher(const config& c, hub& h, catch_up& catchup, metrics& m);
    ~mqtt_republisher();
    mqtt_republisher(const mqtt_republisher&) = delete;
    mqtt_republisher& operator=(const mqtt_republisher&) = delete;

    // Connects (retrying with backoff) and republishes until stop().
    void start();
    // Call after the committer stopped: waits a moment for acknowledgements of what is in flight,
    // records the cursor, disconnects.
    void stop();

private:
    class tap;
    struct in_flight {
        std::int64_t id = 0;
        int acks_due = 0;  // the reading's messages not yet acknowledged (1, or 2 with its retained copy)
    };
    // Per series (keyed by its ingest topic): what the retained copy is, and what it will be.
    // The retained copy is the series' greatest (ts, id). It is sent once no reading of the
    // series waits in the queue, or once `window_` readings were sent after it, so a burst costs
    // about one retained message per series per window, not one per reading. Until it is acknowledged, the reading it
    // copies keeps one ack due, so the cursor cannot pass it: a crash replays it (a newer latest
    // takes that obligation over from an older one that was never sent).
    struct series_state {
        std::pair<std::int64_t, std::int64_t> latest;  // greatest (ts, id) retained or to be
        live_ptr pending;                               // to be sent as the retained copy
        std::size_t queued = 0;                         // readings of the series in queue_
        std::uint64_t pending_since = 0;                // `sent_` when `pending` was set
    };
    struct string_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };
    struct queued {
        live_ptr reading;  // null: a presence change
        status_ptr status;
        bool counted = false;  // counted in queued_ (handed over live)
    };

    void make_connection();
    void do_connect();
    void on_connected(int receive_maximum);
    void on_connect_failed(const std::string& why);
    void schedule_reconnect();
    void on_lost(const std::string& why);
    void on_acks(const std::vector<out_connection::acked>& acks);
    void release(std::int64_t id);
    void advance();
    series_state& series(std::string_view topic);
    void enqueue(live_ptr l, bool counted);
    bool send_retained(series_state& st);
    void flush_retained(bool all);
    void on_live(std::uint64_t epoch, const delivery& d);
    void on_overflow(std::uint64_t epoch);
    void do_catch_up();
    void on_chunk(std::uint64_t epoch, const std::shared_ptr<tap>& t, catch_up_chunk c);
    void pump();
    bool send(const std::string& topic, const std::string& payload, bool retained, std::int64_t id);
    bool publish_reading(const live_ptr& l);
    bool publish_status(const status_event& s);
    void queue_presence();
    void detach();
    void clear_queue();
    void schedule_sync();

    const std::string in_prefix_;
    const std::string out_prefix_;
    const std::string latest_prefix_;  // empty: no retained copies
    const mqtt_config broker_;
    const std::size_t max_inflight_;
    const std::size_t max_queued_;
    hub& hub_;
    catch_up& catchup_;
    metrics& metrics_;
    selector_ptr everything_;

    boost::asio::io_context io_;
    boost::asio::steady_timer retry_timer_{io_};
    boost::asio::steady_timer sync_timer_{io_};
    std::thread thread_;
    std::unique_ptr<out_connection> conn_;
    // Connections that ended, destroyed on the next attempt (not from inside their own event).
    std::vector<std::unique_ptr<out_connection>> retired_;
    ack_cursor cursor_file_;

    // Republisher thread only.
    bool connected_ = false;
    std::size_t window_ = 1;     // messages in flight at most: max_inflight within the broker's Receive Maximum
    bool connecting_ = false;
    bool stopping_ = false;
    bool live_ = false;          // attached to the registry: live deliveries follow
    bool catching_up_ = false;   // a catch-up step is running
    std::uint64_t epoch_ = 0;    // bumped when we let go of a tap: its late deliveries are dropped
    std::shared_ptr<tap> tap_;
    std::int64_t cursor_ = 0;    // every reading up to it is queued, in flight or acknowledged
    std::int64_t acked_ = 0;     // every reading up to it is acknowledged (and recorded)
    std::deque<queued> queue_;
    std::deque<in_flight> in_flight_;                 // ascending id
    std::unordered_map<int, std::int64_t> tokens_;    // message id -> reading id (0: presence)
    // Bounded by the number of series (ingest.max_series).
    std::unordered_map<std::string, series_state, string_hash, std::equal_to<>> series_;
    // Series with a pending retained copy, oldest first (an entry whose `since` no longer matches
    // its series' is stale): so that no pending copy holds the cursor back for long.
    std::deque<std::pair<series_state*, std::uint64_t>> pending_order_;
    std::uint64_t sent_ = 0;  // readings sent
    std::chrono::seconds backoff_{1};
    std::string topic_;  // reused buffer

    std::atomic<std::size_t> queued_{0};       // readings handed over live, not yet sent
    std::atomic<std::size_t> outstanding_{0};  // messages awaiting a PUBACK (stop() waits on it)
};

}  // namespace telemetry::bridge
