// Live aggregates of one subscription: the per-series state machine and its wire forms.
#include "core/bucket_aggregator.hpp"

#include "core/text.hpp"

#include <algorithm>

namespace telemetry::bridge {

void bucket_values::add(double v) noexcept {
    min = count == 0 ? v : std::min(min, v);
    max = count == 0 ? v : std::max(max, v);
    sum += v;
    ++count;
}

std::int64_t bucket_aggregator::bucket_of(std::int64_t ts) const noexcept {
    // Aligned to multiples of the width since the epoch, as /aggregate's buckets (floor, also
    // below zero). Widths are at most 31 days, so the product cannot overflow.
    const std::int64_t w = spec_.width_ms;
    std::int64_t q = ts / w;
    if (ts % w != 0 && ts < 0) --q;
    return q * w;
}

bool bucket_aggregator::add(const live_ptr& l, const storage::bucket_seed* seed, std::vector<bucket_event>& out) {
    const std::int64_t t = bucket_of(l->r.ts);
    auto it = series_.find(l->topic);
    if (it == series_.end()) {
        // First reading of the series here: what storage holds before it decides which bucket
        // is open and what it holds (the subscription may start in the middle of a bucket).
        if (!seed) return false;
        series_state s;
        s.name = l;
        if (seed->newest_ts) {
            s.has_open = true;
            s.open_t = bucket_of(*seed->newest_ts);
            s.open = bucket_values::from(seed->newest);
            s.settled_upto = s.open_t;
        }
        const std::string_view key = s.name->topic;
        it = series_.emplace(key, std::move(s)).first;
    }
    auto& s = it->second;
    const double v = l->r.value;
    if (s.has_open && t == s.open_t) {
        s.open.add(v);
    } else if (!s.has_open || t > s.open_t) {
        // A reading of a later bucket closes the open one.
        if (s.has_open) {
            out.push_back({bucket_event::kind::closed, l->r.id, s.name, s.open_t, s.open});
            s.settled_upto = std::max(s.settled_upto, s.open_t);
        }
        s.has_open = true;
        s.open_t = t;
        s.open = {};
        s.open.add(v);
    } else {
        // Late: a closed bucket changes. Above settled_upto nothing was in it before this reading
        // (anything earlier would have opened or corrected it); otherwise storage knows.
        bucket_values b;
        if (t <= s.settled_upto) {
            if (!seed) return false;
            b = bucket_values::from(seed->at);
        }
        b.add(v);
        out.push_back({bucket_event::kind::corrected, l->r.id, s.name, t, b});
        s.settled_upto = std::max(s.settled_upto, t);
        return true;
    }
    if (spec_.provisional && !s.dirty) {
        s.dirty = true;
        dirty_.push_back(&s);  // stable: unordered_map never moves its elements
    }
    return true;
}

void bucket_aggregator::take_provisional(std::int64_t id, std::vector<bucket_event>& out) {
    for (auto* s : dirty_) {
        s->dirty = false;
        out.push_back({bucket_event::kind::provisional, id, s->name, s->open_t, s->open});
    }
    dirty_.clear();
}

void append_bucket_json(std::string& out, const bucket_event& e) {
    const auto& r = e.series->r;
    out += "{\"sensor\":";
    append_json_string(out, r.sensor);
    out += ",\"metric\":";
    append_json_string(out, r.metric);
    out += ",\"t\":";
    append_int(out, e.t);
    out += ",\"count\":";
    append_int(out, e.values.count);
    out += ",\"min\":";
    append_double(out, e.values.min);
    out += ",\"max\":";
    append_double(out, e.values.max);
    out += ",\"avg\":";
    append_double(out, e.values.sum / static_cast<double>(e.values.count));
    out += ",\"final\":";
    out += e.what == bucket_event::kind::provisional ? "false" : "true";
    out += ",\"correction\":";
    out += e.what == bucket_event::kind::corrected ? "true" : "false";
    out += '}';
}

std::optional<std::int64_t> live_bucket_width(std::string_view text) noexcept {
    const auto w = parse_duration_ms(text);
    if (!w || *w < min_live_bucket_ms || *w > max_live_bucket_ms) return std::nullopt;
    return w;
}

void append_sse_bucket(std::string& out, const bucket_event& e, std::string_view at_epoch) {
    out += "id: ";
    append_int(out, e.id);
    out += at_epoch;
    out += "\nevent: bucket\ndata: ";
    append_bucket_json(out, e);
    out += "\n\n";
}

std::string ws_bucket_message(std::string_view topic, const bucket_event& e) {
    std::string m = "{\"op\":\"bucket\",\"topic\":";
    append_json_string(m, topic);
    m += ",\"id\":";
    append_int(m, e.id);
    m += ',';
    std::string body;
    append_bucket_json(body, e);
    m.append(body, 1);  // the object's members after its '{'
    return m;
}

}  // namespace telemetry::bridge
