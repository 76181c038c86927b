// The series table: summaries, presence and versions of every series.
#include "live/series_table.hpp"

#include <algorithm>

namespace telemetry::bridge {
namespace {

constexpr std::size_t recent_ts_kept = 32;

std::time_t now_seconds() { return std::time(nullptr); }

bool later_than(const reading& a, const reading& b) {
    return a.ts > b.ts || (a.ts == b.ts && a.id > b.id);
}

std::optional<std::int64_t> median_interval(const std::deque<std::int64_t>& ts) {
    std::vector<std::int64_t> d;
    for (std::size_t i = 1; i < ts.size(); ++i)
        if (ts[i] > ts[i - 1]) d.push_back(ts[i] - ts[i - 1]);
    if (d.empty()) return std::nullopt;
    auto mid = d.begin() + static_cast<std::ptrdiff_t>(d.size() / 2);
    std::nth_element(d.begin(), mid, d.end());
    return *mid;
}

}  // namespace

void series_table::changed(std::time_t now) {
    ++version_;
    changed_at_ = now;
}

void series_table::load(const std::vector<storage::series_info>& series, std::int64_t retired_unattributed) {
    const std::time_t now = now_seconds();
    std::lock_guard lock(mutex_);
    retired_unattributed_ = retired_unattributed;
    retired_max_id_ = std::max(retired_max_id_, retired_unattributed);
    for (const auto& s : series) {
        state st;
        st.unit = s.unit;
        st.online = s.online;
        st.count = s.count;
        st.latest = s.latest;
        st.latest_changed_at = now;
        st.version = {s.last_id, 0, now};
        st.recent_ts.assign(s.recent_ts.begin(), s.recent_ts.end());
        st.last_seq = s.last_seq;
        st.retired_max_id = s.retired_max_id;
        retired_max_id_ = std::max(retired_max_id_, s.retired_max_id);
        if (s.online) online_[s.sensor] = *s.online;
        series_.insert_or_assign(key{s.sensor, s.metric}, std::move(st));
    }
    changed(now);
}

std::vector<seq_gap> series_table::apply(const std::vector<live_ptr>& committed) {
    std::vector<seq_gap> gaps;
    if (committed.empty()) return gaps;
    const std::time_t now = now_seconds();
    std::lock_guard lock(mutex_);
    for (const auto& l : committed) {
        const reading& r = l->r;
        auto it = series_.find(std::pair<std::string_view, std::string_view>(r.sensor, r.metric));
        if (it == series_.end()) {
            it = series_.emplace(key{r.sensor, r.metric}, state{}).first;
            if (auto o = online_.find(r.sensor); o != online_.end()) it->second.online = o->second;
        }
        state& st = it->second;
        ++st.count;
        st.version.last_id = r.id;
        st.version.changed_at = now;
        st.recent_ts.push_back(r.ts);
        if (st.recent_ts.size() > recent_ts_kept) st.recent_ts.pop_front();
        if (r.seq && count_seq_gaps_) {
            // Both are non-negative: the difference cannot overflow.
            if (st.last_seq && *r.seq > *st.last_seq && *r.seq - *st.last_seq > 1) {
                gaps.push_back({r.sensor, r.metric, *st.last_seq, *r.seq});
                st.seq_gaps += gaps.back().missing();
            }
            if (!st.last_seq || *r.seq > *st.last_seq || *r.seq <= 1) st.last_seq = *r.seq;
        }
        if (!st.latest || later_than(r, *st.latest)) {
            st.latest = r;
            st.unit = r.unit;
            st.latest_changed_at = now;
            st.latest_derived.reset();
        }
    }
    changed(now);
    return gaps;
}

void series_table::count_seq_gaps(bool on) {
    std::lock_guard lock(mutex_);
    count_seq_gaps_ = on;
}

void series_table::set_online(const std::vector<status_ptr>& changes) {
    if (changes.empty()) return;
    std::lock_guard lock(mutex_);
    for (const auto& c : changes) {
        online_.insert_or_assign(c->sensor, c->online);
        // Every series of the sensor (contiguous in the map, ordered by sensor first).
        auto it = series_.lower_bound(std::pair<std::string_view, std::string_view>(c->sensor, ""));
        for (; it != series_.end() && it->first.first == c->sensor; ++it) it->second.online = c->online;
    }
    changed(now_seconds());
}

void series_table::retention_applied(const storage::retention_result& r) {
    if (r.deleted == 0) return;
    const std::time_t now = now_seconds();
    std::lock_guard lock(mutex_);
    for (const auto& [k, n] : r.deleted_per_series) {
        auto it = series_.find(std::pair<std::string_view, std::string_view>(k.first, k.second));
        if (it == series_.end()) continue;
        it->second.count = std::max<std::int64_t>(0, it->second.count - n);
        ++it->second.version.retention_epoch;
        it->second.version.changed_at = now;
    }
    for (const auto& [k, id] : r.retired_per_series) {
        retired_max_id_ = std::max(retired_max_id_, id);
        auto it = series_.find(std::pair<std::string_view, std::string_view>(k.first, k.second));
        if (it != series_.end()) it->second.retired_max_id = std::max(it->second.retired_max_id, id);
    }
    changed(now);
}

bool series_table::deleted_after(std::int64_t after, const reading_selector& sel, std::string_view prefix) const {
    std::lock_guard lock(mutex_);
    if (after >= retired_max_id_) return false;  // the common case: nothing deleted after it
    if (after < retired_unattributed_) return true;
    for (const auto& [k, st] : series_) {
        if (st.retired_max_id <= after) continue;
        assign_topic(topic_, prefix, k.first, k.second);
        if (sel.selects(topic_)) return true;
    }
    return false;
}

std::optional<series_version> series_table::version(std::string_view sensor, std::string_view metric) const {
    std::lock_guard lock(mutex_);
    auto it = series_.find(std::pair<std::string_view, std::string_view>(sensor, metric));
    if (it == series_.end()) return std::nullopt;
    return it->second.version;
}

std::size_t series_table::size() const {
    std::lock_guard lock(mutex_);
    return series_.size();
}

series_table::derived series_table::latest(std::string_view sensor, std::string_view metric,
                                           const std::function<derived(const reading&, std::time_t)>& make) {
    std::lock_guard lock(mutex_);
    auto it = series_.find(std::pair<std::string_view, std::string_view>(sensor, metric));
    if (it == series_.end() || !it->second.latest) return nullptr;
    state& st = it->second;
    if (!st.latest_derived) st.latest_derived = make(*st.latest, st.latest_changed_at);
    return st.latest_derived;
}

series_table::derived series_table::overview(
    const std::string& cache_key, const std::function<derived(const std::vector<series_row>&, std::time_t)>& make) {
    constexpr std::size_t max_cached = 256;
    std::lock_guard lock(mutex_);
    if (overview_version_ != version_ || overviews_.size() >= max_cached) {
        overviews_.clear();
        overview_version_ = version_;
    }
    if (auto it = overviews_.find(cache_key); it != overviews_.end()) return it->second;
    std::vector<series_row> rows;
    rows.reserve(series_.size());
    for (const auto& [k, st] : series_)
        rows.push_back({k.first, k.second, st.unit, st.online, st.count, median_interval(st.recent_ts),
                        count_seq_gaps_ ? std::optional(st.seq_gaps) : std::nullopt, st.latest ? &*st.latest : nullptr});
    auto d = make(rows, changed_at_);
    overviews_.emplace(cache_key, d);
    return d;
}

}  // namespace telemetry::bridge
