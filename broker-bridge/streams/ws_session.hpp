// WebSocket on /api/v1/ws: JSON subscribe/unsubscribe with per-subscription `after`, replay then
// live readings, each reading sent once per connection, a bounded send queue, ping/pong keepalive.
#pragma once

#include "core/config.hpp"
#include "http/answer.hpp"
#include "http/session.hpp"
#include "live/hub.hpp"
#include "net/coalescing_stream.hpp"
#include "pipeline/catch_up.hpp"
#include "streams/bucket_feed.hpp"
#include "streams/conflation.hpp"

#include <boost/beast/core.hpp>
#include <boost/asio/system_timer.hpp>
#include <boost/beast/websocket.hpp>

#include <deque>
#include <memory>
#include <optional>
#include <string>

namespace telemetry::bridge::http {

// Owns the connection after the HTTP session hands it over (with the upgrade request). All its
// handlers run on its shard's thread; the hub's calls only hand over to that thread.
//
// Invariants: the hub delivers readings that match the union of the subscriptions' filters.
// Each subscription gets, exactly once and in id order, the readings after its `start`: those up
// to `live_from` (the newest id when it was registered) by a back-fill through the one catch-up
// path, later ones live. `cursor_` is the greatest id the live path has considered, so a reading
// that matches several subscriptions is queued once. Back-fills run one at a time while live
// batches are held. The send queue (the write in flight included) is bounded in bytes and
// messages: overflowing it closes the connection (1008) and the client resumes with `after`.
class ws_session : public subscriber,
                   public stream_sink,
                   public std::enable_shared_from_this<ws_session> {
public:
    ws_session(connection_stream&& stream, io_shard& shard, session_context& ctx,
               const stream_config& cfg, connection_gauge::slot slot, grant_ptr access);
    ~ws_session() override;
    void start(request req);

    void on_delivery(const delivery& d) override;
    void on_shutdown() override;
    void deliver(const delivery& d) override;
    void flush() override;
    void overflowed() override;
    // The send budget cuts this stream to make room (send_budget::share::cut_on), on its thread.
    void cut_by_budget();

private:
    struct subscription {
        std::string topic;
        topic_filter filter;
        std::int64_t start = 0;  // readings with id > start are this subscription's
        std::int64_t live_from = 0;  // later ones arrive live; (start, live_from] by back-fill
        bool conflate = false;   // while a write is in flight, keep only the newest per series
        // "bucket": its readings go to this feed, which sends bucket messages (docs/api.md 5.1).
        std::shared_ptr<bucket_feed> buckets;
    };
    struct backfill {
        std::string topic;
        std::int64_t from = 0;   // next reading after this id
        std::int64_t upto = 0;   // the cursor when the subscription was made
        bool check_reset = true;
        std::optional<std::int64_t> epoch_reset;  // `after` was this id of another epoch
        bool stepping = false;   // a step is reading (one at a time, whatever calls backfill_step)
    };

    void on_accept(boost::beast::error_code ec);
    void on_token_expired(boost::beast::error_code ec);
    void do_read();
    void on_read(boost::beast::error_code ec, std::size_t);
    void handle_message(std::string_view text);
    void subscribe(std::string topic, std::optional<wire_cursor> after, bool conflate,
                   std::optional<bucket_spec> bucket);
    std::shared_ptr<bucket_feed> make_bucket_feed(const std::string& topic, const bucket_spec& spec);
    bool backfill_feed_busy() const;  // the back-fill's bucket feed is still reading storage
    void unsubscribe(const std::string& topic);
    void send_error(std::string_view code, std::string_view message);

    void process_batch(const std::vector<live_ptr>& batch);
    void process_statuses(const std::vector<status_ptr>& statuses);
    void start_backfill(backfill b);
    void backfill_step();
    void on_backfill_chunk(catch_up_chunk c);
    std::int64_t register_filters();  // the union of the subscriptions' filters, with the hub
    void finish_backfill();
    bool covered_by_other(const live_reading& l, const std::string& topic) const;

    void queue_conflated();
    void queue(std::shared_ptr<const std::string> msg);
    int socket();  // the TCP socket's descriptor, for the send budget
    void too_far_behind(bool budget);
    void queue(std::string msg) { queue(std::make_shared<const std::string>(std::move(msg))); }
    void do_write();
    void account();  // reports what this connection holds to the send budget
    void on_write(boost::beast::error_code ec, std::size_t);
    void close(boost::beast::websocket::close_code code, std::string_view reason);
    void finish();
    void on_peer_close();

    boost::beast::websocket::stream<coalescing_stream> ws_;
    io_shard& shard_;
    boost::beast::flat_buffer in_;
    session_context& ctx_;
    const stream_config& cfg_;
    connection_gauge::slot slot_;
    send_budget::share budget_share_;  // what this connection holds of all streams' budget
    grant_ptr access_;                   // every subscription is within it
    boost::asio::system_timer expiry_;   // the token's expiry ends the connection

    std::vector<subscription> subs_;
    std::int64_t cursor_ = 0;
    bool registered_ = false;
    std::optional<backfill> backfill_;
    std::deque<backfill> waiting_backfills_;
    std::deque<delivery> held_;  // live deliveries during a back-fill
    std::size_t held_readings_ = 0;
    // Readings of conflating subscriptions that arrived while a write was in flight, per series.
    conflation behind_;

    std::deque<std::shared_ptr<const std::string>> out_;
    std::size_t out_bytes_ = 0;
    std::shared_ptr<const std::string> in_flight_;
    std::size_t writing_bytes_ = 0;  // of the write in flight: still held for this client
    bool writing_ = false;
    std::chrono::steady_clock::time_point write_started_{};  // of the write in flight, if any
    bool batching_ = false;  // inside deliver(): queue now, write at flush()
    bool compress_ = false;  // the client offered permessage-deflate: Beast writes (and compresses)
    std::string frames_;     // scratch: the frames of one write, when we frame messages ourselves
    bool closing_ = false;
    bool closed_ = false;
    std::optional<std::pair<boost::beast::websocket::close_code, std::string>> close_after_write_;
};

}  // namespace telemetry::bridge::http
