// The committer's rule for waiting for a fuller batch: only while batches hold several readings.
#include "pipeline/batch_gathering.hpp"

#include <doctest/doctest.h>

using telemetry::bridge::batch_gathering;

namespace {
void take(batch_gathering& g, std::size_t n, int times) {
    for (int i = 0; i < times; ++i) g.taken(n);
}
}  // namespace

TEST_CASE("batch gathering - a fresh committer and a slow sensor's single readings never wait") {
    batch_gathering g;
    CHECK_FALSE(g.worth_waiting());
    take(g, 1, 100);
    CHECK_FALSE(g.worth_waiting());
}

TEST_CASE("batch gathering - two readings that happen to arrive together do not make the next wait") {
    batch_gathering g;
    take(g, 1, 50);
    g.taken(2);
    CHECK_FALSE(g.worth_waiting());
    g.taken(2);  // even twice in a row
    CHECK_FALSE(g.worth_waiting());
}

TEST_CASE("batch gathering - readings piling up during commits make the committer wait") {
    batch_gathering g;
    take(g, 1, 20);
    int batches = 0;
    while (!g.worth_waiting() && batches < 100) {
        g.taken(3);
        ++batches;
    }
    CHECK(batches >= 2);
    CHECK(batches <= 8);
    take(g, 2, 50);  // steady batches of two: still busy
    CHECK(g.worth_waiting());
}

TEST_CASE("batch gathering - after a backlog the committer stops waiting within a dozen single readings") {
    batch_gathering g;
    take(g, 1000, 200);
    REQUIRE(g.worth_waiting());
    int batches = 0;
    while (g.worth_waiting() && batches < 1000) {
        g.taken(1);
        ++batches;
    }
    CHECK(batches <= 12);
}

TEST_CASE("batch gathering - a wake-up for presence changes alone changes nothing") {
    batch_gathering g;
    take(g, 3, 30);
    const double busy = g.mean_batch();
    take(g, 0, 30);
    CHECK(g.mean_batch() == busy);
}
