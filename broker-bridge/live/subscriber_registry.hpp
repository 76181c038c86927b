// The subscriber registry: who wants which readings, indexed by topic filter, so that a commit
// reaches only the streams and parked polls whose filters match it.
#pragma once

#include "live/subscriber.hpp"

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace telemetry::bridge {

// Filters are kept in a tree with one node per topic level (as Mosquitto's subs.c): a reading
// walks only the branches that can match it (its exact levels, `+`, `#`), so its cost depends on
// the filters that match, not on how many subscribers there are. Each node's exact children are
// in a hash map. A subscriber with several matching filters gets a reading once.
//
// Not thread-safe: the hub serialises every call under the lock that orders commits.
class subscriber_registry {
public:
    subscriber_registry();
    ~subscriber_registry();
    subscriber_registry(const subscriber_registry&) = delete;
    subscriber_registry& operator=(const subscriber_registry&) = delete;

    // Registers `s` (held weakly) with `selector`, or replaces the selector it has. A one-shot
    // subscriber (a long poll) is removed by the first match that selects a reading, and never
    // receives presence.
    void set(const std::shared_ptr<subscriber>& s, selector_ptr selector, bool one_shot = false);
    // True if `s` was registered.
    bool remove(const subscriber* s);

    struct match {
        std::shared_ptr<subscriber> target;
        delivery what;
    };
    // Who gets what of one commit: each subscriber its selected readings (the shared `readings`
    // batch itself when it selects all of them) and presence changes. `statuses` are matched by
    // `prefix/<sensor>`. One-shot subscribers that matched are unregistered.
    std::vector<match> match_commit(const reading_batch& readings, const status_batch& statuses,
                                    std::string_view topic_prefix, std::int64_t newest);

    // Everything registered, unregistered (shutdown).
    std::vector<std::shared_ptr<subscriber>> take_all();

    std::size_t streams() const noexcept { return entries_.size() - one_shots_; }
    std::size_t one_shots() const noexcept { return one_shots_; }

private:
    struct entry;
    struct node;
    void index(entry* e);
    void unindex(entry* e);
    void erase(const subscriber* s);
    template <typename Hit>
    void walk(node& n, const std::vector<std::string_view>& levels, std::size_t i, bool children_too,
              Hit& hit);

    std::unique_ptr<node> root_;
    std::unordered_map<const subscriber*, std::unique_ptr<entry>> entries_;
    std::size_t one_shots_ = 0;
    std::uint64_t tick_ = 0;  // per reading (or status) matched: dedups one subscriber's filters
    std::uint64_t generation_ = 0;  // per commit matched
};

}  // namespace telemetry::bridge
