// Unit tests of the I/O shards' hand-over: batches reach each stream on its shard's thread, in
// order, and everything that arrived together is flushed once.
#include "net/io_shards.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <condition_variable>
#include <thread>

using namespace telemetry;
using namespace telemetry::bridge;
using namespace telemetry::bridge::http;

namespace {

// Records what a stream sees; all calls come from the shard's one thread.
struct recording_sink : stream_sink {
    std::vector<std::int64_t> ids;
    int flushes = 0;
    int overflows = 0;
    std::thread::id delivered_on;
    std::mutex m;
    std::condition_variable cv;

    void deliver(const delivery& d) override {
        std::lock_guard lock(m);
        delivered_on = std::this_thread::get_id();
        for (const auto& l : *d.readings) ids.push_back(l->r.id);
    }
    void overflowed() override {
        std::lock_guard lock(m);
        ++overflows;
        cv.notify_all();
    }
    void flush() override {
        std::lock_guard lock(m);
        ++flushes;
        cv.notify_all();
    }
    // Waits until `n` ids were delivered and flushed.
    bool wait_for(std::size_t n) {
        std::unique_lock lock(m);
        return cv.wait_for(lock, std::chrono::seconds(10), [&] { return ids.size() >= n; });
    }
};

delivery batch_of(std::int64_t first, std::int64_t last) {
    auto v = std::make_shared<std::vector<live_ptr>>();
    for (auto id = first; id <= last; ++id) {
        auto l = std::make_shared<live_reading>();
        l->r.id = id;
        v->push_back(std::move(l));
    }
    return delivery{v, nullptr, last};
}

}  // namespace

TEST_CASE("io shards - batches handed over from another thread arrive in order, flushed together") {
    io_shards shards(1, 1'000'000);
    auto a = std::make_shared<recording_sink>();
    auto b = std::make_shared<recording_sink>();
    io_shard& shard = shards.first();
    // Before the thread runs: everything queued is drained at once, so each sink flushes once.
    for (std::int64_t i = 0; i < 50; ++i) {
        auto batch = batch_of(i * 10 + 1, i * 10 + 10);
        shard.hand_over(a, batch);
        shard.hand_over(b, batch);
    }
    shards.run();
    REQUIRE(a->wait_for(500));
    REQUIRE(b->wait_for(500));
    shards.stop();
    std::vector<std::int64_t> want(500);
    for (std::size_t i = 0; i < want.size(); ++i) want[i] = static_cast<std::int64_t>(i) + 1;
    CHECK(a->ids == want);
    CHECK(b->ids == want);
    CHECK(a->flushes == 1);
    CHECK(b->flushes == 1);
    CHECK(a->delivered_on != std::this_thread::get_id());
}

TEST_CASE("io shards - a running shard keeps order across many hand-overs and places round-robin") {
    io_shards shards(2, 1'000'000);
    io_shard& s1 = shards.next();
    io_shard& s2 = shards.next();
    CHECK(&s1 != &s2);
    CHECK(&shards.next() == &s1);
    shards.run();
    auto a = std::make_shared<recording_sink>();
    for (std::int64_t i = 0; i < 2000; ++i) s2.hand_over(a, batch_of(i + 1, i + 1));
    REQUIRE(a->wait_for(2000));
    shards.stop();
    bool in_order = true;
    for (std::size_t i = 0; i < a->ids.size(); ++i) in_order = in_order && a->ids[i] == static_cast<std::int64_t>(i) + 1;
    CHECK(in_order);
    CHECK(a->ids.size() == 2000);
    CHECK(a->flushes >= 1);
    CHECK(a->flushes <= 2000);
}

TEST_CASE("io shards - a sink more than its bound behind is cut, and told once") {
    io_shards shards(1, 100);
    auto slow = std::make_shared<recording_sink>();
    auto fine = std::make_shared<recording_sink>();
    io_shard& shard = shards.first();
    // The shard's thread is not running: everything waits in its queue.
    for (std::int64_t i = 0; i < 30; ++i) shard.hand_over(slow, batch_of(i * 10 + 1, i * 10 + 10));
    for (std::int64_t i = 0; i < 9; ++i) shard.hand_over(fine, batch_of(i * 10 + 1, i * 10 + 10));
    shards.run();
    REQUIRE(fine->wait_for(90));
    shards.stop();
    CHECK(slow->ids.size() == 100);  // what fitted the bound, then nothing more
    CHECK(slow->overflows == 1);
    CHECK(fine->overflows == 0);
}
