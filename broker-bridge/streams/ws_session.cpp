// WebSocket on /api/v1/ws: JSON subscribe/unsubscribe with per-subscription `after`, replay then
// live readings, each reading sent once per connection, a bounded send queue, ping/pong keepalive.
#include "streams/ws_session.hpp"

#include "core/conditional.hpp"
#include "core/metrics.hpp"
#include "core/wire_format.hpp"
#include "core/ws_message.hpp"

#include <boost/asio/post.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>

namespace telemetry::bridge::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;

namespace {

constexpr std::size_t backfill_chunk_most = 500;
constexpr std::size_t max_waiting_backfills = 64;

std::string subscribed_message(std::string_view topic, std::int64_t cursor, const hub& live) {
    std::string m = "{\"op\":\"subscribed\",\"topic\":";
    append_json_string(m, topic);
    m += ",\"cursor\":\"";
    append_cursor(m, cursor, live.at_epoch());
    m += "\",\"epoch\":\"";
    m += live.epoch_text();
    m += "\"}";
    return m;
}


}  // namespace

ws_session::ws_session(connection_stream&& stream, io_shard& shard, session_context& ctx,
                       const stream_config& cfg, connection_gauge::slot slot, grant_ptr access)
    : ws_(std::move(stream)), shard_(shard), ctx_(ctx), cfg_(cfg), slot_(std::move(slot)),
      budget_share_(ctx_.stream_budget), access_(std::move(access)), expiry_(ws_.get_executor()) {
    ctx_.stats.ws_connections.fetch_add(1, std::memory_order_relaxed);
}

ws_session::~ws_session() { ctx_.stats.ws_connections.fetch_sub(1, std::memory_order_relaxed); }

void ws_session::account() {
    const std::size_t held = closed_ ? 0 : out_bytes_ + writing_bytes_;
    if (held == budget_share_.accounted()) return;
    ctx_.stats.stream_queued_bytes.fetch_add(budget_share_.account(held), std::memory_order_relaxed);
}

int ws_session::socket() { return ws_.next_layer().next_layer().socket().native_handle(); }

void ws_session::start(request req) {
    // The send budget may cut this connection from another stream's thread to make room.
    budget_share_.cut_on(ws_.get_executor(), weak_from_this(), socket());
    auto timeouts = websocket::stream_base::timeout::suggested(beast::role_type::server);
    // Ping an idle peer, and drop one that stops answering: Beast pings at half the idle timeout.
    timeouts.idle_timeout = cfg_.heartbeat * 2;
    timeouts.keep_alive_pings = true;
    ws_.set_option(timeouts);
    websocket::permessage_deflate pmd;
    pmd.server_enable = true;  // used when the client offers it
    ws_.set_option(pmd);
    // Then each message goes through Beast, which compresses it. Otherwise the session frames
    // messages itself, so that everything queued shares one write (coalescing_stream).
    if (auto it = req.find(beast::http::field::sec_websocket_extensions); it != req.end())
        compress_ = it->value().find("permessage-deflate") != beast::string_view::npos;
    ws_.read_message_max(cfg_.ws_max_message_bytes);
    // Called from inside our own read (which holds us alive) when the peer's close arrives.
    ws_.control_callback([this](websocket::frame_type kind, beast::string_view) {
        if (kind == websocket::frame_type::close) on_peer_close();
    });
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) {
            res.set(beast::http::field::server, "telemetry-broker-bridge");
            res.set(beast::http::field::date, http_date_now());
        }));
    beast::get_lowest_layer(ws_).expires_never();  // the websocket timeouts take over
    auto self = shared_from_this();
    auto held = std::make_shared<request>(std::move(req));
    ws_.async_accept(*held, [self, held](beast::error_code ec) { self->on_accept(ec); });
}

void ws_session::on_accept(beast::error_code ec) {
    if (ec) return finish();
    ctx_.stats.count_response(101);
    // Registered with no filters yet: subscriptions add theirs (register_filters).
    cursor_ = ctx_.live.subscribe(shared_from_this(), std::make_shared<const reading_selector>(std::vector<topic_filter>{}, access_));
    registered_ = true;
    if (const auto exp = access_->expires_at(); exp > 0) {
        expiry_.expires_at(std::chrono::system_clock::from_time_t(static_cast<std::time_t>(exp)));
        expiry_.async_wait(beast::bind_front_handler(&ws_session::on_token_expired, shared_from_this()));
    }
    do_read();
}

// The grant ends with its token: close with 1008; the client resumes with `after` and a fresh
// token (docs/api.md section 8).
void ws_session::on_token_expired(beast::error_code ec) {
    if (ec) return;
    close(websocket::close_code::policy_error, "token expired; reconnect with a fresh token and after");
}

void ws_session::do_read() {
    ws_.async_read(in_, beast::bind_front_handler(&ws_session::on_read, shared_from_this()));
}

void ws_session::on_read(beast::error_code ec, std::size_t) {
    if (ec) {
        // Closed by the peer, timed out, or a protocol error (Beast has already answered it with
        // the fitting close code, e.g. 1009 for an oversize message).
        if (ec != websocket::error::closed && ec != asio::error::operation_aborted)
            spdlog::debug("ws: read ended: {}", ec.message());
        return finish();
    }
    if (closed_) return;  // dropped meanwhile (cut by the send budget): nothing to answer
    if (!ws_.got_text()) {
        in_.consume(in_.size());
        return close(websocket::close_code::unknown_data, "only JSON text messages are accepted");
    }
    const std::string text = beast::buffers_to_string(in_.data());
    in_.consume(in_.size());
    handle_message(text);
    if (!closing_ && !closed_) do_read();
}

void ws_session::send_error(std::string_view code, std::string_view message) {
    std::string m = "{\"op\":\"error\",\"code\":";
    append_json_string(m, code);
    m += ",\"message\":";
    append_json_string(m, message);
    m += '}';
    queue(std::move(m));
}

void ws_session::handle_message(std::string_view text) {
    auto m = parse_ws_client_message(text);
    if (const auto* e = std::get_if<ws_client_error>(&m)) return send_error(e->code, e->message);
    auto& r = std::get<ws_client_request>(m);
    if (r.op == ws_client_request::kind::subscribe) return subscribe(std::move(r.topic), r.after, r.conflate, r.bucket);
    unsubscribe(r.topic);
}

void ws_session::subscribe(std::string topic, std::optional<wire_cursor> after, bool conflate,
                           std::optional<bucket_spec> bucket) {
    std::string why;
    auto filter = parse_client_filter(topic, cfg_.max_filter_bytes, cfg_.max_filter_levels, why);
    if (!filter) return send_error("bad_topic", why);
    if (!access_->overlaps(*filter))
        return send_error("forbidden", "the token grants nothing of '" + topic + "'");
    const bool known = std::any_of(subs_.begin(), subs_.end(), [&](const subscription& s) { return s.topic == topic; });
    if (!known && subs_.size() >= cfg_.max_filters)
        return send_error("too_many_subscriptions", "at most " + std::to_string(cfg_.max_filters) + " subscriptions per connection");
    if (known) {
        // Already subscribed: its readings are flowing; only the policy may change. Its kind
        // (readings, or buckets of one width) stays what it was made.
        for (auto& s : subs_) {
            if (s.topic != topic) continue;
            const bool same = s.buckets ? bucket && bucket->width_ms == s.buckets->spec().width_ms &&
                                              bucket->provisional == s.buckets->spec().provisional
                                        : !bucket;
            if (!same)
                return send_error("bad_request", "'" + topic + "' is subscribed with another bucket; unsubscribe it first");
            s.conflate = conflate;
        }
        queue(subscribed_message(topic, cursor_, ctx_.live));
        return;
    }
    subs_.push_back({topic, std::move(*filter), 0, 0, conflate, bucket ? make_bucket_feed(topic, *bucket) : nullptr});
    // From the hub's answer on, commits reach us with this filter: what came before is back-filled.
    const std::int64_t live_from = register_filters();
    auto& sub = subs_.back();
    sub.live_from = live_from;
    const auto at = after ? ctx_.live.resume_from(*after) : resume_point{live_from, std::nullopt};
    sub.start = at.after;
    queue(subscribed_message(topic, live_from, ctx_.live));
    if (sub.start >= live_from) {
        // Nothing stored at all (a cursor of another epoch on an empty database): still say so.
        if (at.epoch_reset) queue(ws_reset_message(topic, reset_notice{*at.epoch_reset, 0, ctx_.live.epoch_text()}));
        return;
    }
    if (waiting_backfills_.size() >= max_waiting_backfills)
        return close(websocket::close_code::try_again_later, "too many subscriptions replaying at once");
    start_backfill({std::move(topic), sub.start, live_from, true, at.epoch_reset});
}

std::int64_t ws_session::register_filters() {
    std::vector<topic_filter> all;
    all.reserve(subs_.size());
    for (const auto& s : subs_) all.push_back(s.filter);
    return ctx_.live.subscribe(shared_from_this(), std::make_shared<const reading_selector>(std::move(all), access_));
}

std::shared_ptr<bucket_feed> ws_session::make_bucket_feed(const std::string& topic, const bucket_spec& spec) {
    bucket_feed::sink s;
    // Called on this connection's thread; a cancelled feed (unsubscribed) calls nothing more.
    s.emit = [this, topic](const bucket_event& e) { queue(ws_bucket_message(topic, e)); };
    s.drained = [this] {
        if (backfill_ && !writing_ && !backfill_feed_busy()) backfill_step();
        flush();
    };
    s.failed = [this](bucket_feed::failure f) {
        if (f == bucket_feed::failure::busy) {
            ctx_.stats.query_jobs_rejected.fetch_add(1, std::memory_order_relaxed);
            return close(websocket::close_code::try_again_later, "storage busy; retry with after");
        }
        close(websocket::close_code::internal_error, "storage unavailable; retry with after");
    };
    return std::make_shared<bucket_feed>(spec, ctx_.queries, ws_.get_executor(), cfg_.max_queue_events, std::move(s));
}

bool ws_session::backfill_feed_busy() const {
    if (!backfill_) return false;
    for (const auto& s : subs_)
        if (s.topic == backfill_->topic) return s.buckets && !s.buckets->idle();
    return false;
}

void ws_session::unsubscribe(const std::string& topic) {
    for (auto& s : subs_)
        if (s.topic == topic && s.buckets) s.buckets->cancel();
    if (std::erase_if(subs_, [&](const subscription& s) { return s.topic == topic; })) register_filters();
    std::string m = "{\"op\":\"unsubscribed\",\"topic\":";
    append_json_string(m, topic);
    m += '}';
    queue(std::move(m));
}

// A reading of the subscription being back-filled is skipped if another subscription, complete
// for it, has already sent it (its start is below the id and it matches).
bool ws_session::covered_by_other(const live_reading& l, const std::string& topic) const {
    for (const auto& s : subs_) {
        if (s.topic == topic || s.buckets || s.start >= l.r.id || !s.filter.matches(l.topic)) continue;
        // Live for it, or back-filled already (its back-fill is not still waiting below the id).
        const bool waiting = l.r.id <= s.live_from &&
                             std::any_of(waiting_backfills_.begin(), waiting_backfills_.end(),
                                         [&](const backfill& b) { return b.topic == s.topic && b.from < l.r.id; });
        if (!waiting) return true;
    }
    return false;
}

void ws_session::start_backfill(backfill b) {
    if (backfill_) {
        waiting_backfills_.push_back(std::move(b));
        return;
    }
    backfill_ = std::move(b);
    backfill_step();
}

void ws_session::backfill_step() {
    if (!backfill_ || closing_ || closed_ || backfill_->stepping) return;
    auto& b = *backfill_;
    auto sub = std::find_if(subs_.begin(), subs_.end(), [&](const subscription& s) { return s.topic == b.topic; });
    if (sub == subs_.end() || b.from >= b.upto) return finish_backfill();
    catch_up_query q;
    q.after = b.from;
    q.upto = b.upto;
    q.selector = std::make_shared<const reading_selector>(std::vector<topic_filter>{sub->filter}, access_);
    q.limit = cfg_.replay_chunk(backfill_chunk_most);
    q.check_reset = b.check_reset;
    q.epoch_reset = b.epoch_reset;
    b.stepping = true;
    auto self = shared_from_this();
    auto c = ctx_.catchup.next(q, ws_.get_executor(),
                               [self](catch_up_chunk chunk) { self->on_backfill_chunk(std::move(chunk)); });
    if (c) on_backfill_chunk(std::move(*c));
}

void ws_session::on_backfill_chunk(catch_up_chunk c) {
    if (!backfill_ || closing_ || closed_) return;
    if (c.result == catch_up_chunk::outcome::busy)
        return close(websocket::close_code::try_again_later, "storage busy; retry with after");
    if (c.result == catch_up_chunk::outcome::failed)
        return close(websocket::close_code::internal_error, "storage unavailable; retry with after");
    auto& b = *backfill_;
    b.stepping = false;
    b.check_reset = false;
    b.epoch_reset.reset();
    if (c.reset) queue(ws_reset_message(b.topic, *c.reset));
    auto sub = std::find_if(subs_.begin(), subs_.end(), [&](const subscription& s) { return s.topic == b.topic; });
    if (sub != subs_.end() && sub->buckets) {
        if (!sub->buckets->push(c.readings, shared_from_this())) return overflowed();
    } else for (const auto& l : c.readings)
        if (!covered_by_other(*l, b.topic)) {
            ctx_.stats.stream_readings_sent.fetch_add(1, std::memory_order_relaxed);
            queue(std::shared_ptr<const std::string>(l, &l->ws_json));
        }
    if (closing_ || closed_) return;
    b.from = std::max(b.from, c.reached);
    if (b.from >= b.upto) return finish_backfill();
    // Flow control: the next chunk once this one is written (on_write) and, for buckets, once
    // the feed has taken it (its drained callback).
    if (!writing_ && !backfill_feed_busy()) backfill_step();
}

void ws_session::finish_backfill() {
    backfill_.reset();
    if (!waiting_backfills_.empty()) {
        auto next = std::move(waiting_backfills_.front());
        waiting_backfills_.pop_front();
        return start_backfill(std::move(next));
    }
    auto held = std::move(held_);
    held_.clear();
    held_readings_ = 0;
    for (const auto& d : held) {
        if (d.readings) process_batch(*d.readings);
        if (d.statuses) process_statuses(*d.statuses);
    }
}

void ws_session::on_delivery(const delivery& d) { shard_.hand_over(shared_from_this(), d); }

void ws_session::deliver(const delivery& d) {
    if (closing_ || closed_) return;
    batching_ = true;  // flush() writes what this queues
    if (backfill_) {
        // Held, not sent: a back-fill is sending older readings of some subscription first.
        held_readings_ += (d.readings ? d.readings->size() : 0) + (d.statuses ? d.statuses->size() : 0);
        if (held_readings_ > cfg_.max_queue_events) {
            ctx_.stats.stream_slow_disconnects.fetch_add(1, std::memory_order_relaxed);
            return close(websocket::close_code::policy_error, "too far behind; reconnect with after");
        }
        held_.push_back(d);
        return;
    }
    if (d.readings) process_batch(*d.readings);
    if (d.statuses) process_statuses(*d.statuses);
}

void ws_session::overflowed() {
    ctx_.stats.stream_slow_disconnects.fetch_add(1, std::memory_order_relaxed);
    close(websocket::close_code::policy_error, "too far behind; reconnect with after");
}

void ws_session::flush() {
    batching_ = false;
    if (!writing_) do_write();
    account();
}

void ws_session::process_batch(const std::vector<live_ptr>& batch) {
    // Bucket subscriptions take their readings after the loop, one push per subscription.
    std::vector<std::pair<bucket_feed*, std::vector<live_ptr>>> to_feeds;
    for (const auto& s : subs_)
        if (s.buckets) to_feeds.emplace_back(s.buckets.get(), std::vector<live_ptr>{});
    for (const auto& l : batch) {
        if (l->r.id <= cursor_) continue;
        cursor_ = l->r.id;
        std::size_t feed = 0;
        for (const auto& s : subs_) {
            if (!s.buckets) continue;
            if (std::max(s.start, s.live_from) < l->r.id && s.filter.matches(l->topic)) to_feeds[feed].second.push_back(l);
            ++feed;
        }
        // Once per connection, however many subscriptions match; conflated only if every
        // subscription that wants it conflates.
        bool wanted = false, every_conflates = true;
        for (const auto& s : subs_) {
            if (!s.buckets && std::max(s.start, s.live_from) < l->r.id && s.filter.matches(l->topic)) {
                wanted = true;
                every_conflates = every_conflates && s.conflate;
                if (!every_conflates) break;
            }
        }
        if (!wanted) continue;
        if (every_conflates && writing_) {
            if (behind_.hold(l)) ctx_.stats.stream_conflated.fetch_add(1, std::memory_order_relaxed);
            continue;
        }
        ctx_.stats.stream_readings_sent.fetch_add(1, std::memory_order_relaxed);
        queue(std::shared_ptr<const std::string>(l, &l->ws_json));
        if (closing_ || closed_) return;
    }
    for (auto& [feed, readings] : to_feeds) {
        if (closing_ || closed_) return;
        if (!feed->push(readings, shared_from_this())) return overflowed();
    }
}

void ws_session::process_statuses(const std::vector<status_ptr>& statuses) {
    for (const auto& st : statuses) queue(ws_status_message(*st));
}

void ws_session::on_shutdown() {
    asio::post(ws_.get_executor(), [self = shared_from_this()] {
        self->close(websocket::close_code::going_away, "server shutting down; reconnect with after");
    });
}

// What conflating subscriptions held while a write was in flight, oldest first; each message says
// how many older readings of its series it replaced.
void ws_session::queue_conflated() {
    for (const auto& h : behind_.take()) {
        ctx_.stats.stream_readings_sent.fetch_add(1, std::memory_order_relaxed);
        if (h.skipped == 0) {
            queue(std::shared_ptr<const std::string>(h.newest, &h.newest->ws_json));
            continue;
        }
        std::string m;
        append_with_skipped(m, h.newest->ws_json, h.skipped);
        queue(std::move(m));
    }
}

void ws_session::queue(std::shared_ptr<const std::string> msg) {
    if (closing_ || closed_) return;
    // The write in flight counts: it is memory this client holds until it reads. Within its own
    // bounds, the total budget over all streams decides (send_budget.hpp).
    const std::size_t held = out_bytes_ + writing_bytes_;
    const bool own = held + msg->size() <= cfg_.max_queue_bytes && out_.size() + 1 <= cfg_.max_queue_events;
    if (!own) return too_far_behind(false);
    if (!budget_share_.admit(held, msg->size(), writing_ ? write_started_ : std::chrono::steady_clock::time_point{},
                             socket()))
        return too_far_behind(true);
    out_bytes_ += msg->size();
    out_.push_back(std::move(msg));
    if (!writing_ && !batching_) do_write();
    if (!batching_ || out_bytes_ + writing_bytes_ > budget_share_.accounted() + send_budget::report_every) account();
}

// Cut by the send budget to make room for streams less far behind (send_budget.hpp).
void ws_session::cut_by_budget() {
    if (closed_) return;
    if (!closing_) return too_far_behind(true);
    // Already closing behind a write: the budget no longer counts its bytes, so it may not wait
    // for a client that takes nothing.
    if (writing_ && !send_budget::takes_bytes(socket())) finish();
}

// A slow disconnect: its own queue's bound, or the budget of all streams (`budget`).
void ws_session::too_far_behind(bool budget) {
    ctx_.stats.stream_slow_disconnects.fetch_add(1, std::memory_order_relaxed);
    if (budget) ctx_.stats.stream_budget_disconnects.fetch_add(1, std::memory_order_relaxed);
    spdlog::info("ws: client fell {} bytes behind{}; disconnecting it", out_bytes_ + writing_bytes_,
                 budget ? " while all streams hold the send budget" : "");
    // Cut by the budget behind a write the client does not take: the close frame would wait
    // for that write (up to the idle timeout) while the budget already counts its bytes as
    // gone. Drop the connection now; the client resumes with after all the same.
    if (budget && writing_ && !send_budget::takes_bytes(socket())) return finish();
    close(websocket::close_code::policy_error, "too far behind; reconnect with after");
}

void ws_session::do_write() {
    if (out_.empty() || closed_) return;
    writing_ = true;
    write_started_ = std::chrono::steady_clock::now();
    if (!compress_) {
        // Every queued message, framed here, in one write.
        frames_.clear();
        for (const auto& m : out_) append_text_frame(frames_, *m);
        writing_bytes_ = out_bytes_;
        out_.clear();
        out_bytes_ = 0;
        ws_.next_layer().append(frames_);
        ws_.next_layer().flush([self = shared_from_this()](beast::error_code ec) { self->on_write(ec, 0); });
        return;
    }
    // The message in flight is held apart from the queue, which a close may clear meanwhile.
    in_flight_ = std::move(out_.front());
    out_.pop_front();
    out_bytes_ -= in_flight_->size();
    writing_bytes_ = in_flight_->size();
    ws_.text(true);
    ws_.async_write(asio::buffer(*in_flight_), beast::bind_front_handler(&ws_session::on_write, shared_from_this()));
}

void ws_session::on_write(beast::error_code ec, std::size_t) {
    writing_ = false;
    writing_bytes_ = 0;
    in_flight_.reset();
    account();
    if (ec) return finish();
    if (close_after_write_) {
        auto [code, reason] = *close_after_write_;
        close_after_write_.reset();
        ws_.async_close(websocket::close_reason(code, reason),
                        [self = shared_from_this()](beast::error_code) { self->finish(); });
        return;
    }
    if (!behind_.empty()) queue_conflated();
    if (!out_.empty()) return do_write();
    if (backfill_ && !backfill_feed_busy()) backfill_step();
}

void ws_session::close(websocket::close_code code, std::string_view reason) {
    if (closing_ || closed_) return;
    closing_ = true;
    out_.clear();
    out_bytes_ = 0;
    account();
    if (writing_) {
        close_after_write_.emplace(code, std::string(reason));
        return;
    }
    ws_.async_close(websocket::close_reason(code, reason),
                    [self = shared_from_this()](beast::error_code) { self->finish(); });
}

// The peer is closing: send it nothing more, so Beast's answering close frame follows at once
// whatever is already being written, instead of a queue of readings the peer will not read.
void ws_session::on_peer_close() {
    spdlog::debug("ws: peer sent close");
    closing_ = true;
    out_.clear();
    out_bytes_ = 0;
    behind_.clear();
    held_.clear();
    held_readings_ = 0;
    ws_.next_layer().drop_unsent();
}

void ws_session::finish() {
    if (closed_) return;
    closed_ = true;
    account();
    if (registered_) ctx_.live.unsubscribe(this);
    expiry_.cancel();
    budget_share_.forget_socket();  // before it closes: its number may be reused
    ws_.next_layer().next_layer().close();
}

}  // namespace telemetry::bridge::http
