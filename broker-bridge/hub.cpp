// The one piece of shared live state: newest committed id, per-series summaries, a bounded window
// of recent readings, and the parked long polls waiting for them.
#include "hub.hpp"

#include "http/conditional.hpp"
#include "reading_json.hpp"

#include <algorithm>
#include <charconv>

namespace telemetry::bridge {
namespace {

constexpr std::size_t recent_ts_kept = 32;

std::time_t now_seconds() { return std::time(nullptr); }


bool later_than(const reading& a, const reading& b) {
    return a.ts > b.ts || (a.ts == b.ts && a.id > b.id);
}

}  // namespace

hub::hub(std::string topic_prefix, std::size_t window)
    : prefix_(std::move(topic_prefix)), window_(std::max<std::size_t>(window, 1)) {}

live_ptr hub::make_live(reading r) const {
    auto l = std::make_shared<live_reading>();
    l->topic.reserve(prefix_.size() + r.sensor.size() + r.metric.size() + 2);
    l->topic.append(prefix_).append("/").append(r.sensor).append("/").append(r.metric);
    l->json = reading_json(r);
    l->ws_json.reserve(l->json.size() + 14);
    l->ws_json.append("{\"op\":\"reading\",").append(l->json, 1, std::string::npos);
    l->r = std::move(r);
    return l;
}

void hub::load(const std::vector<storage::series_info>& series, std::int64_t max_id,
               std::vector<reading> tail, std::int64_t tail_after, std::int64_t retired_max_id) {
    std::vector<live_ptr> live;
    live.reserve(tail.size());
    for (auto& r : tail) live.push_back(make_live(std::move(r)));

    const std::time_t now = now_seconds();
    std::lock_guard lock(mutex_);
    for (const auto& s : series) {
        series_state st;
        st.unit = s.unit;
        st.online = s.online;
        st.count = s.count;
        st.latest = s.latest;
        st.latest_changed_at = now;
        st.version = {s.last_id, 0, now};
        st.recent_ts.assign(s.recent_ts.begin(), s.recent_ts.end());
        if (s.online) online_[s.sensor] = *s.online;
        series_.emplace(series_key{s.sensor, s.metric}, std::move(st));
    }
    newest_ = max_id;
    floor_ = tail_after;
    retired_max_id_ = retired_max_id;
    recent_.assign(live.begin(), live.end());
    while (recent_.size() > window_) {
        floor_ = recent_.front()->r.id;
        recent_.pop_front();
    }
    changed_at_ = now;
    ++version_;
}

void hub::publish(const std::vector<reading>& committed) {
    if (committed.empty()) return;
    std::vector<live_ptr> live;
    live.reserve(committed.size());
    for (const auto& r : committed) live.push_back(make_live(r));

    std::vector<std::pair<std::shared_ptr<poll_waiter>, poll_result>> completed;
    std::vector<std::shared_ptr<stream_subscriber>> subscribers;
    {
        const std::time_t now = now_seconds();
        std::lock_guard lock(mutex_);
        for (const auto& l : live) {
            const reading& r = l->r;
            auto it = series_.find(std::pair<std::string_view, std::string_view>(r.sensor, r.metric));
            if (it == series_.end()) {
                it = series_.emplace(series_key{r.sensor, r.metric}, series_state{}).first;
                if (auto o = online_.find(r.sensor); o != online_.end()) it->second.online = o->second;
            }
            series_state& st = it->second;
            ++st.count;
            st.version.last_id = r.id;
            st.version.changed_at = now;
            st.recent_ts.push_back(r.ts);
            if (st.recent_ts.size() > recent_ts_kept) st.recent_ts.pop_front();
            if (!st.latest || later_than(r, *st.latest)) {
                st.latest = r;
                st.unit = r.unit;
                st.latest_changed_at = now;
                st.latest_repr.reset();
            }
            recent_.push_back(l);
            newest_ = std::max(newest_, r.id);
        }
        while (recent_.size() > window_) {
            floor_ = recent_.front()->r.id;
            recent_.pop_front();
        }
        ++version_;
        changed_at_ = now;

        // Complete every parked poll that this batch satisfies; the rest stay parked.
        std::erase_if(waiters_, [&](const std::shared_ptr<poll_waiter>& w) {
            poll_result res;
            for (const auto& l : live) {
                if (!matches_any(w->filters, l->topic)) continue;
                res.readings.push_back(l);
                if (res.readings.size() >= w->limit) break;
            }
            if (res.readings.empty()) return false;
            res.cursor = res.readings.size() >= w->limit ? res.readings.back()->r.id : newest_;
            completed.emplace_back(w, std::move(res));
            return true;
        });
        collect_streams(subscribers);
    }
    for (auto& [w, res] : completed) w->done(std::move(res));
    if (!subscribers.empty()) {
        // One immutable batch shared by every stream.
        const auto batch = std::make_shared<const std::vector<live_ptr>>(std::move(live));
        for (const auto& sub : subscribers) sub->on_readings(batch);
    }
}

void hub::collect_streams(std::vector<std::shared_ptr<stream_subscriber>>& out) {
    // remove_if applies the predicate exactly once per element, in order.
    std::erase_if(streams_, [&out](const std::weak_ptr<stream_subscriber>& w) {
        auto s = w.lock();
        if (!s) return true;
        out.push_back(std::move(s));
        return false;
    });
}

hub::attach_outcome hub::attach(std::int64_t after, const std::vector<topic_filter>& filters,
                                const std::shared_ptr<stream_subscriber>& s,
                                std::vector<live_ptr>& replay, std::size_t max_replay) {
    std::lock_guard lock(mutex_);
    if (after < floor_) return attach_outcome::need_storage;
    auto it = std::upper_bound(recent_.begin(), recent_.end(), after,
                               [](std::int64_t id, const live_ptr& l) { return id < l->r.id; });
    for (; it != recent_.end(); ++it) {
        if (!matches_any(filters, (*it)->topic)) continue;
        if (replay.size() >= max_replay) return attach_outcome::more;
        replay.push_back(*it);
    }
    streams_.push_back(s);
    return attach_outcome::attached;
}

std::int64_t hub::register_stream(const std::shared_ptr<stream_subscriber>& s) {
    std::lock_guard lock(mutex_);
    streams_.push_back(s);
    return newest_;
}

bool hub::window_range(std::int64_t after, std::int64_t upto, const topic_filter& filter,
                       std::size_t limit, std::vector<live_ptr>& out) const {
    std::lock_guard lock(mutex_);
    if (after < floor_) return false;
    auto it = std::upper_bound(recent_.begin(), recent_.end(), after,
                               [](std::int64_t id, const live_ptr& l) { return id < l->r.id; });
    for (; it != recent_.end() && (*it)->r.id <= upto && out.size() < limit; ++it)
        if (filter.matches((*it)->topic)) out.push_back(*it);
    return true;
}

void hub::detach(const stream_subscriber* s) {
    std::lock_guard lock(mutex_);
    std::erase_if(streams_, [s](const std::weak_ptr<stream_subscriber>& w) {
        auto p = w.lock();
        return !p || p.get() == s;
    });
}

std::size_t hub::streams() const {
    std::lock_guard lock(mutex_);
    return streams_.size();
}

void hub::set_online(std::string_view sensor, bool online) {
    std::vector<std::shared_ptr<stream_subscriber>> subscribers;
    {
        std::lock_guard lock(mutex_);
        online_.insert_or_assign(std::string(sensor), online);
        // Every series of the sensor (they are contiguous in the map, ordered by sensor first).
        auto it = series_.lower_bound(std::pair<std::string_view, std::string_view>(sensor, ""));
        for (; it != series_.end() && it->first.first == sensor; ++it) it->second.online = online;
        ++version_;
        changed_at_ = now_seconds();
        collect_streams(subscribers);
    }
    const std::string name(sensor);
    for (const auto& sub : subscribers) sub->on_status(name, online);
}

std::int64_t hub::retired_max_id() const {
    std::lock_guard lock(mutex_);
    return retired_max_id_;
}

void hub::retention_applied(const storage::retention_result& r, std::int64_t cutoff_ms) {
    if (r.deleted == 0) return;
    const std::time_t now = now_seconds();
    std::lock_guard lock(mutex_);
    retired_max_id_ = std::max(retired_max_id_, r.retired_max_id);
    // What storage no longer has, memory must not replay either.
    std::erase_if(recent_, [cutoff_ms](const live_ptr& l) { return l->r.ts < cutoff_ms; });
    for (const auto& [key, n] : r.deleted_per_series) {
        auto it = series_.find(std::pair<std::string_view, std::string_view>(key.first, key.second));
        if (it == series_.end()) continue;
        it->second.count = std::max<std::int64_t>(0, it->second.count - n);
        ++it->second.version.retention_epoch;
        it->second.version.changed_at = now;
    }
    ++version_;
    changed_at_ = now;
}

std::int64_t hub::newest_id() const {
    std::lock_guard lock(mutex_);
    return newest_;
}

std::size_t hub::series_count() const {
    std::lock_guard lock(mutex_);
    return series_.size();
}

std::size_t hub::parked() const {
    std::lock_guard lock(mutex_);
    return waiters_.size();
}

std::int64_t hub::window_floor() const {
    std::lock_guard lock(mutex_);
    return floor_;
}

hub::series_state* hub::find(std::string_view sensor, std::string_view metric) {
    auto it = series_.find(std::pair<std::string_view, std::string_view>(sensor, metric));
    return it == series_.end() ? nullptr : &it->second;
}

const hub::series_state* hub::find(std::string_view sensor, std::string_view metric) const {
    auto it = series_.find(std::pair<std::string_view, std::string_view>(sensor, metric));
    return it == series_.end() ? nullptr : &it->second;
}

std::shared_ptr<const representation> hub::latest(std::string_view sensor, std::string_view metric) {
    std::lock_guard lock(mutex_);
    series_state* st = find(sensor, metric);
    if (!st || !st->latest) return nullptr;
    if (!st->latest_repr) {
        auto rep = std::make_shared<representation>();
        rep->body = reading_json(*st->latest);
        rep->etag = http::strong_etag(rep->body);
        rep->last_modified = st->latest_changed_at;
        rep->not_modified_http11 =
            std::make_shared<const std::string>(http::http11_not_modified(rep->etag, rep->last_modified));
        st->latest_repr = std::move(rep);
    }
    return st->latest_repr;
}

std::optional<std::int64_t> hub::median_interval(const std::deque<std::int64_t>& ts) {
    std::vector<std::int64_t> d;
    for (std::size_t i = 1; i < ts.size(); ++i)
        if (ts[i] > ts[i - 1]) d.push_back(ts[i] - ts[i - 1]);
    if (d.empty()) return std::nullopt;
    auto mid = d.begin() + static_cast<std::ptrdiff_t>(d.size() / 2);
    std::nth_element(d.begin(), mid, d.end());
    return *mid;
}

std::shared_ptr<const representation> hub::sensors() {
    std::lock_guard lock(mutex_);
    if (sensors_repr_ && sensors_repr_version_ == version_) return sensors_repr_;
    auto rep = std::make_shared<representation>();
    std::string& out = rep->body;
    out.reserve(64 + series_.size() * 256);
    out += "{\"series\":[";
    bool first = true;
    for (const auto& [key, st] : series_) {
        if (!first) out.push_back(',');
        first = false;
        out += "{\"sensor\":";
        append_json_string(out, key.first);
        out += ",\"metric\":";
        append_json_string(out, key.second);
        out += ",\"unit\":";
        if (st.unit.empty()) out += "null"; else append_json_string(out, st.unit);
        out += ",\"online\":";
        out += !st.online ? "null" : (*st.online ? "true" : "false");
        out += ",\"count\":";
        append_int(out, st.count);
        out += ",\"interval_ms\":";
        if (auto m = median_interval(st.recent_ts)) append_int(out, *m); else out += "null";
        out += ",\"latest\":";
        if (st.latest) append_reading_json(out, *st.latest); else out += "null";
        out.push_back('}');
    }
    out += "]}";
    rep->etag = http::strong_etag(rep->body);
    rep->last_modified = changed_at_;
    sensors_repr_ = rep;
    sensors_repr_version_ = version_;
    return rep;
}

std::optional<series_version> hub::version(std::string_view sensor, std::string_view metric) const {
    std::lock_guard lock(mutex_);
    const series_state* st = find(sensor, metric);
    if (!st) return std::nullopt;
    return st->version;
}

void hub::scan_window(std::int64_t after, const poll_waiter& w, poll_result& out) const {
    auto it = std::upper_bound(recent_.begin(), recent_.end(), after,
                               [](std::int64_t id, const live_ptr& l) { return id < l->r.id; });
    for (; it != recent_.end(); ++it) {
        if (!matches_any(w.filters, (*it)->topic)) continue;
        out.readings.push_back(*it);
        if (out.readings.size() >= w.limit) break;
    }
    // Truncated by the limit: resume after the last one sent. Otherwise everything up to the
    // newest id has been looked at, so the client may skip past it.
    out.cursor = !out.readings.empty() && out.readings.size() >= w.limit ? out.readings.back()->r.id
                                                                         : newest_;
}

hub::poll_outcome hub::poll(std::int64_t after, const std::shared_ptr<poll_waiter>& w,
                            poll_result& out) {
    std::lock_guard lock(mutex_);
    if (after < floor_) return poll_outcome::need_storage;
    out.readings.clear();
    scan_window(after, *w, out);
    if (!out.readings.empty()) return poll_outcome::ready;
    waiters_.push_back(w);
    return poll_outcome::parked;
}

std::optional<std::int64_t> hub::cancel(const std::shared_ptr<poll_waiter>& w) {
    std::lock_guard lock(mutex_);
    auto it = std::find(waiters_.begin(), waiters_.end(), w);
    if (it == waiters_.end()) return std::nullopt;
    waiters_.erase(it);
    return newest_;
}

void hub::release_all() {
    std::vector<std::shared_ptr<poll_waiter>> waiters;
    std::vector<std::shared_ptr<stream_subscriber>> subscribers;
    std::int64_t newest = 0;
    {
        std::lock_guard lock(mutex_);
        waiters.swap(waiters_);
        newest = newest_;
        collect_streams(subscribers);
        streams_.clear();
    }
    for (auto& w : waiters) w->done(poll_result{newest, {}});
    for (auto& sub : subscribers) sub->on_shutdown();
}

}  // namespace telemetry::bridge
