// The total send budget over all streams: who may grow, and whom to cut at the ceiling.
#include "streams/send_budget.hpp"

#include <algorithm>

#include <poll.h>

namespace telemetry::bridge::http {

namespace {
std::int64_t ticks(std::chrono::steady_clock::time_point t) { return t.time_since_epoch().count(); }
}  // namespace

send_budget::share::share(send_budget& budget)
    : budget_(budget), progress_(ticks(std::chrono::steady_clock::now())) {
    std::lock_guard lock(budget_.mutex_);
    slot_ = budget_.shares_.size();
    budget_.shares_.push_back(this);
    budget_.streams_.fetch_add(1, std::memory_order_relaxed);
}

send_budget::share::~share() {
    {
        // Out of the list first: once this returns, no other thread can cut it, so what it
        // gives back below is final.
        std::lock_guard lock(budget_.mutex_);
        auto& shares = budget_.shares_;
        shares[slot_] = shares.back();
        shares[slot_]->slot_ = slot_;
        shares.pop_back();
        budget_.streams_.fetch_sub(1, std::memory_order_relaxed);
    }
    account(0);
    release_cut();
}

void send_budget::share::on_cut(std::function<void()> cut, int socket) {
    std::lock_guard lock(budget_.mutex_);
    on_cut_ = std::move(cut);
    socket_ = socket;
}

void send_budget::share::forget_socket() {
    std::lock_guard lock(budget_.mutex_);
    socket_ = -1;
}

bool send_budget::share::admit(std::size_t held, std::size_t more,
                               std::chrono::steady_clock::time_point write_started, int socket) {
    if (cut()) return false;
    const bool in_flight = write_started != std::chrono::steady_clock::time_point{};
    progress_.store(ticks(in_flight ? write_started : std::chrono::steady_clock::now()), std::memory_order_relaxed);
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
    return takes_bytes(socket);
}

bool send_budget::takes_bytes(int socket) {
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
        progress_.store(ticks(std::chrono::steady_clock::now()), std::memory_order_relaxed);
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
    const std::size_t now = counted();
    const std::size_t total = now - std::min(now, asker.accounted()) + wanted;
    if (total <= 2 * budget_) return true;  // others made room meanwhile
    std::size_t over = total - 2 * budget_;
    // Stalled streams go first, whatever they hold; then, if need be, streams further behind
    // than the asker. A reader that keeps up is never cut for a stream that holds more.
    const auto stalled_before = ticks(std::chrono::steady_clock::now() - stall_after);
    std::vector<std::pair<std::size_t, share*>> stalled, behind;
    std::size_t available = 0;
    for (share* s : shares_) {
        const std::size_t held = s->accounted();
        if (s == &asker || s->cut() || held == 0) continue;
        // Stalled: nothing progressed for stall_after, and the kernel takes nothing on its
        // socket now (one that does is read, its completion only waits for its thread). The
        // socket is open: its owner forgets it, under this lock, before closing it.
        if (s->progress_.load(std::memory_order_relaxed) <= stalled_before && !takes_bytes(s->socket_))
            stalled.emplace_back(held, s);
        else if (held > wanted) behind.emplace_back(held, s);
        else continue;
        available += held;
    }
    const auto largest_first = [](const auto& a, const auto& b) { return a.first > b.first; };
    std::sort(stalled.begin(), stalled.end(), largest_first);
    std::sort(behind.begin(), behind.end(), largest_first);
    // Not enough to make the room: the asker goes, and only the stalled ones with it (they hold
    // bytes nobody reads; cutting one that still reads would not save the asker).
    const bool enough = available >= over;
    for (const auto& [held, s] : stalled) {
        cut(*s, held);
        if (enough && held >= over) return true;
        over -= std::min(over, held);
    }
    if (!enough) return false;
    for (const auto& [held, s] : behind) {
        cut(*s, held);
        if (held >= over) return true;
        over -= held;
    }
    return over == 0;
}

void send_budget::cut(share& s, std::size_t held) {
    s.cut_bytes_.store(held, std::memory_order_relaxed);
    cut_bytes_.fetch_add(held, std::memory_order_relaxed);
    s.cut_.store(true, std::memory_order_release);
    if (s.on_cut_) s.on_cut_();
}

}  // namespace telemetry::bridge::http
