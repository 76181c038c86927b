// The total send budget over all streams (broker-bridge/streams/send_budget.hpp, docs/api.md 7):
// who may grow at which total: past twice the budget, only streams within their fair share.
#include <doctest/doctest.h>

#include <chrono>
#include <cstddef>

#include "streams/send_budget.hpp"

using telemetry::bridge::http::send_budget;
using verdict = send_budget::verdict;

namespace {
constexpr std::size_t KiB = 1024;
constexpr std::size_t MiB = 1024 * KiB;

// Open `n` streams and put `bytes` on the total as one stream that holds them.
void fill(send_budget& b, int streams, std::size_t bytes) {
    for (int i = 0; i < streams; ++i) b.stream_opened();
    std::size_t accounted = 0;
    b.account(bytes, accounted);
}
}  // namespace

TEST_CASE("send budget - within the budget every stream may grow") {
    send_budget b(8 * MiB);
    fill(b, 10, 7 * MiB);
    CHECK(b.judge(0, 0, 512 * KiB) == verdict::admit);
    CHECK(b.judge(0, 0, 2 * MiB) == verdict::admit_if_progressing);  // past the budget, over its share
}

TEST_CASE("send budget - past the budget: a stream under its fair share grows, others only while progressing") {
    send_budget b(8 * MiB);
    fill(b, 8, 12 * MiB);  // fair share: 1 MiB
    CHECK(b.judge(100 * KiB, 100 * KiB, 16 * KiB) == verdict::admit);
    CHECK(b.judge(2 * MiB, 2 * MiB, 16 * KiB) == verdict::admit_if_progressing);
    const auto now = std::chrono::steady_clock::now();
    CHECK(b.admit(2 * MiB, 2 * MiB, 16 * KiB, now));  // a write just started: progressing
    CHECK_FALSE(b.admit(2 * MiB, 2 * MiB, 16 * KiB, now - 2 * send_budget::stall_after));  // stalled
    CHECK(b.admit(2 * MiB, 2 * MiB, 16 * KiB, {}));  // nothing in flight: not stalled
}

TEST_CASE("send budget - past twice the budget only a stream within its fair share grows") {
    send_budget b(8 * MiB);
    fill(b, 8, 16 * MiB - 8 * KiB);  // fair share 1 MiB; total just under twice the budget
    CHECK(b.judge(2 * MiB, 2 * MiB, 8 * KiB) == verdict::admit_if_progressing);
    CHECK(b.judge(2 * MiB, 2 * MiB, 16 * KiB) == verdict::refuse);
    CHECK_FALSE(b.admit(2 * MiB, 2 * MiB, 16 * KiB, std::chrono::steady_clock::now()));  // even progressing
    // A reader within its share is never refused because others hold the budget.
    CHECK(b.judge(0, 0, 16 * KiB) == verdict::admit);
    CHECK(b.judge(512 * KiB, 512 * KiB, 512 * KiB) == verdict::admit);
    CHECK(b.judge(512 * KiB, 512 * KiB, 512 * KiB + 1) == verdict::refuse);
    // With more streams than the budget has floors, the share is the floor (64 KiB).
    send_budget many(1 * MiB);
    fill(many, 1000, 3 * MiB);
    CHECK(many.judge(0, 0, 64 * KiB) == verdict::admit);
    CHECK(many.judge(0, 0, 64 * KiB + 1) == verdict::refuse);
}

TEST_CASE("send budget - accounting moves the total both ways") {
    send_budget b(1 * MiB);
    std::size_t a = 0;
    CHECK(b.account(300 * KiB, a) == static_cast<long>(300 * KiB));
    CHECK(b.queued() == 300 * KiB);
    CHECK(b.account(100 * KiB, a) == -static_cast<long>(200 * KiB));
    CHECK(b.queued() == 100 * KiB);
    CHECK(a == 100 * KiB);
}
