// How bridge-cli writes things down: times, durations, numbers, tables, CSV fields and JSON.
#pragma once

#include <boost/json/value.hpp>

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace telemetry::cli {

enum class output_format { table, json, jsonl, csv };

// Epoch milliseconds -> "2024-11-22T10:06:40.123Z" (UTC, always milliseconds: sortable, fixed width).
std::string format_time(std::int64_t epoch_ms);
// Milliseconds -> a short human duration: "850ms", "1.5s", "12m", "3h", "2d".
std::string format_duration(std::int64_t ms);
// The shortest text that reads back as the same double (21.37 stays "21.37").
std::string format_number(double v);
// The same, rounded to 3 decimals: for averages in tables.
std::string format_rounded(double v);
std::int64_t now_ms();

// JSON numbers may arrive as integers ("20") or doubles ("20.5"); both are a double here.
double as_double(const boost::json::value& v);
// Serialises `v` keeping member order and writing doubles in their shortest form (Boost.JSON
// writes 21.37 as 2.137E1, which is valid but not what a user expects to read).
void append_json(std::string& out, const boost::json::value& v);
// A CSV field, quoted only when it has to be (RFC 4180).
void append_csv_field(std::string& out, std::string_view s);

// A text table: each column as wide as its widest cell; numeric columns aligned right.
class table {
public:
    explicit table(std::vector<std::string> header, std::vector<bool> right_aligned = {});
    void add(std::vector<std::string> row);
    void print(std::ostream& out) const;

private:
    std::vector<std::vector<std::string>> rows_;
    std::vector<bool> right_;
};

}  // namespace telemetry::cli
