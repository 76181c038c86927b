// The subscriber registry: a tree of topic levels, walked by each committed reading.
#include "live/subscriber_registry.hpp"

#include <algorithm>

namespace telemetry::bridge {

namespace {

struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

// "a/b/c" -> {"a","b","c"} as views into `topic`.
void split_levels(std::string_view topic, std::vector<std::string_view>& out) {
    out.clear();
    for (;;) {
        const auto slash = topic.find('/');
        out.push_back(topic.substr(0, slash));
        if (slash == std::string_view::npos) return;
        topic.remove_prefix(slash + 1);
    }
}

template <typename T>
void erase_one(std::vector<T*>& v, const T* x) {
    if (auto it = std::find(v.begin(), v.end(), x); it != v.end()) {
        *it = v.back();
        v.pop_back();
    }
}

}  // namespace

struct subscriber_registry::entry {
    const subscriber* key = nullptr;
    std::weak_ptr<subscriber> sub;
    selector_ptr selector;
    bool one_shot = false;
    std::uint64_t tick = 0;        // the last reading or status that hit this entry
    std::uint64_t generation = 0;  // the last commit that hit it; then `slot` is its match
    std::size_t slot = 0;
    std::uint64_t takes_all = 0;   // the commit in which it has `#` and takes every reading
};

struct subscriber_registry::node {
    std::unordered_map<std::string, std::unique_ptr<node>, string_hash, std::equal_to<>> children;
    std::unique_ptr<node> plus;
    std::vector<entry*> ends;  // filters whose last level is this node
    std::vector<entry*> hash;  // filters ending in `#` below this node: they match all under it
    bool unused() const noexcept { return children.empty() && !plus && ends.empty() && hash.empty(); }
};

subscriber_registry::subscriber_registry() : root_(std::make_unique<node>()) {}
subscriber_registry::~subscriber_registry() = default;

void subscriber_registry::index(entry* e) {
    for (const auto& f : e->selector->filters()) {
        node* n = root_.get();
        for (const auto& level : f.levels()) {
            if (level == "#") {
                n->hash.push_back(e);
                n = nullptr;
                break;
            }
            if (level == "+") {
                if (!n->plus) n->plus = std::make_unique<node>();
                n = n->plus.get();
                continue;
            }
            auto it = n->children.find(std::string_view(level));
            if (it == n->children.end()) it = n->children.emplace(level, std::make_unique<node>()).first;
            n = it->second.get();
        }
        if (n) n->ends.push_back(e);
    }
}

void subscriber_registry::unindex(entry* e) {
    for (const auto& f : e->selector->filters()) {
        // The path of nodes, to prune the ones left unused (memory follows what is subscribed).
        std::vector<std::pair<node*, std::string_view>> path;
        node* n = root_.get();
        bool found = true;
        for (const auto& level : f.levels()) {
            if (level == "#") {
                erase_one(n->hash, e);
                n = nullptr;
                break;
            }
            path.emplace_back(n, level);
            node* next = nullptr;
            if (level == "+") next = n->plus.get();
            else if (auto it = n->children.find(std::string_view(level)); it != n->children.end()) next = it->second.get();
            if (!next) {
                found = false;
                break;
            }
            n = next;
        }
        if (!found) continue;
        if (n) erase_one(n->ends, e);
        for (auto it = path.rbegin(); it != path.rend(); ++it) {
            auto [parent, level] = *it;
            node* child = level == "+" ? parent->plus.get() : parent->children.find(level)->second.get();
            if (!child->unused()) break;
            if (level == "+") parent->plus.reset();
            else parent->children.erase(parent->children.find(level));
        }
    }
}

void subscriber_registry::set(const std::shared_ptr<subscriber>& s, selector_ptr selector, bool one_shot) {
    auto& slot = entries_[s.get()];
    if (slot) {
        unindex(slot.get());
        if (slot->one_shot) --one_shots_;
    } else {
        slot = std::make_unique<entry>();
        slot->key = s.get();
    }
    slot->sub = s;
    slot->selector = std::move(selector);
    slot->one_shot = one_shot;
    if (one_shot) ++one_shots_;
    index(slot.get());
}

void subscriber_registry::erase(const subscriber* s) {
    auto it = entries_.find(s);
    if (it == entries_.end()) return;
    unindex(it->second.get());
    if (it->second->one_shot) --one_shots_;
    entries_.erase(it);
}

bool subscriber_registry::remove(const subscriber* s) {
    if (!entries_.count(s)) return false;
    erase(s);
    return true;
}

template <typename Hit>
void subscriber_registry::walk(node& n, const std::vector<std::string_view>& levels, std::size_t i,
                               bool children_too, Hit& hit) {
    for (entry* e : n.hash) hit(e);
    if (i == levels.size()) {
        for (entry* e : n.ends) hit(e);
        if (!children_too) return;
        // Presence: any filter with exactly one more level (a metric) wants this sensor.
        const auto one_more = [&hit](node& c) {
            for (entry* e : c.ends) hit(e);
            for (entry* e : c.hash) hit(e);
        };
        for (auto& [name, c] : n.children) one_more(*c);
        if (n.plus) one_more(*n.plus);
        return;
    }
    if (auto it = n.children.find(levels[i]); it != n.children.end()) walk(*it->second, levels, i + 1, children_too, hit);
    if (n.plus) walk(*n.plus, levels, i + 1, children_too, hit);
}

std::vector<subscriber_registry::match> subscriber_registry::match_commit(
    const reading_batch& readings, const status_batch& statuses, std::string_view topic_prefix,
    std::int64_t newest) {
    std::vector<match> out;
    if (entries_.empty()) return out;
    const std::uint64_t generation = ++generation_;
    std::vector<entry*> hit_entries;
    std::vector<std::vector<live_ptr>> picked;
    std::vector<std::vector<status_ptr>> picked_status;
    const auto slot_of = [&](entry* e) -> std::size_t {
        if (e->generation != generation) {
            e->generation = generation;
            e->slot = hit_entries.size();
            hit_entries.push_back(e);
            picked.emplace_back();
            picked_status.emplace_back();
        }
        return e->slot;
    };

    std::vector<std::string_view> levels;
    if (readings) {
        // `#` alone selects every reading: such subscribers take the commit's batch as it is,
        // without a walk or a list per reading (the common dashboard-on-everything case).
        for (entry* e : root_->hash) {
            if (!e->selector->unrestricted()) continue;  // a narrower grant: walked like the rest
            e->takes_all = generation;
            slot_of(e);
        }
        for (const auto& l : *readings) {
            const live_ptr* current = &l;
            const std::uint64_t tick = ++tick_;
            auto hit = [&](entry* e) {
                if (e->tick == tick || e->takes_all == generation) return;  // selected already
                e->tick = tick;
                if (!e->selector->unrestricted() && !e->selector->permits((*current)->topic)) return;
                picked[slot_of(e)].push_back(*current);
            };
            split_levels(l->topic, levels);
            walk(*root_, levels, 0, false, hit);
        }
    }
    if (statuses) {
        std::string sensor_topic;
        for (const auto& s : *statuses) {
            const status_ptr* current = &s;
            const std::uint64_t tick = ++tick_;
            auto hit = [&](entry* e) {
                if (e->tick == tick || e->one_shot) return;  // long polls take readings only
                e->tick = tick;
                if (!e->selector->unrestricted() && !e->selector->access()->permits_sensor(sensor_topic)) return;
                picked_status[slot_of(e)].push_back(*current);
            };
            sensor_topic.assign(topic_prefix).append("/").append(s->sensor);
            split_levels(sensor_topic, levels);
            walk(*root_, levels, 0, true, hit);
        }
    }

    std::vector<const subscriber*> gone;
    out.reserve(hit_entries.size());
    for (std::size_t i = 0; i < hit_entries.size(); ++i) {
        entry* e = hit_entries[i];
        auto target = e->sub.lock();
        if (!target) {
            gone.push_back(e->key);  // destroyed without unregistering
            continue;
        }
        match m{std::move(target), {}};
        const bool all = readings && (e->takes_all == generation || picked[i].size() == readings->size());
        if (all || !picked[i].empty())
            m.what.readings = all
                                  ? readings  // selects all of them: share the commit's batch
                                  : std::make_shared<const std::vector<live_ptr>>(std::move(picked[i]));
        if (!picked_status[i].empty())
            m.what.statuses = picked_status[i].size() == statuses->size()
                                  ? statuses
                                  : std::make_shared<const std::vector<status_ptr>>(std::move(picked_status[i]));
        m.what.newest = newest;
        if (e->one_shot) {
            if (!m.what.readings) continue;
            gone.push_back(m.target.get());
        }
        out.push_back(std::move(m));
    }
    for (const subscriber* s : gone) erase(s);
    return out;
}

std::vector<std::shared_ptr<subscriber>> subscriber_registry::take_all() {
    std::vector<std::shared_ptr<subscriber>> out;
    for (auto& [key, e] : entries_)
        if (auto s = e->sub.lock()) out.push_back(std::move(s));
    entries_.clear();
    root_ = std::make_unique<node>();
    one_shots_ = 0;
    return out;
}

}  // namespace telemetry::bridge
