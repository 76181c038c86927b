// Unit tests of the hub: series summaries, cached representations, the window and parked polls.
#include "hub.hpp"

#include <doctest/doctest.h>

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

std::shared_ptr<poll_waiter> waiter(const std::string& filter, std::vector<poll_result>& sink,
                                    std::size_t limit = 100) {
    auto w = std::make_shared<poll_waiter>();
    w->filters.push_back(*topic_filter::parse(filter));
    w->limit = limit;
    w->done = [&sink](poll_result r) { sink.push_back(std::move(r)); };
    return w;
}

}  // namespace

TEST_CASE("hub - latest is the greatest ts and its tag ignores late readings") {
    hub h("sensors", 100);
    h.publish({make(1, "a", "t", 1000, 20.0)});
    const auto first = h.latest("a", "t");
    REQUIRE(first);
    h.publish({make(2, "a", "t", 500, 19.0)});  // late: older ts
    const auto second = h.latest("a", "t");
    CHECK(second->etag == first->etag);
    CHECK(second->body.find("\"id\":1") != std::string::npos);
    h.publish({make(3, "a", "t", 2000, 21.0)});
    CHECK(h.latest("a", "t")->etag != first->etag);
    CHECK(!h.latest("a", "missing"));
}

TEST_CASE("hub - sensors list counts readings and median interval and presence") {
    hub h("sensors", 100);
    h.set_online("a", true);
    for (int i = 0; i < 5; ++i) h.publish({make(i + 1, "a", "t", 1000 + i * 250, 20.0)});
    const auto rep = h.sensors();
    CHECK(rep->body.find("\"count\":5") != std::string::npos);
    CHECK(rep->body.find("\"interval_ms\":250") != std::string::npos);
    CHECK(rep->body.find("\"online\":true") != std::string::npos);
    CHECK(h.sensors()->etag == rep->etag);  // unchanged state, same tag
    h.set_online("a", false);
    CHECK(h.sensors()->etag != rep->etag);
}

TEST_CASE("hub - a parked poll wakes only for matching readings") {
    hub h("sensors", 100);
    h.publish({make(1, "a", "t", 1000, 20.0)});
    std::vector<poll_result> done;
    auto w = waiter("sensors/+/humidity", done);
    poll_result out;
    REQUIRE(h.poll(1, w, out) == hub::poll_outcome::parked);
    CHECK(h.parked() == 1);
    h.publish({make(2, "a", "t", 1100, 20.0)});
    CHECK(done.empty());
    h.publish({make(3, "b", "humidity", 1100, 40.0), make(4, "c", "humidity", 1100, 41.0)});
    REQUIRE(done.size() == 1);
    CHECK(done[0].readings.size() == 2);
    CHECK(done[0].cursor == 4);
    CHECK(h.parked() == 0);
    CHECK(!h.cancel(w));  // already completed: the hub, not the caller, answered
}

TEST_CASE("hub - poll answers from the window and asks for storage below it") {
    hub h("sensors", 3);
    for (int i = 1; i <= 5; ++i) h.publish({make(i, "a", "t", 1000 + i, 20.0)});
    CHECK(h.window_floor() == 2);
    std::vector<poll_result> done;
    auto w = waiter("#", done, 2);
    poll_result out;
    CHECK(h.poll(1, w, out) == hub::poll_outcome::need_storage);
    REQUIRE(h.poll(2, w, out) == hub::poll_outcome::ready);
    CHECK(out.readings.size() == 2);
    CHECK(out.readings[0]->r.id == 3);
    CHECK(out.cursor == 4);  // truncated by the limit: resume after the last one sent
    REQUIRE(h.poll(5, w, out) == hub::poll_outcome::parked);
    const auto newest = h.cancel(w);
    REQUIRE(newest);
    CHECK(*newest == 5);
}

TEST_CASE("hub - retention lowers counts and changes the series version") {
    hub h("sensors", 10);
    h.publish({make(1, "a", "t", 1000, 20.0), make(2, "a", "t", 2000, 20.0)});
    const auto v1 = h.version("a", "t");
    storage::retention_result r;
    r.deleted = 1;
    r.deleted_per_series[{"a", "t"}] = 1;
    h.retention_applied(r, 1500);
    CHECK(!(h.version("a", "t") == v1));
    CHECK(h.sensors()->body.find("\"count\":1") != std::string::npos);
}

namespace {
struct recording_subscriber : stream_subscriber {
    std::vector<std::int64_t> ids;
    std::vector<std::pair<std::string, bool>> statuses;
    int shutdowns = 0;
    void on_readings(const std::shared_ptr<const std::vector<live_ptr>>& batch) override {
        for (const auto& l : *batch) ids.push_back(l->r.id);
    }
    void on_status(const std::string& sensor, bool online) override { statuses.emplace_back(sensor, online); }
    void on_shutdown() override { ++shutdowns; }
};
}  // namespace

TEST_CASE("hub - an attached stream gets the window replay then every later batch once") {
    hub h("sensors", 100);
    h.publish({make(1, "a", "t", 1000, 20.0), make(2, "b", "t", 1000, 20.0)});
    auto sub = std::make_shared<recording_subscriber>();
    std::vector<live_ptr> replay;
    const std::vector<topic_filter> all{*topic_filter::parse("#")};
    CHECK(h.attach(0, all, sub, replay, 1) == hub::attach_outcome::more);
    REQUIRE(replay.size() == 1);
    replay.clear();
    REQUIRE(h.attach(0, all, sub, replay, 10) == hub::attach_outcome::attached);
    REQUIRE(replay.size() == 2);
    CHECK(replay[0]->r.id == 1);
    // Several batches and status changes in a row all reach it (the list of streams survives).
    h.publish({make(3, "a", "t", 1001, 20.0)});
    h.set_online("a", false);
    h.publish({make(4, "a", "t", 1002, 20.0)});
    h.set_online("a", true);
    CHECK(sub->ids == std::vector<std::int64_t>{3, 4});
    CHECK(sub->statuses.size() == 2);
    CHECK(h.streams() == 1);
    h.detach(sub.get());
    h.publish({make(5, "a", "t", 1003, 20.0)});
    CHECK(sub->ids.size() == 2);
    CHECK(h.streams() == 0);
}

TEST_CASE("hub - a stream below the window must replay from storage and shutdown reaches streams") {
    hub h("sensors", 2);
    for (int i = 1; i <= 4; ++i) h.publish({make(i, "a", "t", 1000 + i, 20.0)});
    auto sub = std::make_shared<recording_subscriber>();
    std::vector<live_ptr> replay;
    const std::vector<topic_filter> all{*topic_filter::parse("#")};
    CHECK(h.attach(1, all, sub, replay, 10) == hub::attach_outcome::need_storage);
    REQUIRE(h.attach(2, all, sub, replay, 10) == hub::attach_outcome::attached);
    CHECK(replay.size() == 2);
    h.release_all();
    CHECK(sub->shutdowns == 1);
    CHECK(h.streams() == 0);
}
