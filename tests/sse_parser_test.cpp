// The shared event-stream parser against the WHATWG rules: fields, comments, line ends, BOM, ids,
// dispatch, bytes split anywhere, the size bounds, and the no-copy path stream-bench relies on.
#include "sse_parser.hpp"

#include <doctest/doctest.h>

#include <ostream>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using namespace std::string_literals;
namespace sse = telemetry::sse;

struct recorded {
    std::string type, data, id;
    bool operator==(const recorded&) const = default;
};

std::ostream& operator<<(std::ostream& os, const recorded& r) {
    return os << "{type '" << r.type << "', data '" << r.data << "', id '" << r.id << "'}";
}

// Records everything the parser reports, copying the views it is only lent.
struct recorder : sse::handler {
    bool on_event(const sse::event& ev) override {
        events.push_back({std::string(ev.type), std::string(ev.data), std::string(ev.id)});
        return events.size() < stop_after;
    }
    bool on_retry(std::chrono::milliseconds ms) override {
        retries.push_back(ms);
        return true;
    }
    bool on_comment(std::string_view text) override {
        comments.emplace_back(text);
        return true;
    }
    std::vector<recorded> events;
    std::vector<std::chrono::milliseconds> retries;
    std::vector<std::string> comments;
    std::size_t stop_after = static_cast<std::size_t>(-1);
};

std::vector<recorded> parse(std::string_view stream) {
    sse::parser p;
    recorder r;
    CHECK(p.feed(stream, r));
    return r.events;
}

// Feeds `bytes` from a buffer that is then overwritten, as a reused receive buffer is: whatever
// the parser keeps from one read must be its own copy.
bool feed_from_buffer(sse::parser& p, std::string_view bytes, recorder& r) {
    std::string buffer(bytes);
    const bool ok = p.feed(buffer, r);
    buffer.assign(buffer.size(), '#');
    return ok;
}

// The same stream fed in two pieces cut at every place, and one byte at a time, gives the same
// events as fed whole.
void check_any_split(const std::string& stream, const std::vector<recorded>& expected) {
    for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
        sse::parser p;
        recorder r;
        CHECK(feed_from_buffer(p, std::string_view(stream).substr(0, cut), r));
        CHECK(feed_from_buffer(p, std::string_view(stream).substr(cut), r));
        INFO("cut at " << cut);
        CHECK(r.events == expected);
    }
    sse::parser p;
    recorder r;
    for (const char c : stream) CHECK(feed_from_buffer(p, std::string_view(&c, 1), r));
    CHECK(r.events == expected);
}

}  // namespace

TEST_CASE("sse_parser - id, event, data and retry fields, comments, events in order") {
    sse::parser p;
    recorder r;
    CHECK(p.feed("retry: 2000\n\nid: 7\nevent: reading\ndata: {\"id\":7}\n\n: heartbeat\n\n"
                 "event: status\ndata: {\"sensor\":\"a\",\"online\":true}\n\n",
                 r));
    REQUIRE(r.events.size() == 2);
    CHECK(r.events[0] == recorded{"reading", "{\"id\":7}", "7"});
    // The last event ID outlives its event, as EventSource's lastEventId does.
    CHECK(r.events[1] == recorded{"status", "{\"sensor\":\"a\",\"online\":true}", "7"});
    CHECK(r.retries == std::vector{2000ms});
    CHECK(p.retry() == 2000ms);
    CHECK(r.comments == std::vector{" heartbeat"s});
    CHECK(p.last_event_id() == "7");
}

TEST_CASE("sse_parser - the standard's own examples") {
    // Multi-line data joins with LF; a missing event type is "message".
    CHECK(parse("data: YHOO\ndata: +2\ndata: 10\n\n") == std::vector<recorded>{{"message", "YHOO\n+2\n10", ""}});
    // One space after the colon is dropped, not two; "id" alone empties the last event ID.
    CHECK(parse(": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n") ==
          std::vector<recorded>{{"message", "first event", "1"}, {"message", "second event", ""},
                                {"message", " third event", ""}});
    // "data" without a colon is a data line with an empty value; a block cut off by the end of the
    // stream is never dispatched.
    CHECK(parse("data\n\ndata\ndata\n\ndata:") == std::vector<recorded>{{"message", "", ""}, {"message", "\n", ""}});
    CHECK(parse("data:test\n\ndata: test\n\n") == std::vector<recorded>{{"message", "test", ""}, {"message", "test", ""}});
}

TEST_CASE("sse_parser - CR, LF and CRLF line ends, split anywhere, also between CR and LF") {
    const std::string stream = "id: 1\r\nevent: reading\r\ndata: a\r\ndata: b\r\n\r\nid: 2\rdata: c\r\r"
                               "data: d\n: x\r\n\n";
    const std::vector<recorded> expected{{"reading", "a\nb", "1"}, {"message", "c", "2"}, {"message", "d", "2"}};
    CHECK(parse(stream) == expected);
    check_any_split(stream, expected);
}

TEST_CASE("sse_parser - a block dispatches only on a blank line and only with data") {
    sse::parser p;
    recorder r;
    CHECK(p.feed("event: reading\nid: 3\ndata: x", r));
    CHECK(r.events.empty());  // the data line is not complete yet
    CHECK(p.feed("\n", r));
    CHECK(r.events.empty());  // the block is not complete yet
    CHECK(p.last_event_id().empty());
    CHECK(p.feed("\n", r));
    CHECK(r.events == std::vector<recorded>{{"reading", "x", "3"}});
    // An id alone is no event but still becomes the last event ID (what a reconnect resumes from);
    // an event type alone is forgotten with its block.
    CHECK(p.feed("id: 9\n\nevent: status\n\ndata: y\n\n", r));
    CHECK(p.last_event_id() == "9");
    REQUIRE(r.events.size() == 2);
    CHECK(r.events[1] == recorded{"message", "y", "9"});
    // Fields are case-sensitive; unknown ones are ignored; "event:" empty means "message".
    CHECK(parse("Data: no\nfoo: bar\nevent:\ndata: yes\n\n") == std::vector<recorded>{{"message", "yes", ""}});
}

TEST_CASE("sse_parser - an id containing NUL is ignored") {
    const auto ev = parse("id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\n"s);
    REQUIRE(ev.size() == 2);
    CHECK(ev[1].id == "1");
}

TEST_CASE("sse_parser - retry takes ASCII digits only") {
    sse::parser p;
    recorder r;
    CHECK(p.feed("retry: soon\n\nretry: -5\nretry: +5\nretry: 5s\nretry:\nretry: 99999999999999999999999\n\n", r));
    CHECK(r.retries.empty());
    CHECK(!p.retry());
    CHECK(p.feed("retry: 500\nretry:0\n\n", r));
    CHECK(r.retries == std::vector{500ms, 0ms});
    CHECK(p.retry() == 0ms);
    CHECK(r.events.empty());
}

TEST_CASE("sse_parser - one leading BOM is dropped, also when split, and any other is data") {
    const std::string bom = "\xEF\xBB\xBF";
    const std::vector<recorded> expected{{"message", "a", ""}, {"message", bom + "b", ""}};
    check_any_split(bom + "data: a\n\ndata: " + bom + "b\n\n", expected);
    // A second BOM at the start is not dropped: "\xEF\xBB\xBFdata" is an unknown field.
    CHECK(parse(bom + bom + "data: a\n\ndata: b\n\n") == std::vector<recorded>{{"message", "b", ""}});
    // The first bytes of a BOM that does not complete belong to the first line.
    CHECK(parse("\xEF\xBB" "data: a\n\n\xEF" "data: b\n\ndata: c\n\n") == std::vector<recorded>{{"message", "c", ""}});
}

TEST_CASE("sse_parser - lines and events longer than the limits end the stream") {
    const sse::limits small{64, 100};
    SUBCASE("a line within one read") {
        sse::parser p(small);
        recorder r;
        CHECK(p.feed("data: " + std::string(58, 'x') + "\n\n", r));  // 64 bytes: at the limit
        CHECK(!p.feed("data: " + std::string(59, 'x') + "\n\n", r));
        CHECK(p.overflowed());
        CHECK(r.events.size() == 1);
    }
    SUBCASE("a line that never ends, in small reads: held no longer than the limit") {
        sse::parser p(small);
        recorder r;
        bool ok = true;
        for (int i = 0; i < 100 && ok; ++i) ok = p.feed("xxxxxxxxxx", r);
        CHECK(!ok);
        CHECK(p.overflowed());
    }
    SUBCASE("many short data lines in one event") {
        sse::parser p(small);
        recorder r;
        std::string lines;
        for (int i = 0; i < 10; ++i) lines += "data: 123456789\n";  // 10 x 9 + 9 LFs = 99 bytes
        CHECK(p.feed(lines + "\n", r));
        REQUIRE(r.events.size() == 1);
        CHECK(r.events[0].data.size() == 99);
        CHECK(!p.feed(lines + "data: 12\n\n", r));  // 102 bytes
        CHECK(p.overflowed());
    }
    // Once broken, a stream stays broken until reset: the caller reconnects.
    sse::parser p(small);
    recorder r;
    CHECK(!p.feed(std::string(65, 'x') + "\n", r));
    CHECK(!p.feed("data: a\n\n", r));
    CHECK(r.events.empty());
    p.reset();
    CHECK(p.feed("data: a\n\n", r));
    CHECK(r.events.size() == 1);
}

TEST_CASE("sse_parser - a handler that returns false stops the read at once") {
    sse::parser p;
    recorder r;
    r.stop_after = 1;
    CHECK(!p.feed("data: a\n\ndata: b\n\n", r));
    CHECK(r.events.size() == 1);
    CHECK(!p.overflowed());
}

TEST_CASE("sse_parser - reset starts a new stream that remembers the last event ID it is given") {
    sse::parser p;
    recorder r;
    CHECK(p.feed("retry: 5\nid: 4\ndata: half", r));
    p.reset("41");
    CHECK(!p.retry());
    CHECK(p.last_event_id() == "41");
    CHECK(p.feed("\xEF\xBB\xBF" "data: a\n\n", r));
    CHECK(r.events == std::vector<recorded>{{"message", "a", "41"}});
}

TEST_CASE("sse_parser - an event within one read is lent without a copy, one across reads is kept") {
    sse::parser p;
    struct : sse::handler {
        bool on_event(const sse::event& ev) override {
            views.push_back(ev.data);
            types.push_back(ev.type);
            data.emplace_back(ev.data);
            return true;
        }
        std::vector<std::string_view> views, types;
        std::vector<std::string> data;
    } h;
    const std::string first = "id: 1\nevent: reading\ndata: whole\n\nid: 2\ndata: spl";
    const std::string second = "it\n\n";
    CHECK(p.feed(first, h));
    REQUIRE(h.views.size() == 1);
    // stream-bench's fast path: the data and the type are where the bytes were read.
    CHECK(h.views[0].data() == first.data() + first.find("whole"));
    CHECK(h.types[0].data() == first.data() + first.find("reading"));
    CHECK(p.feed(second, h));
    CHECK(h.data == std::vector<std::string>{"whole", "split"});
    // A data line that straddles reads, then one within the read, then the blank line in the next.
    CHECK(p.feed("data: a", h));
    CHECK(p.feed("b\ndata: c\n", h));
    CHECK(p.feed("\n", h));
    CHECK(h.data.back() == "ab\nc");
}
