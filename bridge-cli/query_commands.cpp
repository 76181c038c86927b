// sensors, history and aggregate: one-shot queries, printed as a table, JSON, JSON lines or CSV.
#include "api.hpp"
#include "commands.hpp"
#include "exit_codes.hpp"
#include "http_client.hpp"
#include "core/text.hpp"

#include <boost/json/value.hpp>

#include <cstdio>
#include <iomanip>
#include <iostream>

namespace telemetry::cli {
namespace {

namespace json = boost::json;

// GET with the one retry that is always safe: a 503 whose Retry-After says "soon" (the bridge
// answers so when its query pool is full). Everything else is reported at once.
http_response get_ok(http_client& c, const std::string& target, const header_list& extra = {}) {
    for (int attempt = 0;; ++attempt) {
        auto r = c.get(target, extra);
        if (r.status == 503 && attempt < 2) {
            const std::string after = r.header("Retry-After");
            if (after.size() == 1 && after[0] >= '0' && after[0] <= '5') {
                c.pause(std::chrono::seconds(after[0] - '0'));
                continue;
            }
        }
        check_status(r);
        return r;
    }
}

// Runs f, turning a JSON answer of the wrong shape into exit code 5.
template <typename F>
decltype(auto) from_server(F&& f) {
    try {
        return f();
    } catch (const cli_error&) {
        throw;
    } catch (const std::exception& e) {
        throw cli_error(exit_code::bad_response, std::string("unexpected answer from the server: ") + e.what());
    }
}

std::string str_or(const json::value* v, const std::string& fallback) {
    return v && v->is_string() ? std::string(v->get_string()) : fallback;
}

query_list range_query(const range_options& r) {
    query_list q;
    if (!r.last.empty()) {
        const auto d = telemetry::bridge::parse_duration_ms(r.last);
        if (!d) throw cli_error(exit_code::usage, "--last must be a duration such as 30s, 15m, 1h or 7d");
        q.emplace_back("from", std::to_string(now_ms() - *d));
    } else if (!r.from.empty()) {
        q.emplace_back("from", r.from);
    }
    if (!r.to.empty()) q.emplace_back("to", r.to);
    return q;
}

// JSON arrays are written one element per line, so that they stream and still read well.
class json_writer {
public:
    json_writer(output_format f, std::ostream& out) : lines_(f == output_format::jsonl), out_(out) {}
    void begin() {
        if (!lines_) out_ << '[';
    }
    void add(const json::value& v) {
        std::string s;
        if (!lines_) s = first_ ? "\n" : ",\n";
        append_json(s, v);
        if (lines_) s += '\n';
        out_ << s;
        first_ = false;
    }
    void end() {
        if (!lines_) out_ << "\n]\n";
    }

private:
    bool lines_;
    bool first_ = true;
    std::ostream& out_;
};

}  // namespace

int run_sensors(const global_options& g, const sensors_options& o) {
    auto client = make_client(g);
    const auto r = get_ok(client, make_target(client.url(), {"api", "v1", "sensors"}));
    const auto body = parse_body(r);
    return from_server([&] {
        const auto& series = body.at("series").as_array();
        if (o.format == output_format::json || o.format == output_format::jsonl) {
            json_writer w(o.format, std::cout);
            w.begin();
            for (const auto& s : series) w.add(s);
            w.end();
            return 0;
        }
        const std::int64_t now = now_ms();
        if (o.format == output_format::csv) {
            std::string out = "sensor,metric,unit,online,count,interval_ms,latest_id,latest_ts,latest_value\r\n";
            for (const auto& sv : series) {
                const auto& s = sv.as_object();
                append_csv_field(out, s.at("sensor").as_string());
                out += ',';
                append_csv_field(out, s.at("metric").as_string());
                out += ',';
                append_csv_field(out, str_or(s.if_contains("unit"), ""));
                out += ',';
                if (const auto* on = s.if_contains("online"); on && on->is_bool()) out += on->get_bool() ? "true" : "false";
                out += ',' + std::to_string(s.at("count").to_number<std::int64_t>()) + ',';
                if (const auto* i = s.if_contains("interval_ms"); i && !i->is_null())
                    out += std::to_string(i->to_number<std::int64_t>());
                out += ',';
                if (const auto* l = s.if_contains("latest"); l && l->is_object()) {
                    out += std::to_string(l->at("id").to_number<std::int64_t>()) + ',' +
                           std::to_string(l->at("ts").to_number<std::int64_t>()) + ',' +
                           format_number(as_double(l->at("value")));
                } else {
                    out += ",,";
                }
                out += "\r\n";
            }
            std::cout << out;
            return 0;
        }
        table t({"SERIES", "UNIT", "STATUS", "COUNT", "INTERVAL", "LATEST", "AGE"},
                {false, false, false, true, true, true, true});
        for (const auto& sv : series) {
            const auto& s = sv.as_object();
            std::vector<std::string> row;
            row.push_back(std::string(s.at("sensor").as_string()) + "/" + std::string(s.at("metric").as_string()));
            row.push_back(str_or(s.if_contains("unit"), "-"));
            const auto* on = s.if_contains("online");
            row.push_back(on && on->is_bool() ? (on->get_bool() ? "online" : "offline") : "-");
            row.push_back(std::to_string(s.at("count").to_number<std::int64_t>()));
            const auto* interval = s.if_contains("interval_ms");
            row.push_back(interval && !interval->is_null() ? format_duration(interval->to_number<std::int64_t>()) : "-");
            if (const auto* l = s.if_contains("latest"); l && l->is_object()) {
                row.push_back(format_number(as_double(l->at("value"))));
                row.push_back(format_duration(now - l->at("ts").to_number<std::int64_t>()));
            } else {
                row.push_back("-");
                row.push_back("-");
            }
            t.add(std::move(row));
        }
        t.print(std::cout);
        return 0;
    });
}

int run_history(const global_options& g, const history_options& o) {
    auto client = make_client(g);
    const bool csv = o.format == output_format::csv;
    query_list base = range_query(o.range);
    base.emplace_back("order", o.order);
    if (csv) base.emplace_back("format", "csv");
    const std::vector<std::string> path{"api", "v1", "sensors", o.range.sensor, o.range.metric, "readings"};

    json_writer writer(o.format, std::cout);

    std::size_t printed = 0;
    std::string cursor;
    bool first_page = true;
    for (;;) {
        // Each page asks for no more than is still wanted, so --limit never over-fetches.
        const std::size_t page = o.limit ? std::min(o.page_size, o.limit - printed) : o.page_size;
        query_list q = base;
        q.emplace_back("limit", std::to_string(page));
        if (!cursor.empty()) q.emplace_back("cursor", cursor);
        const auto r = get_ok(client, make_target(client.url(), path, q));
        // Nothing goes to stdout before the first answer is known to be good: a script that
        // gets exit code 3 finds stdout empty.
        if (first_page && (o.format == output_format::json || o.format == output_format::jsonl)) writer.begin();
        if (first_page && o.format == output_format::table)
            std::cout << std::setw(10) << "ID" << "  " << std::left << std::setw(24) << "TIME" << std::right
                      << std::setw(14) << "VALUE" << "  " << std::left << std::setw(6) << "UNIT" << std::right
                      << "  SEQ\n";
        std::string next;
        if (csv) {
            // The server's CSV is passed through; its header row is printed once, not per page.
            std::string_view body = r.body;
            const auto eol = body.find('\n');
            if (eol == std::string_view::npos) throw cli_error(exit_code::bad_response, "a CSV page without a header row");
            if (first_page) std::cout << body.substr(0, eol + 1);
            body.remove_prefix(eol + 1);
            std::size_t rows = 0;
            for (char c : body) rows += c == '\n';
            std::cout << body;
            printed += rows;
            next = r.header("X-Next-Cursor");
            if (rows == 0) next.clear();
        } else {
            const auto v = parse_body(r);
            next = from_server([&] {
                const auto& readings = v.at("readings").as_array();
                for (const auto& rd : readings) {
                    if (o.format == output_format::table) {
                        const auto& m = rd.as_object();
                        const auto* unit = m.if_contains("unit");
                        const auto* seq = m.if_contains("seq");
                        std::cout << std::setw(10) << m.at("id").to_number<std::int64_t>() << "  " << std::left
                                  << std::setw(24) << format_time(m.at("ts").to_number<std::int64_t>()) << std::right
                                  << std::setw(14) << format_number(as_double(m.at("value"))) << "  " << std::left
                                  << std::setw(6) << str_or(unit, "-") << std::right << "  "
                                  << (seq && !seq->is_null() ? std::to_string(seq->to_number<std::int64_t>()) : "-")
                                  << '\n';
                    } else {
                        writer.add(rd);
                    }
                }
                printed += readings.size();
                const auto* n = v.as_object().if_contains("next");
                return readings.empty() ? std::string() : str_or(n, "");
            });
        }
        first_page = false;
        if (next.empty() || (o.limit && printed >= o.limit)) break;
        cursor = next;
    }
    if (o.format == output_format::json || o.format == output_format::jsonl) writer.end();
    std::cout.flush();
    return 0;
}

int run_aggregate(const global_options& g, const aggregate_options& o) {
    auto client = make_client(g);
    query_list q = range_query(o.range);
    if (!o.bucket.empty()) q.emplace_back("bucket", o.bucket);
    const auto r = get_ok(client, make_target(client.url(),
                                              {"api", "v1", "sensors", o.range.sensor, o.range.metric, "aggregate"}, q));
    const auto v = parse_body(r);
    return from_server([&] {
        const auto& buckets = v.at("buckets").as_array();
        if (o.format == output_format::json || o.format == output_format::jsonl) {
            json_writer w(o.format, std::cout);
            w.begin();
            for (const auto& b : buckets) w.add(b);
            w.end();
        } else if (o.format == output_format::csv) {
            std::string out = "t,count,min,max,avg\r\n";
            for (const auto& bv : buckets) {
                const auto& b = bv.as_object();
                out += std::to_string(b.at("t").to_number<std::int64_t>()) + ',' +
                       std::to_string(b.at("count").to_number<std::int64_t>()) + ',' +
                       format_number(as_double(b.at("min"))) + ',' + format_number(as_double(b.at("max"))) + ',' +
                       format_number(as_double(b.at("avg"))) + "\r\n";
            }
            std::cout << out;
        } else {
            table t({"TIME", "COUNT", "MIN", "MAX", "AVG"}, {false, true, true, true, true});
            for (const auto& bv : buckets) {
                const auto& b = bv.as_object();
                t.add({format_time(b.at("t").to_number<std::int64_t>()),
                       std::to_string(b.at("count").to_number<std::int64_t>()),
                       format_number(as_double(b.at("min"))), format_number(as_double(b.at("max"))),
                       format_rounded(as_double(b.at("avg")))});
            }
            t.print(std::cout);
        }
        std::cout.flush();
        return 0;
    });
}

}  // namespace telemetry::cli
