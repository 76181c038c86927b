// Drives one subscription's bucket_aggregator, pausing for storage when it needs a series' past.
#include "streams/bucket_feed.hpp"

#include "pipeline/query_pool.hpp"

#include <boost/asio/post.hpp>

#include <spdlog/spdlog.h>

#include <mutex>
#include <unordered_set>

namespace telemetry::bridge {
namespace {

// Seeds already read, shared by every bucket subscription of the process. Subscriptions that
// started before a series' next reading all ask for the same seed (that reading's id, the same
// width): one storage read serves them all, so a thousand subscribers of a thousand series cost
// a thousand reads, not a million. A seed never changes (it covers ids below a committed one),
// so entries need no invalidation; the map is cleared when full, which only costs re-reads.
class seed_cache {
public:
    std::optional<storage::bucket_seed> find(const std::string& key) {
        std::lock_guard lock(mutex_);
        auto it = seeds_.find(key);
        if (it == seeds_.end()) return std::nullopt;
        return it->second;
    }
    void put(std::string key, const storage::bucket_seed& s) {
        std::lock_guard lock(mutex_);
        if (seeds_.size() >= max_entries) seeds_.clear();
        seeds_.insert_or_assign(std::move(key), s);
    }

private:
    static constexpr std::size_t max_entries = 65'536;  // about 10 MB with long names
    std::mutex mutex_;
    std::unordered_map<std::string, storage::bucket_seed> seeds_;
};

seed_cache& shared_seeds() {
    static seed_cache cache;
    return cache;
}

}  // namespace

bucket_feed::bucket_feed(bucket_spec spec, query_pool& queries, boost::asio::any_io_executor ex,
                         std::size_t max_waiting, sink s)
    : agg_(spec), queries_(queries), ex_(std::move(ex)), max_waiting_(max_waiting), sink_(std::move(s)) {}

bool bucket_feed::push(const std::vector<live_ptr>& readings, std::shared_ptr<void> owner) {
    if (failed_) return true;
    if (readings.empty()) return true;
    if (waiting_.size() + readings.size() > max_waiting_ && reading_storage_) return false;
    owner_ = std::move(owner);
    waiting_.insert(waiting_.end(), readings.begin(), readings.end());
    if (!reading_storage_) run(false);
    return true;
}

void bucket_feed::cancel() noexcept {
    failed_ = true;
    waiting_.clear();
    owner_.reset();
}

void bucket_feed::run(bool resumed) {
    std::int64_t last = 0;
    while (!waiting_.empty()) {
        const auto& l = waiting_.front();
        auto s = seeds_.find(l->r.id);
        events_.clear();
        if (!agg_.add(l, s == seeds_.end() ? nullptr : &s->second, events_)) {
            if (request_seeds()) continue;  // every seed was known already
            return;
        }
        if (s != seeds_.end()) seeds_.erase(s);
        last = l->r.id;
        waiting_.pop_front();
        for (const auto& e : events_) sink_.emit(e);
    }
    events_.clear();
    if (last) agg_.take_provisional(last, events_);
    for (const auto& e : events_) sink_.emit(e);
    owner_.reset();
    if (resumed) sink_.drained();  // a synchronous push() tells its caller by idle()
}

// Seeds from the shared cache, then one query pool job for what it lacks (true: nothing lacked):
// for the reading that waits and for the first reading of every other series
// new to the aggregator among those queued behind it (their seeds do not depend on what comes
// before them), so a subscription that starts on many series reads storage once, not per series.
bool bucket_feed::request_seeds() {
    struct ask {
        std::int64_t id, ts;
        std::string sensor, metric, key;
    };
    std::vector<ask> asks;
    std::unordered_set<std::string> first;
    bool head = true;
    for (const auto& l : waiting_) {
        const bool wanted = head || (!agg_.knows(l->topic) && !first.count(l->topic));
        first.insert(l->topic);
        head = false;
        if (wanted && !seeds_.count(l->r.id)) {
            // What the seed depends on: the series, the reading's id, the width and its bucket.
            std::string key = l->topic;
            key += '\n' + std::to_string(l->r.id) + '\n' + std::to_string(agg_.spec().width_ms) + '\n' +
                   std::to_string(agg_.bucket_of(l->r.ts));
            if (auto known = shared_seeds().find(key)) seeds_.emplace(l->r.id, std::move(*known));
            else asks.push_back({l->r.id, l->r.ts, l->r.sensor, l->r.metric, std::move(key)});
        }
    }
    if (asks.empty()) return true;
    reading_storage_ = true;
    const std::int64_t width = agg_.spec().width_ms;
    auto self = shared_from_this();
    auto owner = owner_;
    const bool queued = queries_.submit([self, owner, asks = std::move(asks), width](storage::store_reader& rd) {
        auto seeds = std::make_shared<std::vector<std::pair<std::int64_t, storage::bucket_seed>>>();
        bool ok = true;
        try {
            for (const auto& a : asks) {
                auto known = shared_seeds().find(a.key);
                if (!known) {
                    known = rd.seed_bucket(a.sensor, a.metric, a.id, width, a.ts);
                    shared_seeds().put(a.key, *known);
                }
                seeds->emplace_back(a.id, std::move(*known));
            }
        } catch (const std::exception& e) {
            spdlog::error("buckets: reading storage failed: {}", e.what());
            ok = false;
        }
        boost::asio::post(self->ex_, [self, owner, seeds, ok] {
            self->reading_storage_ = false;
            if (self->failed_) return;  // cancelled meanwhile
            if (!ok) {
                self->failed_ = true;
                self->waiting_.clear();
                self->owner_.reset();
                return self->sink_.failed(failure::storage);
            }
            for (auto& [id, seed] : *seeds) self->seeds_.emplace(id, std::move(seed));
            self->run(true);
        });
    });
    if (queued) return false;
    reading_storage_ = false;
    failed_ = true;
    waiting_.clear();
    owner_.reset();
    sink_.failed(failure::busy);
    return false;
}

}  // namespace telemetry::bridge
