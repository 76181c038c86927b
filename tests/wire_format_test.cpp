// Unit tests of the wire forms of a reading that are not covered end to end elsewhere: CSV rows,
// including cells a spreadsheet would run as formulas (docs/api.md section 3.5).
#include "core/wire_format.hpp"

#include <doctest/doctest.h>

using namespace telemetry;
using namespace telemetry::bridge;

namespace {
std::string row(std::string sensor, std::string unit, double value = -1.5) {
    reading r;
    r.id = 7;
    r.sensor = std::move(sensor);
    r.metric = "temperature";
    r.ts = 1000;
    r.value = value;
    r.unit = std::move(unit);
    r.seq = 3;
    std::string out;
    append_csv_row(out, r);
    return out;
}
}  // namespace

TEST_CASE("wire format - CSV rows quote per RFC 4180 and never export a formula") {
    CHECK(row("a", "Cel") == "7,a,temperature,1000,-1.5,Cel,3\r\n");  // a negative value stays a number
    CHECK(row("a", "") == "7,a,temperature,1000,-1.5,,3\r\n");
    CHECK(row("a", "m,s") == "7,a,temperature,1000,-1.5,\"m,s\",3\r\n");
    CHECK(row("a", "say \"hi\"") == "7,a,temperature,1000,-1.5,\"say \"\"hi\"\"\",3\r\n");
    CHECK(row("a", "=HYPERLINK(\"x\")") == "7,a,temperature,1000,-1.5,\"'=HYPERLINK(\"\"x\"\")\",3\r\n");
    CHECK(row("a", "+1") == "7,a,temperature,1000,-1.5,\"'+1\",3\r\n");
    CHECK(row("a", "@SUM") == "7,a,temperature,1000,-1.5,\"'@SUM\",3\r\n");
    CHECK(row("-cmd", "Cel") == "7,\"'-cmd\",temperature,1000,-1.5,Cel,3\r\n");
}
