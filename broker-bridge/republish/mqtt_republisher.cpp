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

    make_client();
    spdlog::info("mqtt_out: republishing committed readings to {}/<sensor>/<metric>{} on {} as {}", out_prefix_,
                 latest_prefix_.empty() ? "" : ", the latest per series retained under " + latest_prefix_ + "/",
                 broker_.url, broker_.client_id);
}

// A fresh Paho client: after a lost connection the old one is thrown away with whatever it still
// had queued, so nothing of the old connection is sent ahead of the replay from the cursor.
void mqtt_republisher::make_client() {
    if (client_) MQTTAsync_destroy(&client_);
    MQTTAsync_createOptions create = MQTTAsync_createOptions_initializer5;
    // Paho refuses to queue more than this many messages, also while connected (default 100):
    // our own window (max_inflight) bounds what we hand it, one reading may bring two messages.
    create.maxBufferedMessages = static_cast<int>(2 * max_inflight_ + 16);
    int rc = MQTTAsync_createWithOptions(&client_, broker_.url.c_str(), broker_.client_id.c_str(),
                                         MQTTCLIENT_PERSISTENCE_NONE, nullptr, &create);
    if (rc == MQTTASYNC_SUCCESS) rc = MQTTAsync_setCallbacks(client_, this, &connection_lost, &message_arrived, nullptr);
    if (rc != MQTTASYNC_SUCCESS) {
        if (client_) MQTTAsync_destroy(&client_);
        throw std::runtime_error("mqtt_out: cannot create a client for " + broker_.url + ": " + MQTTAsync_strerror(rc));
    }
}

mqtt_republisher::~mqtt_republisher() {
    stop();
    if (client_) MQTTAsync_destroy(&client_);  // before io_: no Paho callback posts to a destroyed context
}

void mqtt_republisher::start() {
    asio::post(io_, [this] {
        do_connect();
        schedule_sync();
    });
    thread_ = std::thread([this] {
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
        MQTTAsync_disconnectOptions o = MQTTAsync_disconnectOptions_initializer5;
        o.timeout = 1000;
        if (client_) MQTTAsync_disconnect(client_, &o);
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
    MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer5;
    // No session: what was in flight when a connection ends is sent again from the cursor, with
    // the same ids; a resumed session would have the broker deliver some of it a second time.
    o.cleanstart = 1;
    o.keepAliveInterval = static_cast<int>(broker_.keepalive.count());
    o.connectTimeout = 10;
    o.automaticReconnect = 0;  // ours, so that each connection starts from the cursor
    o.maxInflight = static_cast<int>(max_inflight_);
    if (!broker_.username.empty()) o.username = broker_.username.c_str();
    if (!broker_.password.empty()) o.password = broker_.password.c_str();
    MQTTAsync_SSLOptions tls = MQTTAsync_SSLOptions_initializer;
    if (mqtt_url_uses_tls(broker_.url)) {
        if (!broker_.ca_file.empty()) tls.trustStore = broker_.ca_file.c_str();
        if (!broker_.cert_file.empty()) tls.keyStore = broker_.cert_file.c_str();
        if (!broker_.key_file.empty()) tls.privateKey = broker_.key_file.c_str();
        tls.enableServerCertAuth = broker_.verify ? 1 : 0;
        tls.verify = broker_.verify ? 1 : 0;
        o.ssl = &tls;
    }
    o.onSuccess5 = &connect_succeeded;
    o.onFailure5 = &connect_failed;
    o.context = this;
    connecting_ = true;
    if (!client_) {
        on_connect_failed("no MQTT client");
        return;
    }
    if (const int rc = MQTTAsync_connect(client_, &o); rc != MQTTASYNC_SUCCESS)
        on_connect_failed(MQTTAsync_strerror(rc));
}

void mqtt_republisher::connect_succeeded(void* context, MQTTAsync_successData5* response) {
    auto* self = static_cast<mqtt_republisher*>(context);
    // The broker's Receive Maximum (absent: 65535). Beyond it Paho holds messages back and only
    // looks at them again about once a second, which throttles everything.
    int receive_maximum = 65535;
    if (response) {
        const int v = MQTTProperties_getNumericValue(&response->properties, MQTTPROPERTY_CODE_RECEIVE_MAXIMUM);
        if (v > 0) receive_maximum = v;
    }
    asio::post(self->io_, [self, receive_maximum] { self->on_connected(receive_maximum); });
}

void mqtt_republisher::connect_failed(void* context, MQTTAsync_failureData5* response) {
    auto* self = static_cast<mqtt_republisher*>(context);
    std::string why = response && response->message ? response->message : "no reason given";
    if (response && response->reasonCode != 0)
        if (const char* r = MQTTReasonCode_toString(response->reasonCode)) why += std::string(" (") + r + ")";
    asio::post(self->io_, [self, why] { self->on_connect_failed(why); });
}

void mqtt_republisher::connection_lost(void* context, char* cause) {
    auto* self = static_cast<mqtt_republisher*>(context);
    std::string why = cause ? cause : "connection lost";
    asio::post(self->io_, [self, why] { self->on_lost(why); });
}

// Paho insists on a message callback; we subscribe to nothing, so nothing arrives.
int mqtt_republisher::message_arrived(void*, char* topic, int, MQTTAsync_message* m) {
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;
}

void mqtt_republisher::published(void* context, MQTTAsync_successData5* response) {
    auto* self = static_cast<mqtt_republisher*>(context);
    self->post_ack(ack{response->token, false});
}

void mqtt_republisher::publish_failed(void* context, MQTTAsync_failureData5* response) {
    auto* self = static_cast<mqtt_republisher*>(context);
    // A reason code from the broker (e.g. not authorized) refuses this message for good; anything
    // else is the connection going away, which connection_lost handles.
    if (static_cast<int>(response->reasonCode) >= 0x80) {
        const char* r = MQTTReasonCode_toString(response->reasonCode);
        spdlog::error("mqtt_out: the broker refused a republished message: {}", r ? r : "(no reason)");
        self->post_ack(ack{response->token, true});
    }
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
    try {
        make_client();
    } catch (const std::exception& e) {
        spdlog::error("{}; retrying", e.what());  // do_connect() fails without a client and retries
    }
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
    MQTTProperties props = MQTTProperties_initializer;
    char id_text[24];
    if (id > 0) {
        const auto end = std::to_chars(id_text, id_text + sizeof id_text, id).ptr;
        MQTTProperty p;
        p.identifier = MQTTPROPERTY_CODE_USER_PROPERTY;
        p.value.data.data = const_cast<char*>("id");
        p.value.data.len = 2;
        p.value.value.data = id_text;
        p.value.value.len = static_cast<int>(end - id_text);
        MQTTProperties_add(&props, &p);  // copies the strings
        // The id's epoch (docs/api.md 2.1): after a restore ids repeat, under another epoch.
        p.value.data.data = const_cast<char*>("epoch");
        p.value.data.len = 5;
        p.value.value.data = const_cast<char*>(hub_.epoch_text().data());
        p.value.value.len = static_cast<int>(hub_.epoch_text().size());
        MQTTProperties_add(&props, &p);
    }
    MQTTAsync_message m = MQTTAsync_message_initializer;
    m.payload = const_cast<char*>(payload.data());
    m.payloadlen = static_cast<int>(payload.size());
    m.qos = 1;
    m.retained = retained ? 1 : 0;
    m.properties = props;
    MQTTAsync_responseOptions o = MQTTAsync_responseOptions_initializer;
    o.onSuccess5 = &published;
    o.onFailure5 = &publish_failed;
    o.context = this;
    const int rc = MQTTAsync_sendMessage(client_, topic.c_str(), &m, &o);
    MQTTProperties_free(&props);
    if (rc != MQTTASYNC_SUCCESS) {
        spdlog::warn("mqtt_out: cannot publish to {}: {}", topic, MQTTAsync_strerror(rc));
        return false;
    }
    tokens_[o.token] = id;
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

// The series' pending retained copy goes out; false (it stays pending and due) if Paho refused
// it: the connection is going away, and the reconnection sends everything again from the cursor.
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

void mqtt_republisher::post_ack(ack a) {
    bool first;
    {
        std::lock_guard lock(acks_mutex_);
        first = acks_.empty();
        acks_.push_back(a);
    }
    if (first) asio::post(io_, [this] { on_acks(); });
}

void mqtt_republisher::on_acks() {
    std::vector<ack> batch;
    {
        std::lock_guard lock(acks_mutex_);
        batch.swap(acks_);
    }
    for (const ack& a : batch) {
        const auto t = tokens_.find(a.token);
        if (t == tokens_.end()) continue;  // of a connection that is gone
        const std::int64_t id = t->second;
        tokens_.erase(t);
        outstanding_.fetch_sub(1);
        if (id == 0) continue;  // presence
        if (a.refused) spdlog::error("mqtt_out: reading {} was refused by the out broker and is skipped", id);
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
