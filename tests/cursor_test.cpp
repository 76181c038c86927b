// Cursors on the wire (docs/api.md 2.1): what parses, what is refused, and the resume point a
// cursor gives against the hub's epoch.
#include "core/cursor.hpp"
#include "live/hub.hpp"

#include <doctest/doctest.h>

using namespace telemetry::bridge;

TEST_CASE("cursor - parsing") {
    auto c = parse_cursor("1043");
    REQUIRE(c);
    CHECK(c->id == 1043);
    CHECK(!c->epoch);
    c = parse_cursor("1043@9f3a01c2");
    REQUIRE(c);
    CHECK(c->id == 1043);
    CHECK(c->epoch == 0x9f3a01c2u);
    c = parse_cursor("0@00000000");
    REQUIRE(c);
    CHECK(c->epoch == 0u);
    CHECK(parse_cursor("9223372036854775807@FFFFFFFF")->epoch == 0xffffffffu);
    for (const char* bad : {"", "@", "-1", "+1", " 1", "1 ", "1@", "@00c0ffee", "1@123456789", "1@xyz",
                            "1@0x1f", "1@-1", "1@0", "1@c0ffee", "1@+0c0ffee", "1@ c0ffee0", "1.5", "9223372036854775808", "1@@2", "1@2@3"}) {
        CAPTURE(bad);
        CHECK(!parse_cursor(bad));
    }
}

TEST_CASE("cursor - written as id@epoch, read back") {
    CHECK(epoch_text(0x00c0ffee) == "00c0ffee");
    CHECK(epoch_text(0) == "00000000");
    std::string s;
    append_cursor(s, 1043, "@9f3a01c2");
    CHECK(s == "1043@9f3a01c2");
    const auto c = parse_cursor(s);
    REQUIRE(c);
    CHECK(c->id == 1043);
    CHECK(c->epoch == 0x9f3a01c2u);
}

TEST_CASE("cursor - another epoch resumes from the start with a reset") {
    hub h("sensors", 16);
    h.set_epoch(0x9f3a01c2);
    CHECK(h.at_epoch() == "@9f3a01c2");
    auto at = h.resume_from({1043, {}});  // a bare id: the current epoch
    CHECK(at.after == 1043);
    CHECK(!at.epoch_reset);
    at = h.resume_from({1043, 0x9f3a01c2u});
    CHECK(at.after == 1043);
    CHECK(!at.epoch_reset);
    at = h.resume_from({1043, 0x12345678u});
    CHECK(at.after == 0);
    CHECK(at.epoch_reset == 1043);
}
