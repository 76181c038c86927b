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
    bool wait_flushed(int n) {
        std::unique_lock lock(m);
        return cv.wait_for(lock, std::chrono::seconds(10), [&] { return flushes >= n; });
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

TEST_CASE("io shards - one commit's hand-overs wait for its end, then reach every sink in one drain") {
    io_shards shards(2, 1'000'000);
    std::vector<std::shared_ptr<recording_sink>> sinks;
    std::vector<io_shard*> placed;
    for (int i = 0; i < 300; ++i) {
        sinks.push_back(std::make_shared<recording_sink>());
        placed.push_back(&shards.next());
    }
    shards.run();  // the threads run: without the batch, the first hand-over would wake them

    constexpr std::int64_t commits = 20;
    for (std::int64_t c = 0; c < commits; ++c) {
        auto batch = batch_of(c * 5 + 1, c * 5 + 5);
        shards.begin_commit();
        for (std::size_t i = 0; i < sinks.size(); ++i) placed[i]->hand_over(sinks[i], batch);
        if (c == 0) {
            // Held: the shards' threads were not woken, so nothing reached any sink.
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            bool none = true;
            for (auto& s : sinks) {
                std::lock_guard lock(s->m);
                none = none && s->ids.empty() && s->flushes == 0;
            }
            CHECK(none);
        }
        shards.end_commit();
        if (c == 0) {
            // Released: every sink has the whole commit, flushed once (one drain per shard).
            for (auto& s : sinks) REQUIRE(s->wait_flushed(1));
            shards.begin_commit();  // an empty commit: nothing to wake
            shards.end_commit();
            int single = 0;
            for (auto& s : sinks) {
                std::lock_guard lock(s->m);
                single += s->flushes == 1 && s->ids.size() == 5;
            }
            CHECK(single == static_cast<int>(sinks.size()));
        }
    }
    for (auto& s : sinks) REQUIRE(s->wait_for(commits * 5));
    shards.stop();
    bool in_order = true;
    for (auto& s : sinks) {
        in_order = in_order && s->ids.size() == static_cast<std::size_t>(commits * 5);
        for (std::size_t i = 0; i < s->ids.size(); ++i) in_order = in_order && s->ids[i] == static_cast<std::int64_t>(i) + 1;
        in_order = in_order && s->flushes >= 1 && s->flushes <= commits;
    }
    CHECK(in_order);
}
