// The live state of the bridge, composed of three parts with one job each: the recent window of
// readings, the series table, and the subscriber registry. The hub is the one entry point for
// commits, so that delivering a commit and attaching a subscriber are ordered: nothing committed
// is missed or delivered twice between a catch-up and live delivery.
#pragma once

#include "core/cursor.hpp"
#include "database.hpp"
#include "live/recent_window.hpp"
#include "live/series_table.hpp"
#include "live/subscriber_registry.hpp"

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace telemetry::bridge {

// Where a client resumes. A cursor of the current epoch (or a bare id) resumes after its id; one of
// another epoch belongs to other data (docs/api.md 2.1): the client gets an epoch reset and
// every reading still stored, as after a retention reset from before the oldest reading.
struct resume_point {
    std::int64_t after = 0;
    std::optional<std::int64_t> epoch_reset;  // the foreign cursor's id, for the reset notice
};

// Thread safety: every member function may be called from any thread. `dispatch_mutex_` orders
// commits against attaching subscribers; the window and the series table have their own locks
// for readers that need no ordering. Subscribers are called after every lock is released.
class hub {
public:
    hub(std::string topic_prefix, std::size_t window);

    // Start-up: the stored series, the greatest id ever handed out, the newest readings (ascending
    // id, at most the window's capacity) after `tail_after`, and the greatest id retention deleted
    // without recording from which series (storage::reader::retired_unattributed).
    void load(const std::vector<storage::series_info>& series, std::int64_t max_id,
              std::vector<reading> tail, std::int64_t tail_after, std::int64_t retired_unattributed);

    // Start-up, before any client: the store's epoch (docs/api.md 2.1), which every cursor the
    // bridge hands out carries.
    void set_epoch(std::uint32_t epoch);
    // Start-up, before any commit: where the streams queue their deliveries (null: nowhere to tell).
    void set_batching(delivery_batching* b) noexcept { batching_ = b; }
    std::uint32_t epoch() const noexcept { return epoch_; }
    const std::string& epoch_text() const noexcept { return epoch_text_; }
    // "@" + epoch_text(): what follows an id in a cursor on the wire.
    const std::string& at_epoch() const noexcept { return at_epoch_; }
    resume_point resume_from(const wire_cursor& c) const {
        if (c.epoch && *c.epoch != epoch_) return {0, c.id};
        return {c.id, std::nullopt};
    }

    // One commit, from the committing thread: its readings in id order (never call before they
    // are committed) and the presence changes committed with them (newest per sensor). Returns the
    // gaps in `seq` the readings reveal (series_table::apply).
    std::vector<seq_gap> publish(const std::vector<reading>& committed,
                                 const std::vector<status_event>& statuses = {});
    // Retention deleted readings with ts < cutoff_ms: counts, versions and the window follow.
    void retention_applied(const storage::retention_result& r, std::int64_t cutoff_ms);
    // Shutdown: every subscriber is unregistered and told (long polls answer, streams close).
    void release_all();

    const recent_window& window() const noexcept { return window_; }
    series_table& series() noexcept { return series_; }
    const series_table& series() const noexcept { return series_; }
    std::int64_t newest_id() const noexcept { return window_.newest(); }
    // True if retention deleted a reading after `after` that `sel` selects: a client resuming
    // there gets a reset (docs/api.md section 6). Storage may know of a deletion this does not
    // know of yet; catch-up asks storage too when it reads from there.
    bool deleted_after(std::int64_t after, const reading_selector& sel) const {
        return series_.deleted_after(after, sel, prefix_);
    }

    // A window read (see recent_window::read, up to the newest reading) that, when it reached
    // the newest reading (and, with `only_if_empty`, selected nothing), registers `s` for every
    // later commit in the same step. False when `after` is older than the window.
    bool read_and_attach(std::int64_t after, const selector_ptr& sel, std::size_t limit,
                         const std::shared_ptr<subscriber>& s, bool only_if_empty,
                         std::vector<live_ptr>& out, std::int64_t& reached, bool& attached);
    // Registers `s` for everything committed from now on, or changes what it selects; returns the
    // newest id delivered before (readings up to it come from a catch-up, later ones live).
    std::int64_t subscribe(const std::shared_ptr<subscriber>& s, selector_ptr sel);
    // True if `s` was registered (for a long poll: it was still parked, so its owner answers it).
    bool unsubscribe(const subscriber* s);

    std::size_t streams() const;
    std::size_t parked() const;
    std::size_t series_count() const { return series_.size(); }
    const std::string& topic_prefix() const noexcept { return prefix_; }
    live_ptr make_live(reading r) const { return telemetry::bridge::make_live(prefix_, std::move(r)); }

private:
    const std::string prefix_;
    std::uint32_t epoch_ = 0;
    std::string epoch_text_ = "00000000";
    std::string at_epoch_ = "@00000000";
    recent_window window_;
    series_table series_;
    delivery_batching* batching_ = nullptr;
    mutable std::mutex dispatch_mutex_;
    subscriber_registry registry_;  // guarded by dispatch_mutex_
};

}  // namespace telemetry::bridge
