// bridge-cli's event-stream parser: events split across reads, line endings, comments, retry.
#include "sse_reader.hpp"

#include <doctest/doctest.h>

using telemetry::cli::sse_reader;

TEST_CASE("sse_reader - events with id, type and data, in order") {
    sse_reader r;
    const auto ev = r.feed("retry: 2000\n\nid: 7\nevent: reading\ndata: {\"id\":7}\n\n: heartbeat\n\n"
                           "event: status\ndata: {\"sensor\":\"a\",\"online\":true}\n\n");
    REQUIRE(ev.size() == 2);
    CHECK(ev[0].id == std::optional<std::string>("7"));
    CHECK(ev[0].event == "reading");
    CHECK(ev[0].data == "{\"id\":7}");
    CHECK(!ev[1].id);
    CHECK(ev[1].event == "status");
    CHECK(r.retry() == std::chrono::milliseconds(2000));
}

TEST_CASE("sse_reader - bytes split anywhere, CRLF and CR line ends, multi-line data") {
    const std::string stream = "id: 1\r\nevent: reading\r\ndata: a\r\ndata: b\r\n\r\nid: 2\rdata: c\r\r";
    for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
        sse_reader r;
        auto ev = r.feed(stream.substr(0, cut));
        auto rest = r.feed(stream.substr(cut));
        ev.insert(ev.end(), rest.begin(), rest.end());
        INFO("cut at " << cut);
        REQUIRE(ev.size() == 2);
        CHECK(ev[0].data == "a\nb");
        CHECK(ev[0].id == std::optional<std::string>("1"));
        CHECK(ev[1].event == "message");
        CHECK(ev[1].data == "c");
    }
}

TEST_CASE("sse_reader - a block without data is no event; a bad retry is ignored") {
    sse_reader r;
    CHECK(r.feed("event: reading\n\nretry: soon\n\nretry: 500\n\n").empty());
    CHECK(r.retry() == std::chrono::milliseconds(500));
}
