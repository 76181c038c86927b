// The one catch-up path: window first, storage when the cursor is older than the window.
#include "pipeline/catch_up.hpp"

#include "pipeline/query_pool.hpp"

#include <boost/asio/post.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>

namespace telemetry::bridge {
namespace {
// Rows read from storage per step: the selected ones are at most the query's limit.
constexpr std::size_t storage_rows_per_step = 1000;
}  // namespace

std::optional<catch_up_chunk> catch_up::next(const catch_up_query& q, const boost::asio::any_io_executor& ex,
                                             std::function<void(catch_up_chunk)> done) {
    const bool reset_due = q.check_reset && q.after < hub_.retired_max_id();
    if (!reset_due) {
        catch_up_chunk c;
        const bool in_window =
            q.attach ? hub_.read_and_attach(q.after, q.selector, q.limit, q.attach, q.parks, c.readings,
                                            c.reached, c.attached)
                     : hub_.window().read(q.after, q.upto, *q.selector, q.limit, c.readings, c.reached);
        if (in_window) return c;
    }

    hub& h = hub_;
    const bool queued = queries_.submit([&h, q, ex, done = std::move(done)](storage::reader& rd) mutable {
        catch_up_chunk c;
        c.reached = q.after;
        try {
            // Read before querying: every id up to this floor was committed before the query, so
            // storage's answer covers everything up to it; newer ids are in the window.
            const std::int64_t floor = h.window().floor();
            if (q.check_reset && q.after < rd.retired_max_id()) c.reset = reset_notice{q.after, rd.oldest_id()};
            auto rows = rd.after_id(q.after, storage_rows_per_step);
            bool cut = false;
            for (auto& r : rows) {
                if (r.id > q.upto) {
                    c.reached = q.upto;
                    cut = true;
                    break;
                }
                if (c.readings.size() >= q.limit) {
                    cut = true;  // the rest in the next step; `reached` is the last id looked at
                    break;
                }
                c.reached = r.id;
                auto l = h.make_live(std::move(r));
                if (q.selector->selects(l->topic)) c.readings.push_back(std::move(l));
            }
            if (!cut && rows.size() < storage_rows_per_step)
                c.reached = std::max(c.reached, std::min(floor, q.upto));
        } catch (const std::exception& e) {
            spdlog::error("catch-up: reading storage failed: {}", e.what());
            c = catch_up_chunk{};
            c.result = catch_up_chunk::outcome::failed;
        }
        boost::asio::post(ex, [done = std::move(done), c = std::move(c)]() mutable { done(std::move(c)); });
    });
    if (queued) return std::nullopt;
    catch_up_chunk busy;
    busy.result = catch_up_chunk::outcome::busy;
    return busy;
}

}  // namespace telemetry::bridge
