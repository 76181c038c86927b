#include "core/cursor.hpp"

#include <charconv>

namespace telemetry::bridge {

std::optional<std::uint32_t> parse_epoch(std::string_view text) {
    if (text.size() != 8) return std::nullopt;
    std::uint32_t e = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), e, 16);
    if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
    return e;
}

std::optional<wire_cursor> parse_cursor(std::string_view text) {
    const auto at = text.find('@');
    const std::string_view id = text.substr(0, at);
    // from_chars takes a leading '-' and no '+': refuse both, and empty, for a plain id.
    if (id.empty() || id.front() < '0' || id.front() > '9') return std::nullopt;
    wire_cursor c;
    const auto [end, ec] = std::from_chars(id.data(), id.data() + id.size(), c.id);
    if (ec != std::errc{} || end != id.data() + id.size()) return std::nullopt;
    if (at != std::string_view::npos) {
        c.epoch = parse_epoch(text.substr(at + 1));
        if (!c.epoch) return std::nullopt;
    }
    return c;
}

std::string epoch_text(std::uint32_t epoch) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string s(8, '0');
    for (int i = 7; i >= 0; --i, epoch >>= 4) s[static_cast<std::size_t>(i)] = digits[epoch & 0xF];
    return s;
}

void append_cursor(std::string& out, std::int64_t id, std::string_view at_epoch) {
    char buf[24];
    const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, id);
    out.append(buf, end);
    out += at_epoch;
}

}  // namespace telemetry::bridge
