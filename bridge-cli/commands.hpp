// The four commands of bridge-cli, each a function of its options that returns the exit code
// or throws cli_error. main.cpp only turns the command line into these options.
#pragma once

#include "formats.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace telemetry::cli {

struct global_options {
    std::string url = "http://127.0.0.1:8080";
    double timeout_s = 10;
    std::string token;
    bool quiet = false;
};

struct range_options {
    std::string sensor, metric;
    std::string from, to;  // RFC 3339 or epoch ms, passed to the server as given
    std::string last;      // a duration: from = now - last
};

struct sensors_options {
    output_format format = output_format::table;
};

struct history_options {
    range_options range;
    std::size_t limit = 0;  // 0: every reading in the range
    std::size_t page_size = 1000;
    std::string order = "asc";
    output_format format = output_format::table;
};

struct aggregate_options {
    range_options range;
    std::string bucket;  // empty: the server's default (1m)
    output_format format = output_format::table;
};

struct watch_options {
    std::vector<std::string> topics;     // MQTT filters; none means every series
    std::optional<std::string> after;    // replay from after this cursor (`N` or `N@E`); none: live from now
    bool json = false;                   // the reading JSON verbatim, one per line
    std::size_t count = 0;               // exit 0 after this many readings; 0: never
    bool status = false;                 // also print presence (online/offline) events
};

int run_sensors(const global_options& g, const sensors_options& o);
int run_history(const global_options& g, const history_options& o);
int run_aggregate(const global_options& g, const aggregate_options& o);
int run_watch(const global_options& g, const watch_options& o);

}  // namespace telemetry::cli
