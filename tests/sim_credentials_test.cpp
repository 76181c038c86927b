// Unit tests of sensor-sim's per-sensor MQTT identities (sensor-sim/credentials.hpp).
#include "credentials.hpp"
#include "temp_dir.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <stdexcept>

using namespace telemetry::sim;

TEST_CASE("sim credentials - none configured: anonymous, as before") {
    const credential_source src(credential_settings{});
    CHECK(src.anonymous());
    const auto c = src.for_sensor("sim-0001");
    CHECK(c.username.empty());
    CHECK(c.password.empty());
}

TEST_CASE("sim credentials - a shared password: each sensor logs in as its own id") {
    credential_settings s;
    s.password = "shared-secret";
    const credential_source src(s);
    CHECK(src.for_sensor("sim-0001").username == "sim-0001");
    CHECK(src.for_sensor("sim-0002").username == "sim-0002");
    CHECK(src.for_sensor("sim-0002").password == "shared-secret");
}

TEST_CASE("sim credentials - patterns expand the sensor id everywhere") {
    credential_settings s;
    s.username = "dev-{id}";
    s.password = "pw-{id}-{id}";
    s.cert_file = "certs/{id}.pem";
    const credential_source src(s);
    const auto c = src.for_sensor("a7");
    CHECK(c.username == "dev-a7");
    CHECK(c.password == "pw-a7-a7");
    CHECK(c.cert_file == "certs/a7.pem");
    CHECK(expand_id("no marker", "x") == "no marker");
}

TEST_CASE("sim credentials - a fixed user name is shared by every sensor (the old behaviour)") {
    credential_settings s;
    s.username = "fleet";
    s.password = "p";
    const credential_source src(s);
    CHECK(src.for_sensor("sim-0000").username == "fleet");
    CHECK(src.for_sensor("sim-0009").username == "fleet");
}

TEST_CASE("sim credentials - password_file gives each sensor the password of its user") {
    telemetry::testing::temp_dir dir;
    const auto file = (dir / "passwords").string();
    std::ofstream(file) << "# comment\nsim-0000:first\r\n\nsim-0001:with:colon\nsim-0000:replaced\n";
    credential_settings s;
    s.password_file = file;
    const credential_source src(s);
    CHECK(src.for_sensor("sim-0000").password == "replaced");
    CHECK(src.for_sensor("sim-0001").password == "with:colon");
    CHECK(src.for_sensor("sim-0001").username == "sim-0001");
    CHECK_THROWS_WITH_AS(static_cast<void>(src.for_sensor("sim-0002")),
                         doctest::Contains("no line for user 'sim-0002'"), std::invalid_argument);
}

TEST_CASE("sim credentials - bad settings are refused with the reason") {
    telemetry::testing::temp_dir dir;
    credential_settings both;
    both.password = "x";
    both.password_file = (dir / "f").string();
    CHECK_THROWS_AS(credential_source{both}, std::invalid_argument);
    credential_settings missing;
    missing.password_file = (dir / "absent").string();
    CHECK_THROWS_WITH_AS(credential_source{missing}, doctest::Contains("cannot read"), std::invalid_argument);
    const auto bad = (dir / "bad").string();
    std::ofstream(bad) << "no-colon-here\n";
    credential_settings malformed;
    malformed.password_file = bad;
    CHECK_THROWS_WITH_AS(credential_source{malformed}, doctest::Contains(":1: expected user:password"),
                         std::invalid_argument);
}
