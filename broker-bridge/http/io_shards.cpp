// The HTTP server's threads: one io_context per thread, each connection pinned to one of them,
// and the hand-off that brings committed readings to the streams of each thread.
#include "http/io_shards.hpp"

#include <boost/asio/post.hpp>

#include <algorithm>

namespace telemetry::bridge::http {

namespace asio = boost::asio;

// Concurrency hint 1: one thread runs this context (posts from other threads still lock).
io_shard::io_shard() : ioc_(1), work_(asio::make_work_guard(ioc_)) {}

void io_shard::hand_over(std::shared_ptr<stream_sink> sink, reading_batch batch) {
    bool post = false;
    {
        std::lock_guard lock(mutex_);
        // The hub hands one batch to every sink in a row: they share one group.
        if (queued_.empty() || queued_.back().batch != batch) queued_.push_back(group{std::move(batch), {}});
        queued_.back().sinks.push_back(std::move(sink));
        post = !std::exchange(drain_posted_, true);
    }
    if (post) asio::post(ioc_, [this] { drain(); });
}

void io_shard::drain() {
    std::vector<group> groups;
    {
        std::lock_guard lock(mutex_);
        groups.swap(queued_);
        drain_posted_ = false;
    }
    // Everything that arrived since the last drain is queued first and written once per sink:
    // under load several readings share a network write.
    std::vector<stream_sink*> to_flush;
    for (const auto& g : groups) {
        for (const auto& s : g.sinks) {
            s->deliver(g.batch);
            if (!std::exchange(s->flush_listed_, true)) to_flush.push_back(s.get());
        }
    }
    for (stream_sink* s : to_flush) {
        s->flush_listed_ = false;
        s->flush();
    }
}

io_shards::io_shards(int threads) {
    for (int i = 0; i < std::max(threads, 1); ++i) shards_.push_back(std::make_unique<io_shard>());
}

io_shards::~io_shards() { stop(); }

io_shard& io_shards::next() noexcept {
    return *shards_[next_.fetch_add(1, std::memory_order_relaxed) % shards_.size()];
}

void io_shards::run() {
    for (auto& s : shards_) threads_.emplace_back([&ctx = s->context()] { ctx.run(); });
}

void io_shards::stop() {
    for (auto& s : shards_) s->context().stop();
    for (auto& t : threads_)
        if (t.joinable()) t.join();
    threads_.clear();
}

}  // namespace telemetry::bridge::http
