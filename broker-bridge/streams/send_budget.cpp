// The total send budget over all streams: who may grow, and whom to cut at the ceiling.
#include "streams/send_budget.hpp"

#include <algorithm>

#include <poll.h>

namespace telemetry::bridge::http {

send_budget::share::share(send_budget& budget) : budget_(budget) {
    std::lock_guard lock(budget_.mutex_);
    slot_ = budget_.shares_.size();
    budget_.shares_.push_back(this);
    budget_.streams_.fetch_add(1, std::memory_order_relaxed);
}

send_budget::share::~share() {
    account(0);
    release_cut();
    std::lock_guard lock(budget_.mutex_);
    auto& shares = budget_.shares_;
    shares[slot_] = shares.back();
    shares[slot_]->slot_ = slot_;
    shares.pop_back();
    budget_.streams_.fetch_sub(1, std::memory_order_relaxed);
}

void send_budget::share::on_cut(std::function<void()> cut) {
    std::lock_guard lock(budget_.mutex_);
    on_cut_ = std::move(cut);
}

bool send_budget::share::admit(std::size_t held, std::size_t more,
                               std::chrono::steady_clock::time_point write_started, int socket) {
    if (cut()) return false;
    switch (budget_.judge(held, accounted(), more)) {
        case verdict::admit: return true;
        case verdict::admit_if_progressing: return progressing(write_started, socket);
        case verdict::make_room: return progressing(write_started, socket) && budget_.make_room(*this, held + more);
    }
    return false;
}

bool send_budget::progressing(std::chrono::steady_clock::time_point write_started, int socket) {
    if (write_started == std::chrono::steady_clock::time_point{} ||
        std::chrono::steady_clock::now() - write_started < stall_after)
        return true;
    if (socket < 0) return false;
    // Writable: its send buffer has room (Linux: at least a third free), so the client took
    // what was there. A client that stopped reading leaves it full.
    pollfd p{socket, POLLOUT, 0};
    return ::poll(&p, 1, 0) == 1 && (p.revents & POLLOUT) && !(p.revents & (POLLERR | POLLHUP | POLLNVAL));
}

std::int64_t send_budget::share::account(std::size_t held) noexcept {
    const std::size_t before = accounted_.load(std::memory_order_relaxed);
    if (held == before) return 0;
    accounted_.store(held, std::memory_order_relaxed);
    if (held > before) {
        budget_.queued_.fetch_add(held - before, std::memory_order_relaxed);
    } else {
        budget_.queued_.fetch_sub(before - held, std::memory_order_relaxed);
        // A cut stream that shrinks (its writes complete before it closes) gives back what it
        // no longer holds, so the total less the cut streams stays what the others hold.
        if (cut()) {
            const std::size_t was = cut_bytes_.load(std::memory_order_relaxed);
            const std::size_t back = std::min(was, before - held);
            cut_bytes_.store(was - back, std::memory_order_relaxed);
            budget_.cut_bytes_.fetch_sub(back, std::memory_order_relaxed);
        }
    }
    return static_cast<std::int64_t>(held) - static_cast<std::int64_t>(before);
}

void send_budget::share::release_cut() noexcept {
    if (cut()) budget_.cut_bytes_.fetch_sub(cut_bytes_.exchange(0, std::memory_order_relaxed), std::memory_order_relaxed);
}

std::size_t send_budget::counted() const noexcept {
    const std::size_t all = queued_.load(std::memory_order_relaxed);
    const std::size_t cut = cut_bytes_.load(std::memory_order_relaxed);
    return all > cut ? all - cut : 0;
}

std::size_t send_budget::streams() const { return streams_.load(std::memory_order_relaxed); }

send_budget::verdict send_budget::judge(std::size_t held, std::size_t accounted, std::size_t more) const noexcept {
    const std::size_t now = counted();
    const std::size_t total = now - std::min(now, accounted) + held + more;
    if (total <= budget_) return verdict::admit;
    // Within its fair share a stream always grows, even past twice the budget: a reader that
    // keeps up is never cut because others stall. The fair shares together are the budget (or
    // the floor per stream, with more streams than the budget has floors).
    const std::size_t streams = std::max<std::size_t>(1, streams_.load(std::memory_order_relaxed));
    if (held + more <= std::max(floor_, budget_ / streams)) return verdict::admit;
    return total <= 2 * budget_ ? verdict::admit_if_progressing : verdict::make_room;
}

bool send_budget::make_room(share& asker, std::size_t wanted) {
    std::lock_guard lock(mutex_);
    const auto excess = [&]() -> std::size_t {
        const std::size_t now = counted();
        const std::size_t total = now - std::min(now, asker.accounted()) + wanted;
        return total > 2 * budget_ ? total - 2 * budget_ : 0;
    };
    std::size_t over = excess();
    if (over == 0) return true;  // others made room meanwhile
    // Only streams further behind than the asker: if it holds the most, it is the one to go.
    std::vector<std::pair<std::size_t, share*>> behind;
    for (share* s : shares_) {
        const std::size_t held = s->accounted();
        if (s != &asker && !s->cut() && held > wanted) behind.emplace_back(held, s);
    }
    std::sort(behind.begin(), behind.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    for (const auto& [held, s] : behind) {
        s->cut_bytes_.store(held, std::memory_order_relaxed);
        cut_bytes_.fetch_add(held, std::memory_order_relaxed);
        s->cut_.store(true, std::memory_order_release);
        if (s->on_cut_) s->on_cut_();
        if (held >= over) return true;
        over -= held;
    }
    return false;
}

}  // namespace telemetry::bridge::http
