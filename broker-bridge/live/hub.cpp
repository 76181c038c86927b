// The live state: commits go to the window, the series table and the registry, in that order.
#include "live/hub.hpp"

#include "core/cursor.hpp"

namespace telemetry::bridge {

hub::hub(std::string topic_prefix, std::size_t window) : prefix_(std::move(topic_prefix)), window_(window) {}

void hub::load(const std::vector<storage::series_info>& series, std::int64_t max_id,
               std::vector<reading> tail, std::int64_t tail_after, std::int64_t retired_unattributed) {
    std::vector<live_ptr> live;
    live.reserve(tail.size());
    for (auto& r : tail) live.push_back(make_live(std::move(r)));
    series_.load(series, retired_unattributed);
    window_.load(std::move(live), tail_after, max_id);
}

void hub::set_epoch(std::uint32_t epoch) {
    epoch_ = epoch;
    epoch_text_ = telemetry::bridge::epoch_text(epoch);
    at_epoch_ = "@" + epoch_text_;
}

std::vector<seq_gap> hub::publish(const std::vector<reading>& committed, const std::vector<status_event>& statuses) {
    if (committed.empty() && statuses.empty()) return {};
    auto live = std::make_shared<std::vector<live_ptr>>();
    live->reserve(committed.size());
    for (const auto& r : committed) live->push_back(make_live(r));
    status_batch changes;
    if (!statuses.empty()) {
        auto v = std::make_shared<std::vector<status_ptr>>();
        for (const auto& s : statuses) v->push_back(std::make_shared<const status_event>(s));
        changes = std::move(v);
    }
    // The summaries first, so a client that sees a reading also finds its series.
    auto gaps = series_.apply(*live);
    if (changes) series_.set_online(*changes);

    std::vector<subscriber_registry::match> matches;
    {
        std::lock_guard lock(dispatch_mutex_);
        window_.append(*live);
        const reading_batch batch = live->empty() ? nullptr : reading_batch(std::move(live));
        matches = registry_.match_commit(batch, changes, prefix_, window_.newest());
    }
    struct batch_scope {  // ends the batch however on_delivery leaves
        delivery_batching* b;
        explicit batch_scope(delivery_batching* x) : b(x) { if (b) b->begin_commit(); }
        ~batch_scope() { if (b) b->end_commit(); }
    } scope(matches.empty() ? nullptr : batching_);
    for (auto& m : matches) m.target->on_delivery(m.what);
    return gaps;
}

void hub::retention_applied(const storage::retention_result& r, std::int64_t cutoff_ms) {
    if (r.deleted == 0) return;
    // The series first: a catch-up that finds the readings gone from the window is due a reset.
    series_.retention_applied(r);
    window_.retention_applied(cutoff_ms);
}

void hub::release_all() {
    std::vector<std::shared_ptr<subscriber>> all;
    {
        std::lock_guard lock(dispatch_mutex_);
        all = registry_.take_all();
    }
    for (auto& s : all) s->on_shutdown();
}

bool hub::read_and_attach(std::int64_t after, const selector_ptr& sel, std::size_t limit,
                          const std::shared_ptr<subscriber>& s, bool only_if_empty,
                          std::vector<live_ptr>& out, std::int64_t& reached, bool& attached) {
    attached = false;
    std::lock_guard lock(dispatch_mutex_);
    const std::size_t before = out.size();
    if (!window_.read(after, INT64_MAX, *sel, limit, out, reached)) return false;
    // No commit can slip in between: publish() appends and matches under the same lock.
    if (reached >= window_.newest() && (!only_if_empty || out.size() == before)) {
        registry_.set(s, sel, only_if_empty);
        attached = true;
    }
    return true;
}

std::int64_t hub::subscribe(const std::shared_ptr<subscriber>& s, selector_ptr sel) {
    std::lock_guard lock(dispatch_mutex_);
    registry_.set(s, std::move(sel));
    return window_.newest();
}

bool hub::unsubscribe(const subscriber* s) {
    std::lock_guard lock(dispatch_mutex_);
    return registry_.remove(s);
}

std::size_t hub::streams() const {
    std::lock_guard lock(dispatch_mutex_);
    return registry_.streams();
}

std::size_t hub::parked() const {
    std::lock_guard lock(dispatch_mutex_);
    return registry_.one_shots();
}

}  // namespace telemetry::bridge
