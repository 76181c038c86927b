// WebSocket on /api/v1/ws: JSON subscribe/unsubscribe with per-subscription `after`, replay then
// live readings, each reading sent once per connection, a bounded send queue, ping/pong keepalive.
#pragma once

#include "config.hpp"
#include "http/answer.hpp"
#include "http/coalescing_stream.hpp"
#include "http/conflation.hpp"
#include "http/session.hpp"
#include "hub.hpp"

#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <deque>
#include <memory>
#include <optional>
#include <string>

namespace telemetry::bridge::http {

// Owns the connection after the HTTP session hands it over (with the upgrade request). All its
// handlers run on its shard's thread; the hub's calls only hand over to that thread.
//
// Invariants: `cursor_` is the greatest committed id this connection has considered; every
// reading with id <= cursor_ that matches a subscription whose start is below its id has been
// queued exactly once. Back-fills (a subscription whose `after` is older than the cursor) run one
// at a time while live batches are held, so each subscription sees its readings in id order. The
// send queue is bounded in bytes and messages: overflowing it closes the connection (1008) and
// the client resumes with `after`.
class ws_session : public stream_subscriber,
                   public stream_sink,
                   public std::enable_shared_from_this<ws_session> {
public:
    ws_session(boost::beast::tcp_stream&& stream, io_shard& shard, session_context& ctx,
               const stream_config& cfg);
    ~ws_session() override;
    void start(request req);

    void on_readings(const std::shared_ptr<const std::vector<live_ptr>>& batch) override;
    void on_status(const std::string& sensor, bool online) override;
    void on_shutdown() override;
    void deliver(const reading_batch& batch) override;
    void flush() override;

private:
    struct subscription {
        std::string topic;
        topic_filter filter;
        std::int64_t start = 0;  // readings with id > start are this subscription's
        bool conflate = false;   // while a write is in flight, keep only the newest per series
    };
    struct backfill {
        std::string topic;
        std::int64_t from = 0;   // next reading after this id
        std::int64_t upto = 0;   // the cursor when the subscription was made
        bool check_reset = true;
    };

    void on_accept(boost::beast::error_code ec);
    void do_read();
    void on_read(boost::beast::error_code ec, std::size_t);
    void handle_message(std::string_view text);
    void subscribe(std::string topic, std::optional<std::int64_t> after, bool conflate);
    void unsubscribe(const std::string& topic);
    void send_error(std::string_view code, std::string_view message);

    void process_batch(const std::vector<live_ptr>& batch);
    void start_backfill(backfill b);
    void backfill_step();
    void on_backfill_chunk(std::vector<live_ptr> chunk, std::int64_t reached, std::string reset);
    void finish_backfill();
    bool covered_by_other(const live_reading& l, const std::string& topic) const;

    void queue_conflated();
    void queue(std::shared_ptr<const std::string> msg);
    void queue(std::string msg) { queue(std::make_shared<const std::string>(std::move(msg))); }
    void do_write();
    void on_write(boost::beast::error_code ec, std::size_t);
    void close(boost::beast::websocket::close_code code, std::string_view reason);
    void finish();
    void on_peer_close();

    boost::beast::websocket::stream<coalescing_stream> ws_;
    io_shard& shard_;
    boost::beast::flat_buffer in_;
    session_context& ctx_;
    const stream_config& cfg_;

    std::vector<subscription> subs_;
    std::int64_t cursor_ = 0;
    bool registered_ = false;
    std::optional<backfill> backfill_;
    std::deque<backfill> waiting_backfills_;
    std::deque<std::shared_ptr<const std::vector<live_ptr>>> held_;  // live batches during a back-fill
    std::size_t held_readings_ = 0;
    // Readings of conflating subscriptions that arrived while a write was in flight, per series.
    conflation behind_;

    std::deque<std::shared_ptr<const std::string>> out_;
    std::size_t out_bytes_ = 0;
    std::shared_ptr<const std::string> in_flight_;
    bool writing_ = false;
    bool batching_ = false;  // inside deliver(): queue now, write at flush()
    bool compress_ = false;  // the client offered permessage-deflate: Beast writes (and compresses)
    std::string frames_;     // scratch: the frames of one write, when we frame messages ourselves
    bool closing_ = false;
    bool closed_ = false;
    std::optional<std::pair<boost::beast::websocket::close_code, std::string>> close_after_write_;
};

}  // namespace telemetry::bridge::http
