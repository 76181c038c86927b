// The total send budget over all streams (broker-bridge/streams/send_budget.hpp, docs/api.md 7):
// who may grow at which total, and, at twice the budget, who is cut to make room.
#include <doctest/doctest.h>

#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "streams/send_budget.hpp"

using telemetry::bridge::http::send_budget;
using verdict = send_budget::verdict;

namespace {
constexpr std::size_t KiB = 1024;
constexpr std::size_t MiB = 1024 * KiB;
const std::chrono::steady_clock::time_point none{};  // no write in flight

// `n` open streams; the first holds `bytes`.
struct streams {
    send_budget& b;
    std::deque<send_budget::share> all;
    streams(send_budget& budget, int n, std::size_t bytes) : b(budget) {
        for (int i = 0; i < n; ++i) all.emplace_back(budget);
        all.front().account(bytes);
    }
};

// A stream that counts how often the budget cut it.
struct cuttable {
    send_budget::share share;
    int cuts = 0;
    cuttable(send_budget& b, std::size_t held, int socket = -1) : share(b) {
        share.on_cut([this] { ++cuts; }, socket);
        share.account(held);
    }
};
}  // namespace

TEST_CASE("send budget - within the budget every stream may grow") {
    send_budget b(8 * MiB);
    streams s(b, 10, 7 * MiB);
    CHECK(b.judge(0, 0, 512 * KiB) == verdict::admit);
    CHECK(b.judge(0, 0, 2 * MiB) == verdict::admit_if_progressing);  // past the budget, over its share
}

TEST_CASE("send budget - past the budget: a stream under its fair share grows, others only while progressing") {
    send_budget b(8 * MiB);
    streams s(b, 7, 10 * MiB);  // with the one below, 8 streams: a fair share of 1 MiB
    send_budget::share mine(b);
    mine.account(2 * MiB);  // 12 MiB in all
    CHECK(b.judge(100 * KiB, 0, 16 * KiB) == verdict::admit);
    CHECK(b.judge(2 * MiB, 2 * MiB, 16 * KiB) == verdict::admit_if_progressing);
    const auto now = std::chrono::steady_clock::now();
    CHECK(mine.admit(2 * MiB, 16 * KiB, now));  // a write just started: progressing
    CHECK_FALSE(mine.admit(2 * MiB, 16 * KiB, now - 2 * send_budget::stall_after));  // stalled
    CHECK(mine.admit(2 * MiB, 16 * KiB, none));  // nothing in flight: not stalled
    CHECK_FALSE(mine.cut());  // refusing a stream is not cutting it: its own thread closes it
}

TEST_CASE("send budget - past twice the budget, the streams furthest behind are cut to make room") {
    send_budget b(8 * MiB);
    // Eight streams, a fair share of 1 MiB: two stalled ones far behind, and a reader that
    // keeps up but holds a little more than its share, during a burst.
    cuttable big(b, 5 * MiB), bigger(b, 9 * MiB);
    std::deque<cuttable> small;
    for (int i = 0; i < 5; ++i) small.emplace_back(b, 64 * KiB);
    cuttable reader(b, 1 * MiB + 1 * KiB);  // total: 15 MiB + 321 KiB, under twice the budget
    CHECK(b.judge(1 * MiB + 1 * KiB, 1 * MiB + 1 * KiB, 16 * KiB) == verdict::admit_if_progressing);
    CHECK(b.judge(1 * MiB + 1 * KiB, 1 * MiB + 1 * KiB, 1 * MiB) == verdict::make_room);

    // Past the ceiling the reader is admitted; the one holding the most is cut, and only it.
    CHECK(reader.share.admit(1 * MiB + 1 * KiB, 1 * MiB, std::chrono::steady_clock::now()));
    CHECK(bigger.cuts == 1);
    CHECK(bigger.share.cut());
    CHECK(big.cuts == 0);
    CHECK_FALSE(big.share.cut());
    for (auto& s : small) CHECK(s.cuts == 0);
    CHECK(reader.cuts == 0);
    // A cut stream may not grow, even within its share; it gives back what it held as it closes.
    CHECK_FALSE(bigger.share.admit(9 * MiB, 1, none));
    CHECK(b.queued() == 15 * MiB + 321 * KiB);
    CHECK(b.counted() == 6 * MiB + 321 * KiB);  // the cut stream's 9 MiB no longer count
    CHECK(b.judge(2 * MiB, 0, 0) == verdict::admit_if_progressing);  // 8.3 MiB counted, not 17.3
    bigger.share.account(4 * MiB);  // a write completed before the cut reached its thread
    CHECK(b.queued() == 10 * MiB + 321 * KiB);
    CHECK(b.counted() == 6 * MiB + 321 * KiB);
    bigger.share.account(0);
    CHECK(b.queued() == 6 * MiB + 321 * KiB);
    CHECK(b.counted() == 6 * MiB + 321 * KiB);
}

TEST_CASE("send budget - at the ceiling, stalled streams go first, whatever they hold") {
    send_budget b(8 * MiB);
    const auto now = std::chrono::steady_clock::now();
    const auto old = now - 2 * send_budget::stall_after;
    // Four streams, a fair share of 2 MiB: a reader far behind but writing, a stalled one that
    // holds less than it, and one more stalled one.
    cuttable behind(b, 7 * MiB), stalled(b, 3 * MiB), stalled_small(b, 2 * MiB + 512 * KiB), asker(b, 3 * MiB);
    CHECK(behind.share.admit(7 * MiB, 0, now));  // its write started just now
    CHECK_FALSE(stalled.share.admit(3 * MiB, 0, old));  // its write started long ago: refused
    CHECK_FALSE(stalled_small.share.admit(2 * MiB + 512 * KiB, 0, old));
    CHECK(b.counted() == 15 * MiB + 512 * KiB);
    // The asker needs 1.5 MiB of room: the larger stalled stream makes it; nothing else is cut.
    CHECK(asker.share.admit(3 * MiB, 2 * MiB, now));
    CHECK(stalled.cuts == 1);
    CHECK(stalled_small.cuts == 0);
    CHECK(behind.cuts == 0);
    CHECK(b.counted() == 12 * MiB + 512 * KiB);
}

TEST_CASE("send budget - at the ceiling, when no one can make the room, only stalled streams go with the asker") {
    send_budget b(8 * MiB);
    const auto now = std::chrono::steady_clock::now();
    cuttable reading(b, 6 * MiB), stalled(b, 512 * KiB), asker(b, 9 * MiB);  // 15.5 MiB, shares of 2.7 MiB
    CHECK(reading.share.admit(6 * MiB, 0, now));
    CHECK(stalled.share.admit(512 * KiB, 0, now - 2 * send_budget::stall_after));
    // 3 MiB more would pass the ceiling by 2.5 MiB: the stalled stream's 0.5 MiB is not enough,
    // and the reading one holds less than the asker would.
    CHECK_FALSE(asker.share.admit(9 * MiB, 3 * MiB, now));
    CHECK(stalled.cuts == 1);
    CHECK(reading.cuts == 0);
}

TEST_CASE("send budget - past twice the budget, a stream that holds the most is refused itself") {
    send_budget b(8 * MiB);
    cuttable stalled(b, 9 * MiB), other(b, 7 * MiB + 512 * KiB);  // 16.5 MiB, a share of 4 MiB
    const auto now = std::chrono::steady_clock::now();
    // Nobody is further behind than the stalled one: it is the one refused, and nobody is cut.
    CHECK_FALSE(stalled.share.admit(9 * MiB, 1 * MiB, now));
    CHECK(other.cuts == 0);
    CHECK(stalled.cuts == 0);
    // A stalled stream past the ceiling does not cut others either: it is refused first.
    CHECK_FALSE(other.share.admit(7 * MiB + 512 * KiB, 1 * MiB, now - 2 * send_budget::stall_after));
    CHECK(stalled.cuts == 0);
    // Within its fair share a stream grows however full the budget is.
    send_budget::share small(b);
    CHECK(small.admit(0, 16 * KiB, now));
    CHECK(stalled.cuts == 0);
}

TEST_CASE("send budget - the floor of the fair share with more streams than the budget divides into") {
    send_budget many(1 * MiB);
    streams s(many, 1000, 3 * MiB);
    CHECK(many.judge(0, 0, 64 * KiB) == verdict::admit);
    CHECK(many.judge(0, 0, 64 * KiB + 1) == verdict::make_room);
}

TEST_CASE("send budget - accounting moves the total both ways, and a closed stream gives back all") {
    send_budget b(1 * MiB);
    {
        send_budget::share s(b);
        CHECK(s.account(300 * KiB) == static_cast<long>(300 * KiB));
        CHECK(b.queued() == 300 * KiB);
        CHECK(s.account(100 * KiB) == -static_cast<long>(200 * KiB));
        CHECK(b.queued() == 100 * KiB);
        CHECK(s.accounted() == 100 * KiB);
        CHECK(b.streams() == 1);
    }
    CHECK(b.queued() == 0);
    CHECK(b.streams() == 0);
}

TEST_CASE("send budget - a cut stream that closes leaves nothing behind") {
    send_budget b(1 * MiB);
    auto stalled = std::make_unique<cuttable>(b, 1 * MiB + 512 * KiB);
    cuttable reader(b, 500 * KiB);  // a share of 512 KiB; 2 MiB in all, the ceiling
    CHECK(reader.share.admit(500 * KiB, 100 * KiB, none));
    CHECK(stalled->cuts == 1);
    stalled->share.account(1 * MiB);  // a write completed before the cut reached its thread
    CHECK(b.counted() == 500 * KiB);
    stalled.reset();  // closed
    CHECK(b.queued() == 500 * KiB);
    CHECK(b.counted() == 500 * KiB);
    CHECK(b.streams() == 1);
    // And the total counts fully again: nothing of the cut stream is subtracted any more.
    reader.share.account(2 * MiB + 1);
    CHECK(b.counted() == 2 * MiB + 1);
    CHECK(b.judge(2 * MiB + 1, 2 * MiB + 1, 1) == verdict::make_room);
}

TEST_CASE("send budget - an old write is stalled only while the client's socket takes nothing") {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    const auto now = std::chrono::steady_clock::now();
    const auto old = now - 2 * send_budget::stall_after;
    CHECK(send_budget::progressing(now, -1));           // young
    CHECK(send_budget::progressing({}, -1));            // nothing in flight
    CHECK_FALSE(send_budget::progressing(old, -1));     // old, and no socket to ask
    CHECK(send_budget::progressing(old, fds[0]));       // old, but the peer has room: reading
    // The peer stops reading: its buffer fills, the socket takes nothing more.
    ::fcntl(fds[0], F_SETFL, ::fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    const char chunk[4096] = {};
    while (::send(fds[0], chunk, sizeof chunk, 0) > 0) {
    }
    CHECK_FALSE(send_budget::progressing(old, fds[0]));
    CHECK(send_budget::progressing(now, fds[0]));  // a young write is given its time anyway
    // The peer reads everything: writable again.
    ::fcntl(fds[1], F_SETFL, ::fcntl(fds[1], F_GETFL) | O_NONBLOCK);
    char sink[65536];
    while (::recv(fds[1], sink, sizeof sink, 0) > 0) {
    }
    CHECK(send_budget::progressing(old, fds[0]));
    ::close(fds[0]);
    ::close(fds[1]);
}

TEST_CASE("send budget - at the ceiling, an old write on a socket that takes bytes is not stalled") {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);  // empty: the peer has taken everything
    send_budget b(8 * MiB);
    const auto now = std::chrono::steady_clock::now();
    const auto old = now - 2 * send_budget::stall_after;
    // Four streams, a share of 2 MiB. Both old writes look stalled by time; one's client reads.
    cuttable reading(b, 4 * MiB, fds[0]), stalled(b, 2 * MiB + 512 * KiB), ahead(b, 6 * MiB), asker(b, 3 * MiB);
    CHECK(reading.share.admit(4 * MiB, 0, old, fds[0]));  // old, but its socket takes bytes
    CHECK_FALSE(stalled.share.admit(2 * MiB + 512 * KiB, 0, old));
    CHECK(ahead.share.admit(6 * MiB, 0, now));
    CHECK(asker.share.admit(3 * MiB, 2 * MiB, now));  // 1.5 MiB over the ceiling
    CHECK(stalled.cuts == 1);
    CHECK(reading.cuts == 0);  // larger, old, but read: not taken for stalled
    CHECK(ahead.cuts == 0);
    reading.share.forget_socket();
    ::close(fds[0]);
    ::close(fds[1]);
}
