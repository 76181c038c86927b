// The opaque `next` cursor of history pages, shared by the storage engines so that a cursor means
// the same on either. Private to the storage library.
#pragma once

#include "store.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace telemetry::storage::detail {

// A place in a series' (ts, id) order: the last row of the previous page.
struct position {
    std::int64_t ts, id;
};

std::string encode_cursor(const history_query& q, std::int64_t ts, std::int64_t id);
// Throws std::invalid_argument when `c` was not produced for this series and order.
position decode_cursor(const history_query& q, std::string_view c);
// Where the page starts: after the cursor's row, or before the first row of the order.
position start_position(const history_query& q);
// Rows on one page: the query's limit, capped so that no request asks for an unbounded page.
constexpr std::size_t page_limit(const history_query& q) noexcept {
    return q.limit < 1'000'000 ? q.limit : 1'000'000;
}

}  // namespace telemetry::storage::detail
