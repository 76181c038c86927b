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

// Storage's answer to "did retention delete a reading after the cursor that the client selects?"
bool deleted_after(const storage::retired_after& retired, const reading_selector& sel, std::string_view prefix) {
    if (retired.unattributed) return true;
    std::string topic;
    for (const auto& [sensor, metric] : retired.series) {
        assign_topic(topic, prefix, sensor, metric);
        if (sel.selects(topic)) return true;
    }
    return false;
}
}  // namespace

std::optional<catch_up_chunk> catch_up::next(const catch_up_query& q, const boost::asio::any_io_executor& ex,
                                             std::function<void(catch_up_chunk)> done) {
    // An epoch reset names the oldest stored id, which storage knows: that step reads storage.
    const bool reset_due = q.epoch_reset || (q.check_reset && hub_.deleted_after(q.after, *q.selector));
    if (!reset_due) {
        catch_up_chunk c;
        const bool in_window =
            q.attach ? hub_.read_and_attach(q.after, q.selector, q.limit, q.attach, q.parks, c.readings,
                                            c.reached, c.attached)
                     : hub_.window().read(q.after, q.upto, *q.selector, q.limit, c.readings, c.reached);
        if (in_window) return c;
    }

    hub& h = hub_;
    const bool queued = queries_.submit([&h, q, ex, done = std::move(done)](storage::store_reader& rd) mutable {
        catch_up_chunk c;
        c.reached = q.after;
        try {
            // Read before querying: every id up to this floor was committed before the query, so
            // storage's answer covers everything up to it; newer ids are in the window.
            const std::int64_t floor = h.window().floor();
            auto rows = rd.after_id(q.after, storage_rows_per_step);
            // After the read: a deletion the read did not see is reported as well (the client got
            // those readings, the reset is only a warning), one it saw cannot go unreported.
            if (q.epoch_reset)
                c.reset = reset_notice{*q.epoch_reset, rd.oldest_id(), h.epoch_text()};
            else if (q.check_reset && deleted_after(rd.retired_since(q.after), *q.selector, h.topic_prefix()))
                c.reset = reset_notice{q.after, rd.oldest_id(), {}};
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
