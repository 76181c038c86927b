// Topic names and subscription filters: topic_filter::parse, parse_client_filter (the bounds
// every transport applies), matches, matches_child_of, overlaps, and parse_topic. Properties:
// a filter's levels rebuild its text; overlapping is symmetric; a topic a filter matches
// overlaps it as a filter; a filter that matches parent/X matches a child of parent.
//
// Input: line 1 a filter, line 2 a second filter, line 3 a topic name.
#include "core/payload.hpp"
#include "core/topic_filter.hpp"
#include "fuzz_common.hpp"

#include <string>

using namespace telemetry;
using namespace telemetry::bridge;

namespace {

std::string join(const std::vector<std::string>& levels) {
    std::string s;
    for (std::size_t i = 0; i < levels.size(); ++i) {
        if (i) s += '/';
        s += levels[i];
    }
    return s;
}

bool has_wildcard(std::string_view t) { return t.find_first_of("+#") != std::string_view::npos; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto parts = fuzz::split_lines(fuzz::as_text(data, size), 3);
    const std::string_view a_text = parts[0];
    const std::string_view b_text = parts.size() > 1 ? parts[1] : std::string_view("sensors/+/temperature");
    const std::string_view topic = parts.size() > 2 ? parts[2] : a_text;

    const auto a = topic_filter::parse(a_text);
    const auto b = topic_filter::parse(b_text);
    std::string why;
    const auto bounded = parse_client_filter(a_text, 256, 8, why);
    FUZZ_CHECK(bounded.has_value() == why.empty());
    if (bounded) FUZZ_CHECK(a.has_value() && a_text.size() <= 256);

    if (a) {
        FUZZ_CHECK(!a->levels().empty() && join(a->levels()) == a_text && a->str() == a_text);
        const bool m = a->matches(topic);
        if (b) FUZZ_CHECK(a->overlaps(*b) == b->overlaps(*a));
        if (b && b->matches(topic) && m && !has_wildcard(topic) && topic.front() != '$') {
            // Both match the same topic: they overlap.
            FUZZ_CHECK(a->overlaps(*b));
        }
        if (m && !has_wildcard(topic)) {
            FUZZ_CHECK(!topic.empty());
            if (auto t = topic_filter::parse(topic)) FUZZ_CHECK(a->overlaps(*t) && t->matches(topic));
            // A matched topic with a parent: the filter matches a child of that parent.
            if (const auto slash = topic.rfind('/'); slash != std::string_view::npos && slash > 0)
                FUZZ_CHECK(a->matches_child_of(topic.substr(0, slash)));
        }
        (void)a->matches_child_of(topic);
        FUZZ_CHECK(a->matches(std::string_view{}) == false);
    }

    // The ingest side of topics: "{prefix}/{sensor}/{metric}", and the topic rebuilt from it.
    for (std::string_view prefix : {"sensors", "site/a/sensors"}) {
        if (auto tp = parse_topic(prefix, topic)) {
            FUZZ_CHECK(valid_name(tp->sensor) && valid_name(tp->metric));
            FUZZ_CHECK(std::string(prefix) + "/" + tp->sensor + "/" + tp->metric == topic);
        }
    }
    if (auto tp = parse_topic("", topic)) FUZZ_CHECK(tp->sensor + "/" + tp->metric == topic);
    return 0;
}
