// MQTT republish of committed readings: catch-up and live delivery in, QoS 1 publishes out, the
// acknowledged id recorded (see mqtt_republisher.hpp for the guarantees and their reasons).
#include "republish/mqtt_republisher.hpp"

#include "core/metrics.hpp"
#include "pipeline/stores.hpp"
#include "live/hub.hpp"
#include "pipeline/catch_up.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

#include <spdlog/spdlog.h>

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <future>
#include <limits>

namespace telemetry::bridge {
namespace {

namespace asio = boost::asio;

constexpr std::size_t catch_up_chunk_readings = 1000;
constexpr auto cursor_sync_interval = std::chrono::seconds(1);
constexpr auto busy_retry = std::chrono::milliseconds(100);
constexpr auto stop_drain = std::chrono::seconds(3);
constexpr std::int64_t no_latest = std::numeric_limits<std::int64_t>::min();


std::int64_t start_cursor(ack_cursor& file, const hub& h) {
    const std::int64_t newest = h.newest_id();
    if (file.created()) {
        spdlog::info("mqtt_out: first start: republishing readings committed after id {}", newest);
        return newest;
    }
    if (file.value() > newest) {
        // Ids never go back, so a cursor beyond the newest id belongs to another database.
        spdlog::warn("mqtt_out: the cursor file says id {} was acknowledged but the newest committed id is {} "
                     "(a different database?): republishing from id {}", file.value(), newest, newest);
        file.store(newest);
        return newest;
    }
    spdlog::info("mqtt_out: resuming after id {} (the last one the out broker acknowledged)", file.value());
    return file.value();
}

}  // namespace

// The republisher's entry in the subscriber registry. One per attachment: after we let go of it
// (fell behind, lost the connection), whatever it still delivers carries its old epoch and is
// dropped, and the catch-up that follows covers those readings instead.
class mqtt_republisher::tap final : public subscriber {
public:
    tap(mqtt_republisher& owner, std::uint64_t epoch) : owner_(owner), epoch_(epoch) {}

    void on_delivery(const delivery& d) override {
        if (overflowed_.load(std::memory_order_relaxed)) return;
        const std::size_t n = d.readings ? d.readings->size() : 0;
        if (owner_.queued_.fetch_add(n, std::memory_order_relaxed) + n > owner_.max_queued_) {
            owner_.queued_.fetch_sub(n, std::memory_order_relaxed);
            // Everything from this commit on is read from storage later: drop the rest.
            overflowed_.store(true, std::memory_order_relaxed);
            asio::post(owner_.io_, [o = &owner_, e = epoch_] { o->on_overflow(e); });
            return;
        }
        asio::post(owner_.io_, [o = &owner_, e = epoch_, d] { o->on_live(e, d); });
    }
    void on_shutdown() override {}

private:
    mqtt_republisher& owner_;
    const std::uint64_t epoch_;
    std::atomic<bool> overflowed_{false};
};

mqtt_republisher::mqtt_republisher(const config& c, hub& h, catch_up& catchup, metrics& m)
    : in_prefix_(c.mqtt.topic_prefix),
      out_prefix_(c.mqtt_out.prefix),
      latest_prefix_(c.mqtt_out.latest_prefix()),
      broker_(mqtt_out_broker(c)),
      max_inflight_(c.mqtt_out.max_inflight),
      max_queued_(c.mqtt_out.max_queued),
      hub_(h),
      catchup_(catchup),
      metrics_(m),
      everything_(std::make_shared<reading_selector>(
          std::vector<topic_filter>{*topic_filter::parse(c.mqtt.topic_prefix + "/+/+")})),
      cursor_file_(republish_cursor_path(c.storage.db_path), h.newest_id()) {
    cursor_ = acked_ = start_cursor(cursor_file_, h);
    metrics_.mqtt_out_acked_id.store(acked_, std::memory_order_relaxed);
    metrics_.mqtt_out_enabled.store(true, std::memory_order_relaxed);
    if (!latest_prefix_.empty()) {
        for (const auto& s : open_reader(c.storage)->all_series())
            if (s.latest) {
                assign_topic(topic_, in_prefix_, s.sensor, s.metric);
                series(topic_).latest = {s.latest->ts, s.latest->id};
            }
    }

    make_connection();
    spdlog::info("mqtt_out: republishing committed readings to {}/<sensor>/<metric>{} on {} as {}", out_prefix_,
                 latest_prefix_.empty() ? "" : ", the latest per series retained under " + latest_prefix_ + "/",
                 broker_.url, broker_.client_id);
}

// A fresh connection: after a lost one, whatever the old one still had queued goes with it, so
// nothing of the old connection is sent ahead of the replay from the cursor.
void mqtt_republisher::make_connection() {
    if (conn_) retired_.push_back(std::move(conn_));
    out_connection::events e;
    e.connected = [this](int receive_maximum) { on_connected(receive_maximum); };
    e.closed = [this](const std::string& why, bool was_connected) {
        if (was_connected)
            on_lost(why);
        else
            on_connect_failed(why);
    };
    e.acknowledged = [this](const std::vector<out_connection::acked>& acks) { on_acks(acks); };
    conn_ = std::make_unique<out_connection>(io_, broker_, max_inflight_, std::move(e));
}

mqtt_republisher::~mqtt_republisher() {
    stop();
    // Before io_, whose descriptor and timers they hold.
    conn_.reset();
    retired_.clear();
}

void mqtt_republisher::start() {
    asio::post(io_, [this] {
        do_connect();
        schedule_sync();
    });
    thread_ = std::thread([this] {
        pthread_setname_np(pthread_self(), "mqtt_out");  // visible in top -H and perf
        setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 19);
        auto work = asio::make_work_guard(io_);
        io_.run();
    });
}

void mqtt_republisher::stop() {
    if (!thread_.joinable()) return;
    asio::post(io_, [this] {
        stopping_ = true;  // nothing new is sent; what is in flight may still be acknowledged
        detach();
    });
    const auto until = std::chrono::steady_clock::now() + stop_drain;
    while (outstanding_.load() > 0 && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    // On our thread: the client may be replaced there (a lost connection).
    std::promise<void> disconnected;
    asio::post(io_, [this, &disconnected] {
        if (conn_) conn_->disconnect();
        disconnected.set_value();
    });
    disconnected.get_future().wait_for(std::chrono::seconds(5));
    io_.stop();
    thread_.join();
    cursor_file_.sync();
    spdlog::info("mqtt_out: stopped; every reading up to id {} republished and acknowledged", acked_);
}

void mqtt_republisher::do_connect() {
    if (stopping_ || connected_ || connecting_) return;
    retired_.clear();
    if (!conn_) {
        try {
            make_connection();
        } catch (const std::exception& e) {
            on_connect_failed(e.what());
            return;
        }
    }
    connecting_ = true;
    conn_->connect();
}

void mqtt_republisher::on_connected(int receive_maximum) {
    connecting_ = false;
    if (stopping_) return;
    connected_ = true;
    // At least 2: a reading and its retained copy must fit, or nothing would ever be sent.
    window_ = std::max<std::size_t>(2, std::min<std::size_t>(max_inflight_, static_cast<std::size_t>(receive_maximum)));
    if (window_ < max_inflight_)
        spdlog::info("mqtt_out: the broker accepts {} unacknowledged messages (Receive Maximum): at most {} in flight",
                     receive_maximum, window_);
    backoff_ = broker_.reconnect_min;
    metrics_.mqtt_out_connected.store(1, std::memory_order_relaxed);
    spdlog::info("mqtt_out: connected to {}; republishing after id {}", broker_.url, acked_);
    pump();  // starts the catch-up from the cursor
}

void mqtt_republisher::on_connect_failed(const std::string& why) {
    connecting_ = false;
    if (conn_) retired_.push_back(std::move(conn_));  // the next attempt starts afresh
    if (stopping_) return;
    spdlog::warn("mqtt_out: cannot connect to {}: {}; retrying in {} s", broker_.url, why, backoff_.count());
    schedule_reconnect();
}

void mqtt_republisher::schedule_reconnect() {
    retry_timer_.expires_after(backoff_);
    retry_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (!ec) do_connect();
    });
    backoff_ = std::min(backoff_ * 2, broker_.reconnect_max);
}

void mqtt_republisher::on_lost(const std::string& why) {
    if (!connected_) return;
    connected_ = false;
    metrics_.mqtt_out_connected.store(0, std::memory_order_relaxed);
    spdlog::warn("mqtt_out: lost the connection to {} ({}): {} readings after id {} will be sent again",
                 broker_.url, why, in_flight_.size(), acked_);
    // Unacknowledged means not sent, as far as we know: start again after the last acknowledged id.
    detach();
    clear_queue();
    in_flight_.clear();
    tokens_.clear();
    for (auto& [_, st] : series_) st.pending.reset();  // their obligations went with in_flight_
    pending_order_.clear();
    outstanding_.store(0);
    cursor_ = acked_;
    retired_.push_back(std::move(conn_));  // the next attempt starts afresh
    schedule_reconnect();
}

void mqtt_republisher::detach() {
    if (tap_) hub_.unsubscribe(tap_.get());
    tap_.reset();
    live_ = false;
    catching_up_ = false;  // a step still running delivers to the old epoch and is dropped
    ++epoch_;
}

void mqtt_republisher::clear_queue() {
    for (const auto& q : queue_) {
        if (q.counted) queued_.fetch_sub(1, std::memory_order_relaxed);
        if (q.reading && !latest_prefix_.empty()) --series(q.reading->topic).queued;
    }
    queue_.clear();
}

mqtt_republisher::series_state& mqtt_republisher::series(std::string_view topic) {
    auto it = series_.find(topic);
    if (it == series_.end())
        it = series_.emplace(std::string(topic), series_state{{no_latest, 0}, nullptr, 0, 0}).first;
    return it->second;
}

void mqtt_republisher::enqueue(live_ptr l, bool counted) {
    if (!latest_prefix_.empty()) ++series(l->topic).queued;
    queue_.push_back(queued{std::move(l), nullptr, counted});
}

void mqtt_republisher::on_live(std::uint64_t epoch, const delivery& d) {
    const std::size_t n = d.readings ? d.readings->size() : 0;
    if (epoch != epoch_) {
        queued_.fetch_sub(n, std::memory_order_relaxed);
        return;
    }
    if (d.readings)
        for (const auto& l : *d.readings) {
            if (l->r.id <= cursor_) {  // already read by the catch-up that attached us
                queued_.fetch_sub(1, std::memory_order_relaxed);
                continue;
            }
            enqueue(l, true);
            cursor_ = l->r.id;
        }
    if (d.statuses)
        for (const auto& s : *d.statuses) queue_.push_back(queued{nullptr, s, false});
    pump();
}

void mqtt_republisher::on_overflow(std::uint64_t epoch) {
    if (epoch != epoch_) return;
    metrics_.mqtt_out_fell_behind.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("mqtt_out: more than {} readings waiting (mqtt_out.max_queued): reading them from storage instead",
                 max_queued_);
    detach();  // the queue drains, then the catch-up continues after cursor_
    pump();
}

void mqtt_republisher::do_catch_up() {
    catching_up_ = true;
    const std::uint64_t epoch = epoch_;
    auto t = std::make_shared<tap>(*this, epoch);
    catch_up_query q;
    q.after = cursor_;
    q.selector = everything_;
    q.limit = std::min(catch_up_chunk_readings, max_queued_);
    q.attach = t;
    auto now = catchup_.next(q, io_.get_executor(),
                             [this, epoch, t](catch_up_chunk c) { on_chunk(epoch, t, std::move(c)); });
    if (now) on_chunk(epoch, t, std::move(*now));
}

void mqtt_republisher::on_chunk(std::uint64_t epoch, const std::shared_ptr<tap>& t, catch_up_chunk c) {
    if (epoch != epoch_) {
        if (c.attached) hub_.unsubscribe(t.get());
        return;
    }
    catching_up_ = false;
    if (c.result != catch_up_chunk::outcome::ok) {
        // The query pool is saturated or storage failed: try again shortly (no step meanwhile).
        catching_up_ = true;
        retry_timer_.expires_after(busy_retry);
        retry_timer_.async_wait([this](const boost::system::error_code& ec) {
            catching_up_ = false;
            if (!ec) pump();
        });
        return;
    }
    for (auto& l : c.readings)
        if (l->r.id > cursor_) enqueue(std::move(l), false);
    cursor_ = std::max(cursor_, c.reached);
    if (c.attached) {
        tap_ = t;
        live_ = true;
        queue_presence();  // changes while we were not attached were not delivered to us
    }
    pump();
}

// The presence of every sensor with a series, as the live state has it now.
void mqtt_republisher::queue_presence() {
    auto d = hub_.series().overview("\x1fmqtt_out", [](const std::vector<series_row>& rows, std::time_t) {
        auto out = std::make_shared<std::vector<status_ptr>>();
        std::string_view last;
        for (const auto& r : rows) {
            if (!r.online || r.sensor == last) continue;
            last = r.sensor;
            out->push_back(std::make_shared<status_event>(status_event{std::string(r.sensor), *r.online}));
        }
        return series_table::derived(std::move(out));
    });
    for (const auto& s : *std::static_pointer_cast<const std::vector<status_ptr>>(d))
        queue_.push_back(queued{nullptr, s, false});
}

void mqtt_republisher::pump() {
    if (connected_ && !stopping_ && !pending_order_.empty()) flush_retained(queue_.empty());
    while (connected_ && !stopping_ && !queue_.empty()) {
        auto& q = queue_.front();
        // A reading may bring its series' retained copy: room for both, or wait for PUBACKs.
        const std::size_t messages = q.reading && !latest_prefix_.empty() ? 2 : 1;
        if (outstanding_.load() + messages > window_) break;
        if (!(q.reading ? publish_reading(q.reading) : publish_status(*q.status))) return;  // connection trouble
        if (q.counted) queued_.fetch_sub(1, std::memory_order_relaxed);
        queue_.pop_front();
    }
    if (connected_ && !stopping_ && queue_.empty() && !live_ && !catching_up_) do_catch_up();
}

bool mqtt_republisher::send(const std::string& topic, const std::string& payload, bool retained, std::int64_t id) {
    std::string error;
    // The id's epoch goes with it (docs/api.md 2.1): after a restore ids repeat, under another epoch.
    const auto mid = conn_ ? conn_->publish(topic, payload, retained, id, hub_.epoch_text(), error) : std::nullopt;
    if (!mid) {
        spdlog::warn("mqtt_out: cannot publish to {}: {}", topic, conn_ ? error : "no connection");
        return false;
    }
    tokens_[*mid] = id;
    outstanding_.fetch_add(1);
    return true;
}

bool mqtt_republisher::publish_reading(const live_ptr& l) {
    const reading& r = l->r;
    assign_topic(topic_, out_prefix_, r.sensor, r.metric);
    if (!send(topic_, l->json, false, r.id)) return false;
    in_flight_.push_back(in_flight{r.id, 1});
    if (latest_prefix_.empty()) return true;
    series_state& st = series(l->topic);
    --st.queued;
    // >=: the latest loaded at start-up may be this very reading, still to be republished.
    if (std::pair{r.ts, r.id} >= st.latest) {
        st.latest = {r.ts, r.id};
        if (st.pending) release(st.pending->r.id);  // superseded before it was sent
        st.pending = l;
        st.pending_since = sent_;
        pending_order_.emplace_back(&st, sent_);
        ++in_flight_.back().acks_due;
    }
    ++sent_;
    if (st.pending && st.queued == 0) send_retained(st);
    flush_retained(false);
    return true;
}

// The series' pending retained copy goes out; false (it stays pending and due) if the
// connection refused it: the connection is going away, and the reconnection sends everything again from the cursor.
bool mqtt_republisher::send_retained(series_state& st) {
    assign_topic(topic_, latest_prefix_, st.pending->r.sensor, st.pending->r.metric);
    if (!send(topic_, st.pending->json, true, st.pending->r.id)) return false;
    st.pending.reset();
    return true;
}

// Pending copies older than a window of sends go out even while their series has more queued
// (`all`: every pending copy, the queue being empty), as far as the window has room.
void mqtt_republisher::flush_retained(bool all) {
    while (!pending_order_.empty()) {
        auto [st, since] = pending_order_.front();
        if (st->pending && st->pending_since == since) {
            if (!all && sent_ - since < window_) return;
            if (outstanding_.load() >= window_ || !send_retained(*st)) return;
        }
        pending_order_.pop_front();
    }
}

bool mqtt_republisher::publish_status(const status_event& s) {
    std::string payload;
    append_status_json(payload, s);
    topic_ = out_prefix_;
    topic_.append(1, '/').append(s.sensor).append("/status");
    return send(topic_, payload, true, 0);
}

void mqtt_republisher::on_acks(const std::vector<out_connection::acked>& acks) {
    for (const auto& a : acks) {
        const auto t = tokens_.find(a.mid);
        if (t == tokens_.end()) continue;
        const std::int64_t id = t->second;
        tokens_.erase(t);
        outstanding_.fetch_sub(1);
        // A reason code of 0x80 or more refuses this message for good (e.g. not authorized).
        const bool refused = a.reason_code >= 0x80;
        if (refused) spdlog::error("mqtt_out: the broker refused a republished message: reason code {:#x}", a.reason_code);
        if (id == 0) continue;  // presence
        if (refused) spdlog::error("mqtt_out: reading {} was refused by the out broker and is skipped", id);
        release(id);
    }
    advance();
    pump();
}

// One message of reading `id` is done with (acknowledged, refused, or superseded).
void mqtt_republisher::release(std::int64_t id) {
    const auto f = std::lower_bound(in_flight_.begin(), in_flight_.end(), id,
                                    [](const in_flight& e, std::int64_t v) { return e.id < v; });
    if (f != in_flight_.end() && f->id == id) --f->acks_due;
}

// The cursor moves over every reading at the front with nothing due, and is recorded.
void mqtt_republisher::advance() {
    std::int64_t acked = acked_;
    std::uint64_t done = 0;
    while (!in_flight_.empty() && in_flight_.front().acks_due <= 0) {
        acked = in_flight_.front().id;
        in_flight_.pop_front();
        ++done;
    }
    metrics_.mqtt_out_published.fetch_add(done, std::memory_order_relaxed);
    if (acked != acked_ && cursor_file_.store(acked)) {
        acked_ = acked;
        metrics_.mqtt_out_acked_id.store(acked, std::memory_order_relaxed);
    }
}

void mqtt_republisher::schedule_sync() {
    sync_timer_.expires_after(cursor_sync_interval);
    sync_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (ec) return;
        cursor_file_.sync();
        schedule_sync();
    });
}

}  // namespace telemetry::bridge
