// MQTT topic filters: validation once at parse time, allocation-free matching on the hot path.
#include "core/topic_filter.hpp"

#include <algorithm>

namespace telemetry::bridge {

namespace {

constexpr std::size_t max_filter_length = 65535;  // MQTT strings carry a 16-bit length

// Walks the levels of a topic name without allocating: "a//b" is "a", "", "b".
class level_cursor {
public:
    explicit level_cursor(std::string_view topic) noexcept : rest_(topic) {}

    bool done() const noexcept { return done_; }

    std::string_view next() noexcept {
        const auto slash = rest_.find('/');
        if (slash == std::string_view::npos) {
            done_ = true;
            return rest_;
        }
        const std::string_view level = rest_.substr(0, slash);
        rest_.remove_prefix(slash + 1);
        return level;
    }

private:
    std::string_view rest_;
    bool done_ = false;
};

}  // namespace

std::optional<topic_filter> topic_filter::parse(std::string_view text) {
    if (text.empty() || text.size() > max_filter_length) return std::nullopt;
    if (text.find('\0') != std::string_view::npos) return std::nullopt;

    topic_filter f;
    f.text_ = std::string(text);
    level_cursor cursor(text);
    while (!cursor.done()) {
        const std::string_view level = cursor.next();
        const bool has_hash = level.find('#') != std::string_view::npos;
        const bool has_plus = level.find('+') != std::string_view::npos;
        if (has_hash && (level != "#" || !cursor.done())) return std::nullopt;
        if (has_plus && level != "+") return std::nullopt;
        f.levels_.emplace_back(level);
    }
    return f;
}

bool topic_filter::matches(std::string_view topic) const noexcept {
    if (topic.empty() || levels_.empty()) return false;  // levels_ is empty only if default-built
    // MQTT 4.7.2: "$SYS/..." and the like are invisible to filters that start with a wildcard.
    if (topic.front() == '$' && (levels_.front() == "+" || levels_.front() == "#")) return false;

    level_cursor cursor(topic);
    for (const std::string& level : levels_) {
        // '#' is last by construction and also matches the parent level ("a/#" matches "a").
        if (level == "#") return true;
        if (cursor.done()) return false;
        const std::string_view name = cursor.next();
        if (level != "+" && level != name) return false;
    }
    return cursor.done();
}

bool topic_filter::matches_child_of(std::string_view parent) const noexcept {
    if (parent.empty() || levels_.empty()) return false;
    if (parent.front() == '$' && (levels_.front() == "+" || levels_.front() == "#")) return false;
    level_cursor cursor(parent);
    std::size_t i = 0;
    for (; i < levels_.size() && !cursor.done(); ++i) {
        if (levels_[i] == "#") return true;
        const std::string_view name = cursor.next();
        if (levels_[i] != "+" && levels_[i] != name) return false;
    }
    // Every level of `parent` matched: exactly one more level must follow (any name, `+` or `#`),
    // or one more and a last `#`, which also matches its parent level ("a/b/#" matches "a/b").
    return cursor.done() && (i + 1 == levels_.size() || (i < levels_.size() && levels_[i] == "#") ||
                             (i + 2 == levels_.size() && levels_[i + 1] == "#"));
}

bool topic_filter::overlaps(const topic_filter& other) const noexcept {
    const auto& a = levels_;
    const auto& b = other.levels_;
    if (a.empty() || b.empty()) return false;
    const std::size_t n = std::min(a.size(), b.size());
    for (std::size_t i = 0; i < n; ++i) {
        if (a[i] == "#" || b[i] == "#") return true;
        if (a[i] != "+" && b[i] != "+" && a[i] != b[i]) return false;
    }
    if (a.size() == b.size()) return true;
    // The longer one must end right here in `#`, which also matches its parent level.
    const auto& longer = a.size() > b.size() ? a : b;
    return longer.size() == n + 1 && longer[n] == "#";
}

std::optional<topic_filter> parse_client_filter(std::string_view text, std::size_t max_bytes,
                                                std::size_t max_levels, std::string& why) {
    if (text.size() > max_bytes) {
        why = "topic filters are at most " + std::to_string(max_bytes) + " bytes";
        return std::nullopt;
    }
    if (static_cast<std::size_t>(std::count(text.begin(), text.end(), '/')) + 1 > max_levels) {
        why = "topic filters have at most " + std::to_string(max_levels) + " levels";
        return std::nullopt;
    }
    auto f = topic_filter::parse(text);
    if (!f) why.assign(1, '\'').append(text).append("' is not a valid MQTT topic filter");
    return f;
}

std::string parse_client_filters(const std::vector<std::string>& given, std::size_t max_filters,
                                 std::size_t max_bytes, std::size_t max_levels, std::vector<topic_filter>& out) {
    if (given.size() > max_filters) return "too many topic filters (at most " + std::to_string(max_filters) + ")";
    if (given.empty()) {
        out.push_back(*topic_filter::parse("#"));
        return {};
    }
    for (const auto& t : given) {
        std::string why;
        auto f = parse_client_filter(t, max_bytes, max_levels, why);
        if (!f) return "topic: " + why;
        out.push_back(std::move(*f));
    }
    return {};
}

bool matches_any(const std::vector<topic_filter>& filters, std::string_view topic) noexcept {
    return std::any_of(filters.begin(), filters.end(), [topic](const topic_filter& f) { return f.matches(topic); });
}

}  // namespace telemetry::bridge
