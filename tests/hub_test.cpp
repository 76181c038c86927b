// Unit tests of the live state: the series table and its cached representations, the recent
// window, the subscriber registry (topic index, presence by filter) and the hub that orders
// commits against attaching subscribers.
#include "live/hub.hpp"

#include "http/representations.hpp"

#include <doctest/doctest.h>

#include <algorithm>

using namespace telemetry;
using namespace telemetry::bridge;

namespace {

reading make(std::int64_t id, std::string sensor, std::string metric, std::int64_t ts, double v) {
    reading r;
    r.id = id;
    r.sensor = std::move(sensor);
    r.metric = std::move(metric);
    r.ts = ts;
    r.value = v;
    r.unit = "Cel";
    return r;
}

std::vector<topic_filter> parsed(std::initializer_list<const char*> filters) {
    std::vector<topic_filter> v;
    for (const char* f : filters) v.push_back(*topic_filter::parse(f));
    return v;
}

selector_ptr selecting(std::initializer_list<const char*> filters) {
    return std::make_shared<const reading_selector>(parsed(filters));
}

// The filters within the read grant of a token for `granted`.
selector_ptr selecting_within(std::initializer_list<const char*> filters, std::initializer_list<const char*> granted) {
    return std::make_shared<const reading_selector>(parsed(filters),
                                                    std::make_shared<const grant>(parsed(granted), "", 0));
}

// Records what the hub delivers (called on the publishing thread in these tests).
struct recording_subscriber : subscriber {
    std::vector<std::int64_t> ids;
    std::vector<std::pair<std::string, bool>> statuses;
    std::vector<std::int64_t> newest;
    int deliveries = 0;
    int shutdowns = 0;
    void on_delivery(const delivery& d) override {
        ++deliveries;
        if (d.readings)
            for (const auto& l : *d.readings) ids.push_back(l->r.id);
        if (d.statuses)
            for (const auto& s : *d.statuses) statuses.emplace_back(s->sensor, s->online);
        newest.push_back(d.newest);
    }
    void on_shutdown() override { ++shutdowns; }
};

std::string sensors_body(hub& h) { return http::sensors_representation(h.series(), *grant::everything(), "sensors")->body; }

// A stored series as storage reports it at start-up, with one field set by `set`.
template <typename F>
std::vector<storage::series_info> stored(std::string sensor, std::string metric, F&& set) {
    storage::series_info si;
    si.sensor = std::move(sensor);
    si.metric = std::move(metric);
    set(si);
    return {si};
}

}  // namespace

TEST_CASE("hub - latest is the greatest ts and its tag ignores late readings") {
    hub h("sensors", 100);
    h.publish({make(1, "a", "t", 1000, 20.0)});
    const auto first = http::latest_representation(h.series(), "a", "t");
    REQUIRE(first);
    h.publish({make(2, "a", "t", 500, 19.0)});  // late: older ts
    const auto second = http::latest_representation(h.series(), "a", "t");
    CHECK(second->etag == first->etag);
    CHECK(second->body.find("\"id\":1") != std::string::npos);
    h.publish({make(3, "a", "t", 2000, 21.0)});
    CHECK(http::latest_representation(h.series(), "a", "t")->etag != first->etag);
    CHECK(!http::latest_representation(h.series(), "a", "missing"));
}

TEST_CASE("hub - sensors list counts readings and median interval and presence") {
    hub h("sensors", 100);
    h.publish({}, {{"a", true}});
    for (int i = 0; i < 5; ++i) h.publish({make(i + 1, "a", "t", 1000 + i * 250, 20.0)});
    const auto rep = http::sensors_representation(h.series(), *grant::everything(), "sensors");
    CHECK(rep->body.find("\"count\":5") != std::string::npos);
    CHECK(rep->body.find("\"interval_ms\":250") != std::string::npos);
    CHECK(rep->body.find("\"online\":true") != std::string::npos);
    CHECK(http::sensors_representation(h.series(), *grant::everything(), "sensors")->etag == rep->etag);  // unchanged state, same tag
    h.publish({}, {{"a", false}});
    CHECK(http::sensors_representation(h.series(), *grant::everything(), "sensors")->etag != rep->etag);
}

TEST_CASE("hub - a parked poll wakes only for matching readings, once") {
    hub h("sensors", 100);
    h.publish({make(1, "a", "t", 1000, 20.0)});
    auto w = std::make_shared<recording_subscriber>();
    std::vector<live_ptr> out;
    std::int64_t reached = 0;
    bool attached = false;
    REQUIRE(h.read_and_attach(1, selecting({"sensors/+/humidity"}), 100, w, true, out, reached, attached));
    CHECK(attached);
    CHECK(h.parked() == 1);
    h.publish({make(2, "a", "t", 1100, 20.0)}, {{"a", true}});
    CHECK(w->deliveries == 0);  // neither the reading nor presence is for it
    h.publish({make(3, "b", "humidity", 1100, 40.0), make(4, "c", "humidity", 1100, 41.0)});
    CHECK(w->ids == std::vector<std::int64_t>{3, 4});
    CHECK(h.parked() == 0);
    CHECK(!h.unsubscribe(w.get()));  // already completed: the hub, not the caller, answered
    h.publish({make(5, "c", "humidity", 1200, 41.0)});
    CHECK(w->deliveries == 1);
}

TEST_CASE("hub - a window read stops at the limit, and says when storage is needed") {
    hub h("sensors", 3);
    for (int i = 1; i <= 5; ++i) h.publish({make(i, "a", "t", 1000 + i, 20.0)});
    CHECK(h.window().floor() == 2);
    std::vector<live_ptr> out;
    std::int64_t reached = 0;
    const auto all = selecting({"#"});
    CHECK(!h.window().read(1, INT64_MAX, *all, 2, out, reached));
    REQUIRE(h.window().read(2, INT64_MAX, *all, 2, out, reached));
    REQUIRE(out.size() == 2);
    CHECK(out[0]->r.id == 3);
    CHECK(reached == 4);  // cut by the limit: resume after the last one taken
    out.clear();
    REQUIRE(h.window().read(2, 4, *selecting({"sensors/b/#"}), 10, out, reached));
    CHECK(out.empty());
    CHECK(reached == 4);  // bounded by `upto`, everything up to it looked at
}

TEST_CASE("hub - a read that does not reach the newest reading does not attach") {
    hub h("sensors", 100);
    h.publish({make(1, "a", "t", 1000, 20.0), make(2, "b", "t", 1000, 20.0)});
    auto sub = std::make_shared<recording_subscriber>();
    std::vector<live_ptr> out;
    std::int64_t reached = 0;
    bool attached = false;
    REQUIRE(h.read_and_attach(0, selecting({"#"}), 1, sub, false, out, reached, attached));
    CHECK(!attached);
    CHECK(reached == 1);
    out.clear();
    REQUIRE(h.read_and_attach(reached, selecting({"#"}), 10, sub, false, out, reached, attached));
    CHECK(attached);
    REQUIRE(out.size() == 1);
    CHECK(out[0]->r.id == 2);
    h.publish({make(3, "a", "t", 1001, 20.0)});
    h.publish({make(4, "a", "t", 1002, 20.0)});
    CHECK(sub->ids == std::vector<std::int64_t>{3, 4});
    CHECK(h.streams() == 1);
    CHECK(h.unsubscribe(sub.get()));
    h.publish({make(5, "a", "t", 1003, 20.0)});
    CHECK(sub->ids.size() == 2);
    CHECK(h.streams() == 0);
}

TEST_CASE("hub - a commit reaches only the subscribers whose filters match, each reading once") {
    hub h("sensors", 100);
    auto exact = std::make_shared<recording_subscriber>();
    auto plus = std::make_shared<recording_subscriber>();
    auto hash = std::make_shared<recording_subscriber>();
    auto overlapping = std::make_shared<recording_subscriber>();
    auto other = std::make_shared<recording_subscriber>();
    h.subscribe(exact, selecting({"sensors/a/t"}));
    h.subscribe(plus, selecting({"sensors/+/t"}));
    h.subscribe(hash, selecting({"#"}));
    h.subscribe(overlapping, selecting({"sensors/a/#", "sensors/+/t", "sensors/a/t"}));
    h.subscribe(other, selecting({"sensors/zzz/t", "elsewhere/#"}));
    h.publish({make(1, "a", "t", 1, 1.0), make(2, "b", "t", 1, 1.0), make(3, "a", "h", 1, 1.0)});
    CHECK(exact->ids == std::vector<std::int64_t>{1});
    CHECK(plus->ids == std::vector<std::int64_t>{1, 2});
    CHECK(hash->ids == std::vector<std::int64_t>{1, 2, 3});
    CHECK(overlapping->ids == std::vector<std::int64_t>{1, 2, 3});
    CHECK(other->deliveries == 0);
    CHECK(exact->newest == std::vector<std::int64_t>{3});
    // Changing a subscriber's filters re-indexes it; the old filter no longer matches.
    h.subscribe(exact, selecting({"sensors/b/t"}));
    h.publish({make(4, "a", "t", 2, 1.0), make(5, "b", "t", 2, 1.0)});
    CHECK(exact->ids == std::vector<std::int64_t>{1, 5});
}

TEST_CASE("hub - presence reaches only the streams whose filters can match the sensor") {
    hub h("sensors", 100);
    auto a = std::make_shared<recording_subscriber>();
    auto any_temperature = std::make_shared<recording_subscriber>();
    auto all = std::make_shared<recording_subscriber>();
    auto b_only = std::make_shared<recording_subscriber>();
    auto none = std::make_shared<recording_subscriber>();
    h.subscribe(a, selecting({"sensors/a/temperature"}));
    h.subscribe(any_temperature, selecting({"sensors/+/temperature"}));
    h.subscribe(all, selecting({"sensors/#"}));
    h.subscribe(b_only, selecting({"sensors/b/+"}));
    h.subscribe(none, selecting({}));  // a WebSocket before its first subscription
    h.publish({}, {{"a", true}, {"b", false}, {"c", true}});
    CHECK(a->statuses == std::vector<std::pair<std::string, bool>>{{"a", true}});
    CHECK(any_temperature->statuses.size() == 3);
    CHECK(all->statuses.size() == 3);
    CHECK(b_only->statuses == std::vector<std::pair<std::string, bool>>{{"b", false}});
    CHECK(none->deliveries == 0);
}

TEST_CASE("hub - the registry forgets unsubscribed filters and destroyed subscribers") {
    hub h("sensors", 100);
    for (int i = 0; i < 1000; ++i) {
        auto s = std::make_shared<recording_subscriber>();
        h.subscribe(s, selecting({("sensors/s" + std::to_string(i) + "/t").c_str()}));
        if (i % 2) h.unsubscribe(s.get());
    }
    // The even ones were destroyed without unsubscribing: the next commit that hits them drops them.
    CHECK(h.streams() == 500);
    std::vector<reading> batch;
    for (int i = 0; i < 1000; ++i) batch.push_back(make(i + 1, "s" + std::to_string(i), "t", 1, 1.0));
    h.publish(batch);
    CHECK(h.streams() == 0);
}

TEST_CASE("hub - retention lowers counts and changes the series version") {
    hub h("sensors", 10);
    h.publish({make(1, "a", "t", 1000, 20.0), make(2, "a", "t", 2000, 20.0)});
    const auto v1 = h.series().version("a", "t");
    storage::retention_result r;
    r.deleted = 1;
    r.retired_max_id = 1;
    r.deleted_per_series[{"a", "t"}] = 1;
    r.retired_per_series[{"a", "t"}] = 1;
    h.retention_applied(r, 1500);
    CHECK(!(h.series().version("a", "t") == v1));
    CHECK(sensors_body(h).find("\"count\":1") != std::string::npos);
    CHECK(h.deleted_after(0, *selecting({"#"})));
    CHECK_FALSE(h.deleted_after(1, *selecting({"#"})));
    std::vector<live_ptr> out;
    std::int64_t reached = 0;
    REQUIRE(h.window().read(0, INT64_MAX, *selecting({"#"}), 10, out, reached));
    REQUIRE(out.size() == 1);  // what storage no longer has, memory does not replay
    CHECK(out[0]->r.id == 2);
}

TEST_CASE("hub - a reset is due only where a selected series lost a reading after the cursor") {
    hub h("site/sensors", 10);
    h.publish({make(1, "x", "t", 1000, 1.0), make(2, "y", "t", 1000, 1.0), make(3, "x", "t", 10, 1.0),
               make(4, "y", "t", 2000, 1.0)});
    storage::retention_result r;
    r.deleted = 2;
    r.retired_max_id = 3;
    r.deleted_per_series[{"x", "t"}] = 2;
    r.retired_per_series[{"x", "t"}] = 3;  // reading 3, dated long ago, went with reading 1
    h.retention_applied(r, 1500);
    CHECK(h.deleted_after(2, *selecting({"site/sensors/x/#"})));
    CHECK(h.deleted_after(2, *selecting({"site/sensors/#"})));
    CHECK(h.deleted_after(2, *selecting({"site/sensors/y/t", "+/+/+/t"})));
    CHECK_FALSE(h.deleted_after(2, *selecting({"site/sensors/y/#"})));  // y lost nothing
    CHECK_FALSE(h.deleted_after(3, *selecting({"#"})));                 // nothing after 3 went
    CHECK_FALSE(h.deleted_after(0, *selecting({"sensors/x/t"})));       // another prefix
    // Within a read grant: a series the grant does not cover resets no one, whatever the filters.
    CHECK_FALSE(h.deleted_after(2, *selecting_within({"#"}, {"site/sensors/y/#"})));
    CHECK_FALSE(h.deleted_after(2, *selecting_within({"site/sensors/x/#"}, {"site/sensors/y/#"})));
    CHECK(h.deleted_after(2, *selecting_within({"#"}, {"site/sensors/x/t"})));

    // At start-up: per series from storage, and what a schema 1 database deleted for all series.
    hub loaded("sensors", 10);
    loaded.load(stored("x", "t", [](auto& si) { si.retired_max_id = 7; }), 9, {}, 9, 4);
    CHECK(loaded.deleted_after(3, *selecting({"sensors/y/t"})));  // below the unattributed 4
    CHECK_FALSE(loaded.deleted_after(4, *selecting({"sensors/y/t"})));
    CHECK(loaded.deleted_after(6, *selecting({"sensors/x/t"})));
    CHECK_FALSE(loaded.deleted_after(7, *selecting({"sensors/x/t"})));
}

TEST_CASE("hub - seq gaps are counted per series, a seq back at 0 or 1 is a restart, others are late") {
    hub h("sensors", 100);
    std::vector<reading> batch;
    std::int64_t id = 0;
    const auto add = [&](std::string sensor, std::optional<std::int64_t> seq) {
        ++id;
        auto r = make(id, std::move(sensor), "t", 1000 + id, 1.0);
        r.seq = seq;
        batch.push_back(std::move(r));
    };
    for (std::int64_t q : {5, 6, 9, 1, 2, 4, 3, 3, 7}) add("a", q);  // gaps: 7-8, 3, 5-6
    add("b", std::nullopt);
    add("b", 10);
    add("b", std::nullopt);
    add("b", 12);  // 11
    add("c", 0);
    add("c", 0);
    const auto gaps = h.publish(batch);
    REQUIRE(gaps.size() == 4);
    CHECK(gaps[0].sensor == "a");
    CHECK(gaps[0].after_seq == 6);
    CHECK(gaps[0].seq == 9);
    CHECK(gaps[0].missing() == 2);
    CHECK(gaps[1].missing() == 1);
    CHECK(gaps[2].after_seq == 4);
    CHECK(gaps[2].missing() == 2);
    CHECK(gaps[3].sensor == "b");
    CHECK(gaps[3].missing() == 1);
    const std::string body = sensors_body(h);
    CHECK(body.find("\"sensor\":\"a\",\"metric\":\"t\",\"unit\":\"Cel\",\"online\":null,\"count\":9,"
                    "\"interval_ms\":1,\"seq_gaps\":5,") != std::string::npos);
    CHECK(body.find("\"seq_gaps\":1,") != std::string::npos);
    CHECK(body.find("\"seq_gaps\":0,") != std::string::npos);
    // The next batch continues from the last seq, and so does a table loaded at start-up.
    CHECK(h.publish({[&] { auto r = make(++id, "a", "t", 2000, 1.0); r.seq = 9; return r; }()}).at(0).missing() == 1);
    hub loaded("sensors", 10);
    loaded.load(stored("a", "t", [](auto& si) { si.last_seq = 9; }), 20, {}, 20, 0);
    auto r = make(21, "a", "t", 3000, 1.0);
    r.seq = 12;
    CHECK(loaded.publish({r}).at(0).missing() == 2);
}

TEST_CASE("hub - shutdown reaches every subscriber and empties the registry") {
    hub h("sensors", 2);
    auto sub = std::make_shared<recording_subscriber>();
    auto poll = std::make_shared<recording_subscriber>();
    h.subscribe(sub, selecting({"#"}));
    std::vector<live_ptr> out;
    std::int64_t reached = 0;
    bool attached = false;
    REQUIRE(h.read_and_attach(0, selecting({"#"}), 10, poll, true, out, reached, attached));
    CHECK(attached);
    h.release_all();
    CHECK(sub->shutdowns == 1);
    CHECK(poll->shutdowns == 1);
    CHECK(h.streams() == 0);
    CHECK(h.parked() == 0);
}

TEST_CASE("hub - the deliveries of one commit are bracketed for the batching, once per commit that reaches anyone") {
    // Logs the order of begin, deliveries and end on the publishing thread.
    struct log_batching : delivery_batching {
        std::vector<std::string>* log;
        void begin_commit() override { log->push_back("begin"); }
        void end_commit() override { log->push_back("end"); }
    };
    struct logging_subscriber : recording_subscriber {
        std::vector<std::string>* log;
        void on_delivery(const delivery& d) override {
            log->push_back("deliver");
            recording_subscriber::on_delivery(d);
        }
    };
    std::vector<std::string> log;
    hub h("sensors", 100);
    log_batching b;
    b.log = &log;
    h.set_batching(&b);
    auto a = std::make_shared<logging_subscriber>();
    auto c = std::make_shared<logging_subscriber>();
    a->log = c->log = &log;
    h.subscribe(a, selecting({"sensors/a/#"}));
    h.subscribe(c, selecting({"#"}));
    h.publish({make(1, "a", "t", 1, 1.0), make(2, "b", "t", 1, 1.0)});
    CHECK(log == std::vector<std::string>{"begin", "deliver", "deliver", "end"});
    log.clear();
    h.unsubscribe(c.get());
    h.publish({make(3, "b", "t", 2, 1.0)});  // selected by nobody: nothing to bracket
    CHECK(log.empty());
    h.publish({make(4, "a", "t", 2, 1.0)});
    CHECK(log == std::vector<std::string>{"begin", "deliver", "end"});
    CHECK(a->ids == std::vector<std::int64_t>{1, 4});
    CHECK(c->ids == std::vector<std::int64_t>{1, 2});
}
