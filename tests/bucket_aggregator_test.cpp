// Unit tests of the live bucket state machine: against a brute-force aggregate of every reading,
// with late readings, a subscription joining mid-way, and a resume after an event's id.
#include "core/bucket_aggregator.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <random>

using namespace telemetry::bridge;
namespace storage = telemetry::storage;

namespace {

constexpr std::int64_t width = 60'000;

struct stored {
    std::int64_t id, ts;
    std::string sensor;
    double value;
};

std::int64_t bucket_start(std::int64_t ts) { return ts / width * width; }  // test times are positive

storage::partial_bucket sum_of(const std::vector<stored>& all, const std::string& sensor, std::int64_t t,
                               std::int64_t before_id) {
    storage::partial_bucket p;
    for (const auto& r : all) {
        if (r.sensor != sensor || r.id >= before_id || bucket_start(r.ts) != t) continue;
        p.min = p.count ? std::min(p.min, r.value) : r.value;
        p.max = p.count ? std::max(p.max, r.value) : r.value;
        p.sum += r.value;
        ++p.count;
    }
    return p;
}

// What storage::reader::seed_bucket answers, computed from the list.
storage::bucket_seed seed_of(const std::vector<stored>& all, const live_reading& l) {
    storage::bucket_seed s;
    for (const auto& r : all)
        if (r.sensor == l.r.sensor && r.id < l.r.id) s.newest_ts = std::max(s.newest_ts.value_or(r.ts), r.ts);
    if (s.newest_ts) s.newest = sum_of(all, l.r.sensor, bucket_start(*s.newest_ts), l.r.id);
    s.at = sum_of(all, l.r.sensor, bucket_start(l.r.ts), l.r.id);
    return s;
}

live_ptr live(const stored& r) {
    auto l = std::make_shared<live_reading>();
    l->r.id = r.id;
    l->r.ts = r.ts;
    l->r.sensor = r.sensor;
    l->r.metric = "temperature";
    l->r.value = r.value;
    l->topic = "sensors/" + r.sensor + "/temperature";
    return l;
}

using view = std::map<std::pair<std::string, std::int64_t>, bucket_event>;

// Feeds readings [from, to) of `all`, asking for seeds as the stream would; the client's view
// keeps the newest event per (series, t). Returns how many seeds were asked for.
int feed(bucket_aggregator& agg, const std::vector<stored>& all, std::size_t from, std::size_t to, view& v,
         std::int64_t& last_event_id) {
    int seeds = 0;
    std::vector<bucket_event> out;
    for (std::size_t i = from; i < to; ++i) {
        auto l = live(all[i]);
        out.clear();
        if (!agg.add(l, nullptr, out)) {
            ++seeds;
            const auto s = seed_of(all, *l);
            REQUIRE(agg.add(l, &s, out));
        }
        agg.take_provisional(l->r.id, out);
        for (const auto& e : out) {
            CHECK(e.id == l->r.id);
            v[{e.series->r.sensor, e.t}] = e;
            last_event_id = e.id;
        }
    }
    return seeds;
}

// Every bucket below each series' newest one, as the view has it and as the readings make it.
void check_closed_buckets(const std::vector<stored>& all, const view& v, bool only_final) {
    std::map<std::string, std::int64_t> open;
    for (const auto& r : all) open[r.sensor] = std::max(open[r.sensor], bucket_start(r.ts));
    std::map<std::pair<std::string, std::int64_t>, storage::partial_bucket> truth;
    for (const auto& r : all)
        if (bucket_start(r.ts) < open[r.sensor])
            truth[{r.sensor, bucket_start(r.ts)}] = sum_of(all, r.sensor, bucket_start(r.ts), INT64_MAX);
    std::size_t seen = 0;
    for (const auto& [key, e] : v) {
        if (key.second >= open[key.first]) continue;
        ++seen;
        if (only_final) CHECK(e.what != bucket_event::kind::provisional);
        REQUIRE(truth.count(key));
        const auto& want = truth[key];
        CHECK(e.values.count == want.count);
        CHECK(e.values.min == want.min);
        CHECK(e.values.max == want.max);
        CHECK(e.values.sum == doctest::Approx(want.sum));
    }
    CHECK(seen == truth.size());
}

std::vector<stored> random_readings(std::mt19937& rng, int n) {
    std::vector<stored> all;
    std::uniform_int_distribution<int> sensor(0, 2), late(0, 5), step(0, 40'000), back(0, 400'000), value(-40, 40);
    std::map<std::string, std::int64_t> now;
    for (int i = 0; i < n; ++i) {
        const std::string s(1, static_cast<char>('a' + sensor(rng)));
        auto& t = now.try_emplace(s, 10'000'000).first->second;
        t += step(rng);
        // One reading in six is late, up to a few buckets back.
        const std::int64_t ts = late(rng) == 0 ? t - back(rng) : t;
        all.push_back({i + 1, ts, s, value(rng) / 4.0});
    }
    return all;
}

}  // namespace

TEST_CASE("buckets - a bucket closes when a later one starts, with the readings stored before joining") {
    std::vector<stored> all = {{1, 60'000, "a", 1.0}, {2, 61'000, "a", 3.0}, {3, 62'000, "a", 2.0},
                               {4, 121'000, "a", 5.0}, {5, 130'000, "a", 7.0}, {6, 62'500, "a", 0.5}};
    bucket_aggregator agg({width, false});
    view v;
    std::int64_t last = 0;
    // Joins after reading 2: bucket 60,000 holds readings 1 and 2 already.
    CHECK(feed(agg, all, 2, 6, v, last) == 2);  // the first reading of a; the late one below settled
    REQUIRE(v.size() == 1);
    const auto& e = v.begin()->second;
    CHECK(e.t == 60'000);
    CHECK(e.what == bucket_event::kind::corrected);  // closed by reading 4, corrected by reading 6
    CHECK(e.values.count == 4);
    CHECK(e.values.min == 0.5);
    CHECK(e.values.max == 3.0);
    CHECK(e.values.sum == 6.5);
    CHECK(last == 6);
}

TEST_CASE("buckets - the first late reading into an empty bucket between closed ones needs no storage") {
    std::vector<stored> all = {{1, 60'000, "a", 1.0}, {2, 240'000, "a", 2.0}, {3, 130'000, "a", 4.0},
                               {4, 131'000, "a", 6.0}};
    bucket_aggregator agg({width, false});
    view v;
    std::int64_t last = 0;
    // The series' first reading, and reading 4 (bucket 120,000 got reading 3 meanwhile); not reading 3.
    CHECK(feed(agg, all, 0, 4, v, last) == 2);
    CHECK(v.at({"a", 120'000}).values.count == 2);
    CHECK(v.at({"a", 120'000}).values.sum == 10.0);
    CHECK(v.at({"a", 60'000}).what == bucket_event::kind::closed);
}

TEST_CASE("buckets - random readings: the client's view equals the aggregate, also across a resume") {
    std::mt19937 rng(1234);
    for (int round = 0; round < 50; ++round) {
        const auto all = random_readings(rng, 300);
        // One subscription from the start.
        {
            bucket_aggregator agg({width, false});
            view v;
            std::int64_t last = 0;
            feed(agg, all, 0, all.size(), v, last);
            check_closed_buckets(all, v, true);
        }
        // Cut after an event, resumed by a new aggregator after that event's id (provisional on).
        {
            bucket_aggregator first({width, true});
            view v;
            std::int64_t last = 0;
            const std::size_t cut = std::uniform_int_distribution<std::size_t>(1, all.size() - 1)(rng);
            feed(first, all, 0, cut, v, last);
            bucket_aggregator second({width, true});
            const std::size_t from = static_cast<std::size_t>(last);  // ids are 1..n: index = id
            feed(second, all, from, all.size(), v, last);
            check_closed_buckets(all, v, false);
        }
    }
}

TEST_CASE("buckets - wire form") {
    auto l = live({7, 61'000, "k", 1.5});
    bucket_event e{bucket_event::kind::closed, 9, l, 60'000, {}};
    e.values.add(1.5);
    e.values.add(2.5);
    std::string sse;
    append_sse_bucket(sse, e, "@00c0ffee");
    CHECK(sse == "id: 9@00c0ffee\nevent: bucket\ndata: {\"sensor\":\"k\",\"metric\":\"temperature\",\"t\":60000,\"count\":2,"
                 "\"min\":1.5,\"max\":2.5,\"avg\":2,\"final\":true,\"correction\":false}\n\n");
    e.what = bucket_event::kind::provisional;
    CHECK(ws_bucket_message("sensors/+/temperature", e) ==
          "{\"op\":\"bucket\",\"topic\":\"sensors/+/temperature\",\"id\":9,\"sensor\":\"k\",\"metric\":\"temperature\","
          "\"t\":60000,\"count\":2,\"min\":1.5,\"max\":2.5,\"avg\":2,\"final\":false,\"correction\":false}");
}
