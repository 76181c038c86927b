// The conflate policy of a stream: the newest reading per series while the client is behind.
#include "streams/conflation.hpp"

#include "core/wire_format.hpp"

#include <algorithm>

namespace telemetry::bridge::http {

bool conflation::hold(const live_ptr& l) {
    auto [it, fresh] = by_series_.try_emplace(l->topic);
    if (!fresh) ++it->second.skipped;
    it->second.newest = l;
    return !fresh;
}

std::vector<conflation::held> conflation::take() {
    std::vector<held> out;
    out.reserve(by_series_.size());
    for (auto& [topic, h] : by_series_) out.push_back(std::move(h));
    by_series_.clear();
    std::sort(out.begin(), out.end(), [](const held& a, const held& b) { return a.newest->r.id < b.newest->r.id; });
    return out;
}

}  // namespace telemetry::bridge::http
