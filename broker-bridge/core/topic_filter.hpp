// MQTT topic filters (`+`, `#`), validated and matched against reading topics.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace telemetry::bridge {

// A validated MQTT topic filter (MQTT 3.1.1 section 4.7). Immutable; safe to share across threads.
class topic_filter {
public:
    // nullopt if `text` is not a valid filter: empty, longer than 65535, a `#` that is not the
    // whole last level, a `+` that is not a whole level, or a NUL character.
    static std::optional<topic_filter> parse(std::string_view text);

    // True if `topic` (a concrete topic name, no wildcards) matches. Per MQTT, `#` also matches the
    // parent level ("a/#" matches "a"), and wildcards at the first level do not match topics that
    // begin with '$'.
    bool matches(std::string_view topic) const noexcept;
    // True if some topic `parent/X` (X one more level) matches: the filter can select readings
    // of a sensor whose topics are `parent/<metric>`, so it wants that sensor's presence.
    bool matches_child_of(std::string_view parent) const noexcept;
    // True if some topic is matched by both filters (`a/+` and `+/b` overlap on `a/b`).
    bool overlaps(const topic_filter& other) const noexcept;
    const std::vector<std::string>& levels() const noexcept { return levels_; }

    const std::string& str() const noexcept { return text_; }

private:
    std::string text_;
    std::vector<std::string> levels_;
};

// A filter a client sent, within the bounds the configuration sets (bytes, levels), or the reason
// it is refused (for the client's error message).
std::optional<topic_filter> parse_client_filter(std::string_view text, std::size_t max_bytes,
                                                std::size_t max_levels, std::string& why);

// A client's list of filters (HTTP `topic` parameters, a gRPC SubscribeRequest's topics): none
// means `#`; at most `max_filters`, each within parse_client_filter's bounds. Fills `out`, or
// returns the reason the list is refused.
std::string parse_client_filters(const std::vector<std::string>& given, std::size_t max_filters,
                                 std::size_t max_bytes, std::size_t max_levels, std::vector<topic_filter>& out);

// True if any of the filters matches (an empty list matches nothing).
bool matches_any(const std::vector<topic_filter>& filters, std::string_view topic) noexcept;

}  // namespace telemetry::bridge
