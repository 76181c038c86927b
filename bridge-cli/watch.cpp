// watch: live readings over Server-Sent Events, one line each, resuming after the last id seen
// whenever the connection ends, so that every matching reading is printed exactly once, in order.
#include "api.hpp"
#include "commands.hpp"
#include "exit_codes.hpp"
#include "http_client.hpp"
#include "sse_parser.hpp"

#include <boost/json/parse.hpp>

#include <algorithm>
#include <charconv>
#include <iostream>
#include <random>

namespace telemetry::cli {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;

// The bridge sends a heartbeat at least every 15 s: three missed ones mean the connection is dead
// even if TCP has not noticed (a NAT dropped it, the server host vanished).
constexpr milliseconds idle_limit{45'000};
constexpr milliseconds default_retry{1000};  // until the server's retry: hint arrives
constexpr milliseconds max_backoff{30'000};

// "@E" of a cursor `N@E` (docs/api.md 2.1), empty for a bare id.
std::string epoch_part(std::string_view cursor) {
    const auto at = cursor.find('@');
    return at == std::string_view::npos ? std::string() : std::string(cursor.substr(at));
}

// The newest id the server has committed, so that a watch started "live" can still resume
// without a gap if the connection drops before the first reading arrives; `at_epoch` gets the
// cursor's epoch. nullopt if the server cannot say (then the stream starts live).
std::optional<std::int64_t> newest_id(http_client& c, std::string& at_epoch) {
    const auto r = c.get(make_target(c.url(), {"api", "v1", "updates"}, {{"timeout", "0"}, {"limit", "1"}}));
    if (r.status != 200) return std::nullopt;
    boost::system::error_code ec;
    const auto v = json::parse(r.body, ec);
    if (ec || !v.is_object()) return std::nullopt;
    const auto* cursor = v.get_object().if_contains("cursor");
    if (cursor && cursor->is_int64() && cursor->get_int64() >= 0) return cursor->get_int64();  // an older bridge
    if (!cursor || !cursor->is_string()) return std::nullopt;
    const std::string_view text = cursor->get_string();
    std::int64_t id = -1;
    const auto [end, ec2] = std::from_chars(text.data(), text.data() + text.size(), id);
    if (ec2 != std::errc{} || id < 0) return std::nullopt;
    at_epoch = epoch_part(text);
    return id;
}

class watcher : public sse::handler {
public:
    watcher(const global_options& g, const watch_options& o) : g_(g), o_(o) {}

    // Prints what `ev` says; false once --count readings have been printed.
    bool on_event(const sse::event& ev) override {
        if (ev.type == "reading") return on_reading(ev);
        if (ev.type == "status" && o_.status) print_status(ev);
        if (ev.type == "reset") warn_reset(ev);
        return true;  // other event types are for other clients
    }

    std::optional<std::int64_t> last_id;
    std::string at_epoch;  // "@E": the epoch last_id belongs to (empty: unknown, the current one)

    // What to send as Last-Event-ID.
    std::string resume_cursor() const { return std::to_string(*last_id) + at_epoch; }

private:
    bool on_reading(const sse::event& ev) {
        boost::system::error_code ec;
        const auto v = json::parse(ev.data, ec);
        const json::object* r = !ec && v.is_object() ? &v.get_object() : nullptr;
        const json::value* id = r ? r->if_contains("id") : nullptr;
        if (!id || !id->is_int64())
            throw cli_error(exit_code::bad_response,
                            "a reading event without a reading: " + std::string(ev.data.substr(0, 200)));
        // The server promises no duplicate after a resume; this keeps the promise of our output
        // even if it did send one.
        if (last_id && id->get_int64() <= *last_id) return true;
        std::string line;
        if (o_.json) {
            line = ev.data;
        } else {
            try {
                line = format_time(r->at("ts").to_number<std::int64_t>()) + ' ' +
                       std::string(r->at("sensor").as_string()) + '/' + std::string(r->at("metric").as_string()) +
                       ' ' + format_number(as_double(r->at("value")));
                if (const auto* unit = r->if_contains("unit"); unit && unit->is_string())
                    line += ' ' + std::string(unit->get_string());
            } catch (const std::exception&) {
                throw cli_error(exit_code::bad_response,
                                "a malformed reading: " + std::string(ev.data.substr(0, 200)));
            }
        }
        line += '\n';
        // One write and a flush per reading: a pipe into another program sees each at once.
        std::cout << line << std::flush;
        last_id = id->get_int64();
        at_epoch = epoch_part(ev.id);
        ++printed_;
        return o_.count == 0 || printed_ < o_.count;
    }

    void print_status(const sse::event& ev) {
        if (o_.json) {
            std::cout << ev.data << '\n' << std::flush;
            return;
        }
        boost::system::error_code ec;
        const auto v = json::parse(ev.data, ec);
        if (ec || !v.is_object()) return;
        const auto* sensor = v.get_object().if_contains("sensor");
        const auto* online = v.get_object().if_contains("online");
        if (!sensor || !sensor->is_string() || !online || !online->is_bool()) return;
        // Presence has no time of its own: it is printed with the time it arrived.
        std::cout << format_time(now_ms()) << ' ' << std::string(sensor->get_string()) << "/status "
                  << (online->get_bool() ? "online" : "offline") << '\n'
                  << std::flush;
    }

    void warn_reset(const sse::event& ev) {
        std::string oldest = "?";
        boost::system::error_code ec;
        const auto v = json::parse(ev.data, ec);
        if (!ec && v.is_object())
            if (const auto* o = v.get_object().if_contains("oldest_id"); o && o->is_int64())
                oldest = std::to_string(o->get_int64());
        const json::value* epoch = !ec && v.is_object() ? v.get_object().if_contains("epoch") : nullptr;
        if (epoch && epoch->is_string()) {
            // Other data: ids start again, so the next resume is from the start of this epoch.
            if (!g_.quiet)
                std::cerr << "bridge-cli: warning: the bridge's database is not the one id "
                          << (last_id ? std::to_string(*last_id) : "?") << " came from (re-created or restored, epoch "
                          << std::string(epoch->get_string()) << "); continuing from id " << oldest << '\n';
            last_id = 0;
            at_epoch = '@';
            at_epoch += epoch->get_string();
            return;
        }
        if (g_.quiet) return;
        std::cerr << "bridge-cli: warning: readings after id " << (last_id ? std::to_string(*last_id) : "?")
                  << " were deleted by retention; continuing from id " << oldest << '\n';
    }

    const global_options& g_;
    const watch_options& o_;
    std::size_t printed_ = 0;
};

}  // namespace

int run_watch(const global_options& g, const watch_options& o) {
    auto client = make_client(g);
    client.interrupt_on_signals();
    watcher w(g, o);
    try {
        if (o.after) {
            w.last_id = std::stoll(o.after->substr(0, o.after->find('@')));  // checked by the option
            w.at_epoch = epoch_part(*o.after);
        } else {
            w.last_id = newest_id(client, w.at_epoch);
        }
    } catch (const cli_error&) {
        if (client.interrupted()) return 0;  // Ctrl-C while connecting is no error
        throw;
    }

    query_list q;
    for (const auto& t : o.topics) q.emplace_back("topic", t);
    const std::string target = make_target(client.url(), {"api", "v1", "stream"}, q);

    std::minstd_rand jitter(std::random_device{}());
    milliseconds retry = default_retry;
    int failures = 0;
    bool connected_once = false;
    for (;;) {
        header_list headers{{"Accept", "text/event-stream"}};
        // Last-Event-ID, as a browser sends it on reconnect, wins over `after` on the server.
        if (w.last_id) headers.emplace_back("Last-Event-ID", w.resume_cursor());
        http_response head;
        sse::parser reader;
        std::string why;
        stream_end end = stream_end::closed;
        try {
            end = client.stream(target, headers, idle_limit, head,
                                [&](std::string_view bytes) { return reader.feed(bytes, w); });
        } catch (const cli_error& e) {
            // The first connection failing is an answer for a script; later ones are outages.
            if (e.code() != exit_code::network || !connected_once) throw;
            why = e.what();
        }
        if (end == stream_end::interrupted) return 0;
        if (end == stream_end::stopped && !reader.overflowed()) return 0;  // --count reached

        milliseconds wait{0};
        if (why.empty()) {
            if (head.status == 200) {
                connected_once = true;
                if (reader.retry()) retry = *reader.retry();
                why = end == stream_end::idle ? "no heartbeat for " + format_duration(idle_limit.count())
                      : reader.overflowed()   ? "an event or line over the size limit"
                                              : "the server closed the stream";
            } else if (!connected_once || (head.status < 500 && head.status != 429)) {
                check_status(head);  // 4xx (and a first 5xx): the exit code says which
                throw cli_error(exit_code::bad_response, "unexpected answer " + describe_error(head));
            } else {
                why = describe_error(head);
                const std::string after = head.header("Retry-After");
                if (!after.empty() && std::all_of(after.begin(), after.end(), [](char c) { return c >= '0' && c <= '9'; }) && after.size() < 4)
                    wait = std::chrono::seconds(std::stoi(after));
            }
        }
        failures = head.status == 200 ? 0 : failures + 1;
        // The server's hint after a clean end; doubling from it while the server stays away.
        milliseconds delay = retry * (1 << std::min(failures, 5));
        delay = std::max(wait, std::min(delay, max_backoff));
        // Up to 20% more, so that many clients cut off together do not return together.
        delay += milliseconds(std::uniform_int_distribution<std::int64_t>(0, delay.count() / 5)(jitter));
        if (!g.quiet)
            std::cerr << "bridge-cli: " << why << "; reconnecting in " << format_duration(delay.count())
                      << (w.last_id ? " to resume after id " + std::to_string(*w.last_id) : std::string()) << '\n';
        if (!client.pause(delay)) return 0;
    }
}

}  // namespace telemetry::cli
