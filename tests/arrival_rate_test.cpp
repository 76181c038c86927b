// The committer's rule for waiting for a fuller batch: only when readings arrive fast enough.
#include "pipeline/arrival_rate.hpp"

#include <doctest/doctest.h>

#include <chrono>

using namespace std::chrono_literals;
using telemetry::bridge::arrival_rate;

namespace {
constexpr auto wait = 5ms;
constexpr std::int64_t worth = 4;  // the committer's: gather when the wait brings 4 or more

// n arrivals of one reading, `gap` apart, from `t`; returns the time of the last.
arrival_rate::clock::time_point arrive(arrival_rate& r, arrival_rate::clock::time_point t, int n,
                                       arrival_rate::clock::duration gap) {
    for (int i = 0; i < n; ++i) r.note(1, t += gap);
    return t;
}
}  // namespace

TEST_CASE("arrival rate - a fresh committer and a slow sensor never wait") {
    arrival_rate r;
    CHECK_FALSE(r.gathers(wait, worth));
    arrive(r, arrival_rate::clock::now(), 200, 10ms);  // 100 readings/s
    CHECK_FALSE(r.gathers(wait, worth));
    CHECK(r.mean_gap() > 9ms);
}

TEST_CASE("arrival rate - at thousands a second the committer waits") {
    arrival_rate r;
    arrive(r, arrival_rate::clock::now(), 200, 66us);  // 15,000/s
    CHECK(r.gathers(wait, worth));
    CHECK(r.mean_gap() < 100us);
}

TEST_CASE("arrival rate - the threshold is the rate at which the wait gathers `worth` readings") {
    arrival_rate fast, slow;
    const auto t = arrival_rate::clock::now();
    arrive(fast, t, 300, 1200us);  // 833/s: 4.2 readings in 5 ms
    arrive(slow, t, 300, 1300us);  // 769/s: 3.8
    CHECK(fast.gathers(wait, worth));
    CHECK_FALSE(slow.gathers(wait, worth));
}

TEST_CASE("arrival rate - two readings arriving together at a low rate do not make the next wait") {
    arrival_rate r;
    auto t = arrive(r, arrival_rate::clock::now(), 100, 10ms);
    t = arrive(r, t, 1, 100us);  // a publisher catching up: two at once
    CHECK_FALSE(r.gathers(wait, worth));
    r.note(2, t + 10ms);  // or one message holding two readings
    CHECK_FALSE(r.gathers(wait, worth));
}

TEST_CASE("arrival rate - a message of many readings counts as many arrivals") {
    arrival_rate r;
    auto t = arrival_rate::clock::now();
    for (int i = 0; i < 100; ++i) r.note(50, t += 10ms);  // 5,000 readings/s in packs of 50
    CHECK(r.gathers(wait, worth));
}

TEST_CASE("arrival rate - after an idle hour a burst is seen within a few dozen readings") {
    arrival_rate r;
    auto t = arrive(r, arrival_rate::clock::now(), 100, 66us);
    REQUIRE(r.gathers(wait, worth));
    t += 1h;
    r.note(1, t);
    CHECK_FALSE(r.gathers(wait, worth));  // the first reading after the pause is committed at once
    int readings = 0;
    while (!r.gathers(wait, worth) && readings < 1000) {
        r.note(1, t += 66us);
        ++readings;
    }
    CHECK(readings > 1);
    CHECK(readings <= 40);
}
