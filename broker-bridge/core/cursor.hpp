// Cursors on the wire (docs/api.md section 2.1): `N@E`, a reading id and the store's epoch, so
// that a cursor from other data (a re-created or restored database) is told apart instead of
// silently skipping the readings whose ids that data hands out again. A bare `N` stays valid and
// means the current epoch.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace telemetry::bridge {

struct wire_cursor {
    std::int64_t id = 0;
    std::optional<std::uint32_t> epoch;  // absent: a bare id (the current epoch)
};

// `N` or `N@E` with N a non-negative decimal integer and E eight hexadecimal digits (the bridge
// writes them lowercase; either case is read). nullopt for anything else.
std::optional<wire_cursor> parse_cursor(std::string_view text);
// An epoch alone, as WebSocket and gRPC clients pass it beside a numeric `after`.
std::optional<std::uint32_t> parse_epoch(std::string_view text);

// Eight lowercase hexadecimal digits.
std::string epoch_text(std::uint32_t epoch);
// `N@E` into `out`, where `at_epoch` is "@" + epoch_text(epoch).
void append_cursor(std::string& out, std::int64_t id, std::string_view at_epoch);

}  // namespace telemetry::bridge
