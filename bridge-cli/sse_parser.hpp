// The one text/event-stream parser (bridge-cli watch, the integration tests, stream-bench): bytes
// in, events out, as a browser's EventSource reads them.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace telemetry::sse {

// One dispatched event. The views are valid only during the handler call that receives them.
struct event {
    std::string_view type;  // the event field, or "message" when the block had none (or an empty one)
    std::string_view data;  // the block's data lines joined with '\n'
    std::string_view id;    // the last event ID: set by the newest id field, kept across events
};

// What the parser calls as it reads. Returning false stops feed() at once (the caller is leaving
// the stream); the parser must then be reset() before it reads another stream.
class handler {
public:
    virtual ~handler() = default;
    virtual bool on_event(const event& ev) = 0;
    // A valid retry field: the server's reconnection delay. Also kept, see parser::retry().
    virtual bool on_retry(std::chrono::milliseconds) { return true; }
    // A comment line (the text after ':'): servers send them as heartbeats.
    virtual bool on_comment(std::string_view) { return true; }
};

// What a server may make the parser hold. A longer line, or more data in one event, ends the
// stream as malformed: a hostile or broken server cannot grow a client's memory without bound.
struct limits {
    std::size_t max_line = std::size_t{1} << 20;   // one line, field name and value included
    std::size_t max_event = std::size_t{1} << 20;  // the data of one event, '\n's included
};

// The WHATWG HTML "event stream interpretation": a leading UTF-8 BOM dropped, lines ended by CR,
// LF or CRLF, ':' comments, fields data/event/id/retry (others ignored), one space after the
// colon dropped, an event dispatched by a blank line and only if the block had a data field, an
// id containing NUL ignored. Bytes are passed through as they are (no UTF-8 validation). A block
// cut off by the end of the stream is never dispatched: the caller just stops feeding.
//
// Incremental: bytes may be split anywhere, also inside the BOM or between CR and LF. In the
// steady state nothing is allocated per event, and an event that lies within one feed() is
// handed over without a copy of its data or type (views of the caller's bytes); only what
// straddles two calls is copied, into buffers whose capacity is kept. Not thread-safe; one
// instance per stream. A handler must not destroy the parser that calls it.
class parser {
public:
    explicit parser(limits l = {}) : limits_(l) {}

    // Reads `bytes`, calling `h` for what they complete, in order. False when the handler stopped
    // or the stream broke a limit (then overflowed() is true and every later call returns false).
    bool feed(std::string_view bytes, handler& h);

    // Back to the start of a new stream. `last_event_id` is what a reconnecting EventSource keeps
    // (and sends as Last-Event-ID): events before the stream's first id field report it.
    void reset(std::string_view last_event_id = {});

    // The last event ID as of the last dispatch (a block without data also sets it).
    const std::string& last_event_id() const { return last_id_; }
    // The newest valid retry hint, if any.
    std::optional<std::chrono::milliseconds> retry() const { return retry_; }
    bool overflowed() const { return overflowed_; }

private:
    // A field value of the block being read: while the caller's bytes last, a view of them (no
    // copy); after keep(), its own copy, in a string whose capacity is kept from event to event.
    class field_value {
    public:
        std::string_view get() const { return view_; }
        void set(std::string_view v, bool in_input);
        void append_line(std::string_view v);  // '\n' and `v` after what it holds
        void keep();
        void clear();

    private:
        std::string_view view_;  // into the caller's bytes (lent_) or own_
        std::string own_;
        bool lent_ = false;
    };

    bool on_line(std::string_view line, bool in_input, handler& h);
    bool on_data(std::string_view value, bool in_input);
    bool dispatch(handler& h);

    limits limits_;
    std::string line_;          // a line begun in an earlier feed()
    std::size_t bom_seen_ = 0;  // bytes of a leading BOM matched so far
    bool started_ = false;      // past the place where a BOM may stand
    bool skip_lf_ = false;      // the last feed() ended in CR: a leading LF belongs to it
    bool overflowed_ = false;

    // The block being read, then what outlives it.
    bool has_data_ = false;  // a data field was seen (it may have been empty)
    field_value data_;
    field_value type_;
    bool id_set_ = false;  // next_id_ holds an id field not yet dispatched
    field_value next_id_;
    std::string last_id_;
    std::optional<std::chrono::milliseconds> retry_;
};

}  // namespace telemetry::sse
