// bridge-cli: turns the command line into a command's options and its outcome into an exit code.
#include "commands.hpp"
#include "exit_codes.hpp"

#include <CLI/CLI.hpp>

#include <iostream>
#include <map>

#ifndef BRIDGE_CLI_VERSION
#define BRIDGE_CLI_VERSION "0"
#endif

namespace {

using namespace telemetry::cli;

constexpr const char* exit_codes_help =
    "Exit codes:\n"
    "  0  success (watch: --count reached, or SIGINT/SIGTERM)\n"
    "  1  usage error: bad command, flag or argument\n"
    "  2  cannot connect to the bridge, or the connection failed or timed out\n"
    "  3  the bridge answered 4xx (unknown series, bad parameter, ...); its message is on stderr\n"
    "  4  the bridge answered 5xx\n"
    "  5  the bridge's answer could not be understood\n"
    "Errors go to stderr as 'bridge-cli: <message>'.";

const std::map<std::string, output_format> table_formats{{"table", output_format::table},
                                                         {"json", output_format::json},
                                                         {"jsonl", output_format::jsonl},
                                                         {"csv", output_format::csv}};

void add_format(CLI::App& cmd, output_format& f) {
    cmd.add_option("--format", f,
                   "table (for people), json (one array), jsonl (one object per line) or csv")
        ->transform(CLI::CheckedTransformer(table_formats, CLI::ignore_case))
        ->option_text("table|json|jsonl|csv (default: table)");
}

void add_range(CLI::App& cmd, range_options& r) {
    cmd.add_option("SENSOR", r.sensor, "sensor name, e.g. kitchen")->required();
    cmd.add_option("METRIC", r.metric, "metric name, e.g. temperature")->required();
    auto* from = cmd.add_option("--from", r.from, "start, inclusive: RFC 3339 time or epoch milliseconds");
    cmd.add_option("--to", r.to, "end, exclusive: RFC 3339 time or epoch milliseconds");
    cmd.add_option("--last", r.last, "the last DURATION until now, e.g. 15m, 1h, 7d (instead of --from)")
        ->excludes(from);
}

}  // namespace

int main(int argc, char** argv) {
    std::ios::sync_with_stdio(false);
    CLI::App app{"bridge-cli: watch live readings and query the history of a telemetry broker-bridge",
                 "bridge-cli"};
    app.footer(exit_codes_help);
    app.require_subcommand(1);
    app.fallthrough();  // global flags are accepted after the command too
    app.set_version_flag("--version", "bridge-cli " BRIDGE_CLI_VERSION);
    app.failure_message([](const CLI::App*, const CLI::Error& e) {
        return std::string("bridge-cli: ") + e.what() + "\nRun 'bridge-cli --help' or 'bridge-cli COMMAND --help'.\n";
    });

    global_options g;
    app.add_option("--url", g.url, "the bridge's base URL")->envname("BRIDGE_URL")->capture_default_str();
    app.add_option("--timeout", g.timeout_s, "seconds allowed to connect and for each answer")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--token", g.token, "send 'Authorization: Bearer TOKEN'")->envname("BRIDGE_TOKEN");
    app.add_flag("-q,--quiet", g.quiet, "no notices or warnings on stderr (errors are still printed)");

    sensors_options so;
    auto* sensors = app.add_subcommand("sensors", "List every series: unit, presence, reading count, "
                                                  "publish interval, latest value and its age");
    add_format(*sensors, so.format);

    history_options ho;
    auto* history = app.add_subcommand(
        "history", "Print the readings of one series in a time range, following pages to the end or --limit");
    add_range(*history, ho.range);
    history->add_option("--limit", ho.limit, "print at most N readings (default: all in the range)")
        ->check(CLI::PositiveNumber);
    history->add_option("--page-size", ho.page_size, "readings per request (1-10000)")
        ->check(CLI::Range(1, 10000))
        ->capture_default_str();
    history->add_option("--order", ho.order, "asc (oldest first) or desc")
        ->check(CLI::IsMember({"asc", "desc"}))
        ->capture_default_str();
    add_format(*history, ho.format);
    history->footer("CSV is the bridge's own (id,sensor,metric,ts,value,unit,seq), one header row for all pages.");

    aggregate_options ao;
    auto* aggregate = app.add_subcommand("aggregate", "Print count, min, max and average per time bucket");
    add_range(*aggregate, ao.range);
    aggregate->add_option("--bucket", ao.bucket, "bucket size: 500ms, 10s, 1m, 1h, 1d (the bridge's default: 1m)");
    add_format(*aggregate, ao.format);

    watch_options wo;
    auto* watch = app.add_subcommand(
        "watch", "Print live readings as they are stored, one line each, until interrupted or --count");
    watch->add_option("TOPIC_FILTER", wo.topics, "MQTT topic filters, e.g. 'sensors/+/temperature' (default: all)");
    watch->add_option("--after", wo.after,
                      "first replay every reading after this cursor (a reading id, or a cursor N@E the bridge handed out)")
        ->check(CLI::Validator(
            [](const std::string& v) {
                const auto at = v.find('@');
                const std::string id = v.substr(0, at);
                const bool id_ok = !id.empty() && id.size() <= 18 && id.find_first_not_of("0123456789") == std::string::npos;
                const bool epoch_ok = at == std::string::npos ||
                                      (v.size() - at - 1 == 8 && v.find_first_not_of("0123456789abcdefABCDEF", at + 1) == std::string::npos);
                return id_ok && epoch_ok ? std::string() : "must be a reading id or a cursor N@E (E: eight hexadecimal digits)";
            },
            "CURSOR"));
    watch->add_flag("--json", wo.json, "print each reading's JSON object as the bridge sent it");
    watch->add_option("--count", wo.count, "exit (0) after printing N readings")->check(CLI::PositiveNumber);
    watch->add_flag("--status", wo.status, "also print presence: '<time> <sensor>/status online|offline'");
    watch->footer(
        "Lines are '<time> <sensor>/<metric> <value> [<unit>]', time in UTC. When the connection ends,\n"
        "watch reconnects (honouring the bridge's retry hint, backing off to 30 s) and resumes after the\n"
        "last id it printed: no reading is lost or printed twice. It exits 2/3/4 only if its first\n"
        "request fails; afterwards it retries network errors, 429 and 5xx until interrupted.");

    for (auto* sub : {sensors, history, aggregate, watch}) {
        if (sub->get_footer().empty()) sub->footer(exit_codes_help);
        else sub->footer(sub->get_footer() + "\n\n" + exit_codes_help);
    }

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // CLI11 has its own exit codes (105, 106, 109, ...); scripts get one: 1.
        return app.exit(e) == 0 ? 0 : static_cast<int>(exit_code::usage);
    }

    try {
        if (*sensors) return run_sensors(g, so);
        if (*history) return run_history(g, ho);
        if (*aggregate) return run_aggregate(g, ao);
        if (*watch) return run_watch(g, wo);
    } catch (const cli_error& e) {
        std::cout.flush();
        std::cerr << "bridge-cli: " << e.what() << '\n';
        return static_cast<int>(e.code());
    }
    return static_cast<int>(exit_code::usage);
}
