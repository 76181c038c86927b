// The one text/event-stream parser: the WHATWG HTML "event stream interpretation" rules, read
// incrementally and without a copy where the bytes allow it.
#include "sse_parser.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>

namespace telemetry::sse {
namespace {

constexpr char bom[] = "\xEF\xBB\xBF";
constexpr std::size_t bom_size = 3;

// The first `c` in [p, end), or end: memchr, so a line costs a vectorised scan, not a byte loop.
const char* find(const char* p, const char* end, char c) {
    const void* hit = std::memchr(p, c, static_cast<std::size_t>(end - p));
    return hit ? static_cast<const char*>(hit) : end;
}

// The spec accepts only ASCII digits; from_chars alone would also take a sign. Values that do not
// fit are ignored like any other malformed one.
std::optional<std::chrono::milliseconds> parse_retry(std::string_view v) {
    if (v.empty() || !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return std::nullopt;
    std::chrono::milliseconds::rep ms = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), ms);
    if (ec != std::errc{} || end != v.data() + v.size()) return std::nullopt;
    return std::chrono::milliseconds(ms);
}

}  // namespace

bool parser::feed(std::string_view bytes, handler& h) {
    if (overflowed_) return false;
    const char* p = bytes.data();
    const char* const end = p + bytes.size();
    // The decoder drops one BOM at the very start of the stream. A partial match that fails turns
    // out to be the start of the first line.
    while (!started_ && p < end) {
        if (*p == bom[bom_seen_]) {
            ++p;
            started_ = ++bom_seen_ == bom_size;
        } else {
            line_.assign(bom, bom_seen_);
            started_ = true;
        }
    }
    if (skip_lf_ && p < end) {
        skip_lf_ = false;
        if (*p == '\n') ++p;
    }
    // Where the next CR and LF are; each is searched for again only once passed, so a stream that
    // never sends CR costs one scan of each read for it.
    const char* cr = find(p, end, '\r');
    const char* lf = find(p, end, '\n');
    while (p < end) {
        if (cr < p) cr = find(p, end, '\r');
        if (lf < p) lf = find(p, end, '\n');
        const char* const eol = std::min(cr, lf);
        const auto length = static_cast<std::size_t>(eol - p);
        if (line_.size() + length > limits_.max_line) {
            overflowed_ = true;
            return false;
        }
        if (eol == end) {
            line_.append(p, end);
            break;
        }
        // A line within this read is used where it lies; one begun in an earlier read is completed
        // in line_.
        const bool in_input = line_.empty();
        if (!in_input) line_.append(p, eol);
        const std::string_view line = in_input ? std::string_view(p, length) : std::string_view(line_);
        p = eol + 1;
        if (*eol == '\r') {
            if (p == end) skip_lf_ = true;
            else if (*p == '\n') ++p;
        }
        if (!on_line(line, in_input, h)) return false;
        line_.clear();
    }
    // The caller's bytes go away with this call: what the block still needs of them is copied.
    data_.keep();
    type_.keep();
    next_id_.keep();
    return true;
}

bool parser::on_line(std::string_view line, bool in_input, handler& h) {
    if (line.empty()) return dispatch(h);
    if (line.front() == ':') return h.on_comment(line.substr(1));
    std::string_view field = line, value;
    if (const auto colon = line.find(':'); colon != std::string_view::npos) {
        field = line.substr(0, colon);
        value = line.substr(colon + 1);
        if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    }
    if (field == "data") return on_data(value, in_input);
    if (field == "event") {
        type_.set(value, in_input);
    } else if (field == "id") {
        if (value.find('\0') == std::string_view::npos) {
            next_id_.set(value, in_input);
            id_set_ = true;
        }
    } else if (field == "retry") {
        if (const auto ms = parse_retry(value)) {
            retry_ = ms;
            return h.on_retry(*ms);
        }
    }
    return true;  // other fields are ignored, as the standard says
}

bool parser::on_data(std::string_view value, bool in_input) {
    if ((has_data_ ? data_.get().size() + 1 : 0) + value.size() > limits_.max_event) {
        overflowed_ = true;
        return false;
    }
    if (has_data_) {
        data_.append_line(value);
    } else {
        data_.set(value, in_input);
        has_data_ = true;
    }
    return true;
}

bool parser::dispatch(handler& h) {
    if (id_set_) {
        last_id_.assign(next_id_.get());  // the last event ID outlives its block
        next_id_.clear();
        id_set_ = false;
    }
    bool go = true;
    // A block without data (an id or a retry alone) is no event.
    if (has_data_) {
        const std::string_view type = type_.get();
        go = h.on_event(event{type.empty() ? std::string_view("message") : type, data_.get(), last_id_});
    }
    has_data_ = false;
    data_.clear();
    type_.clear();
    return go;
}

void parser::reset(std::string_view last_event_id) {
    line_.clear();
    bom_seen_ = 0;
    started_ = skip_lf_ = overflowed_ = false;
    has_data_ = id_set_ = false;
    data_.clear();
    type_.clear();
    next_id_.clear();
    last_id_.assign(last_event_id);
    retry_.reset();
}

void parser::field_value::set(std::string_view v, bool in_input) {
    lent_ = in_input;
    if (lent_) {
        view_ = v;
    } else {
        own_.assign(v);
        view_ = own_;
    }
}

void parser::field_value::append_line(std::string_view v) {
    keep();
    own_ += '\n';
    own_.append(v);
    view_ = own_;
}

void parser::field_value::keep() {
    if (!lent_) return;
    own_.assign(view_);
    view_ = own_;
    lent_ = false;
}

void parser::field_value::clear() {
    own_.clear();
    view_ = {};
    lent_ = false;
}

}  // namespace telemetry::sse
