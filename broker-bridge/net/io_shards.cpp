// The HTTP server's threads and the hand-off of commits to the streams of each thread.
#include "net/io_shards.hpp"

#include <boost/asio/post.hpp>

#include <algorithm>

namespace telemetry::bridge::http {

namespace asio = boost::asio;

namespace {
std::size_t events(const delivery& d) {
    return (d.readings ? d.readings->size() : 0) + (d.statuses ? d.statuses->size() : 0);
}
}  // namespace

// Concurrency hint 1: one thread runs this context (posts from other threads still lock).
io_shard::io_shard(std::size_t max_queued_per_sink)
    : max_queued_(std::max<std::size_t>(max_queued_per_sink, 1)), ioc_(1), work_(asio::make_work_guard(ioc_)) {}

void io_shard::hand_over(std::shared_ptr<stream_sink> sink, delivery d) {
    const std::size_t n = events(d);
    bool post = false;
    {
        std::lock_guard lock(mutex_);
        if (sink->cut_) return;
        const bool cut = sink->queued_.load(std::memory_order_relaxed) + n > max_queued_;
        if (cut) {
            // Its thread has not kept up: drop it from the hand-off rather than queue without bound.
            sink->cut_ = true;
            queued_.push_back(group{{}, true, {}});
        } else {
            sink->queued_.fetch_add(n, std::memory_order_relaxed);
            // A commit that every sink selects entirely is one shared delivery: one group.
            if (queued_.empty() || queued_.back().cut || queued_.back().what.readings != d.readings ||
                queued_.back().what.statuses != d.statuses)
                queued_.push_back(group{std::move(d), false, {}});
        }
        queued_.back().sinks.push_back(std::move(sink));
        post = !std::exchange(drain_posted_, true);
    }
    if (!post) return;
    if (holding_) post_held_ = true;
    else asio::post(ioc_, [this] { drain(); });
}

void io_shard::release() {
    holding_ = false;
    if (std::exchange(post_held_, false)) asio::post(ioc_, [this] { drain(); });
}

void io_shard::drain() {
    std::vector<group> groups;
    {
        std::lock_guard lock(mutex_);
        groups.swap(queued_);
        drain_posted_ = false;
    }
    // Everything that arrived since the last drain is queued first and written once per sink:
    // under load several commits share a network write.
    std::vector<stream_sink*> to_flush;
    for (const auto& g : groups) {
        const std::size_t n = events(g.what);
        for (const auto& s : g.sinks) {
            if (g.cut) {
                s->overflowed();
                continue;
            }
            s->queued_.fetch_sub(n, std::memory_order_relaxed);
            s->deliver(g.what);
            if (!std::exchange(s->flush_listed_, true)) to_flush.push_back(s.get());
        }
    }
    for (stream_sink* s : to_flush) {
        s->flush_listed_ = false;
        s->flush();
    }
}

io_shards::io_shards(int threads, std::size_t max_queued_per_sink) {
    for (int i = 0; i < std::max(threads, 1); ++i) shards_.push_back(std::make_unique<io_shard>(max_queued_per_sink));
}

io_shards::~io_shards() { stop(); }

io_shard& io_shards::next() noexcept {
    return *shards_[next_.fetch_add(1, std::memory_order_relaxed) % shards_.size()];
}

void io_shards::begin_commit() {
    for (auto& s : shards_) s->hold();
}

void io_shards::end_commit() {
    for (auto& s : shards_) s->release();
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
