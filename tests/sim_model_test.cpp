// Tests of sensor-sim's temperature model: determinism, believable ranges, daily cycle, noise, drift.
#include "model.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

namespace {

using telemetry::sim::placement;
using telemetry::sim::temperature_model;
using us = std::chrono::microseconds;
using namespace std::chrono_literals;

// 2024-11-22 00:00:00 UTC: a fixed day so the tests never depend on the clock.
constexpr us day0{1'732'233'600'000'000LL};

std::vector<double> series(const temperature_model& m, us start, us step, int n) {
  std::vector<double> out;
  out.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) out.push_back(m.value_at(start + step * i));
  return out;
}

// The first sensor index with the wanted placement under `seed` (a quarter are outdoors).
std::uint32_t find_sensor(std::uint64_t seed, placement where) {
  for (std::uint32_t i = 0; i < 1000; ++i) {
    if (telemetry::sim::make_profile(seed, i).where == where) return i;
  }
  FAIL("no sensor with the wanted placement");
  return 0;
}

}  // namespace

TEST_CASE("sim model: same seed and index give the same series") {
  const temperature_model a(42, 7);
  const temperature_model b(42, 7);
  CHECK(series(a, day0, 1s, 500) == series(b, day0, 1s, 500));
  // Pure in time: sampling order and density do not change a value.
  CHECK(a.value_at(day0 + 12h) == temperature_model(42, 7).value_at(day0 + 12h));
}

TEST_CASE("sim model: different seeds or indexes differ") {
  const auto base = series(temperature_model(42, 7), day0, 1s, 200);
  CHECK(series(temperature_model(43, 7), day0, 1s, 200) != base);
  CHECK(series(temperature_model(42, 8), day0, 1s, 200) != base);
}

TEST_CASE("sim model: values stay believable over simulated days") {
  for (std::uint64_t seed : {1ULL, 2ULL, 99ULL}) {
    for (std::uint32_t i = 0; i < 40; ++i) {
      const temperature_model m(seed, i);
      const auto v = series(m, day0, 1min, 3 * 24 * 60);
      const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
      CAPTURE(seed);
      CAPTURE(i);
      if (m.profile().where == placement::indoor) {
        CHECK(*lo >= 15.0);
        CHECK(*hi <= 30.0);
      } else {
        CHECK(*lo >= 5.0);
        CHECK(*hi <= 35.0);
      }
      for (double x : v) REQUIRE(std::isfinite(x));
    }
  }
}

TEST_CASE("sim model: both placements occur") {
  CHECK(telemetry::sim::make_profile(1, find_sensor(1, placement::outdoor)).where == placement::outdoor);
  CHECK(telemetry::sim::make_profile(1, find_sensor(1, placement::indoor)).where == placement::indoor);
}

TEST_CASE("sim model: daily cycle shows afternoon warmer than night") {
  for (placement where : {placement::outdoor, placement::indoor}) {
    const temperature_model m(5, find_sensor(5, where));
    double afternoon = 0, night = 0;
    int days = 7;
    for (int d = 0; d < days; ++d) {
      const us day = day0 + std::chrono::hours(24 * d);
      // Means over an hour around 15:00 and 03:00 UTC (peaks are 14..18 h by construction).
      for (double x : series(m, day + 14h + 30min, 1min, 60)) afternoon += x / 60;
      for (double x : series(m, day + 2h + 30min, 1min, 60)) night += x / 60;
    }
    afternoon /= days;
    night /= days;
    CAPTURE(static_cast<int>(where));
    CHECK(afternoon > night + m.profile().daily_amplitude_c);
  }
}

TEST_CASE("sim model: noise is nonzero and of the profile's size") {
  const temperature_model m(3, 0);
  double sum = 0, sum2 = 0;
  const int n = 20'000;
  for (int i = 0; i < n; ++i) {
    const double x = m.noise(day0 + us(i * 997));
    sum += x;
    sum2 += x * x;
  }
  const double mean = sum / n;
  const double sd = std::sqrt(sum2 / n - mean * mean);
  CHECK(sd > 0.5 * m.profile().noise_sd_c);
  CHECK(sd < 1.5 * m.profile().noise_sd_c);
  CHECK(std::abs(mean) < 0.1 * m.profile().noise_sd_c);
  // Two readings a microsecond apart get different noise.
  CHECK(m.noise(day0) != m.noise(day0 + 1us));
}

TEST_CASE("sim model: drift wanders slowly and stays bounded") {
  for (std::uint32_t i = 0; i < 10; ++i) {
    const temperature_model m(11, i);
    const double limit = m.profile().drift_limit_c;
    double lo = 1e9, hi = -1e9, max_step = 0, prev = m.drift(day0);
    for (int k = 1; k < 30 * 24 * 60; ++k) {  // a month, minute by minute
      const double x = m.drift(day0 + std::chrono::minutes(k));
      lo = std::min(lo, x);
      hi = std::max(hi, x);
      max_step = std::max(max_step, std::abs(x - prev));
      prev = x;
    }
    CAPTURE(i);
    CHECK(lo >= -limit);
    CHECK(hi <= limit);
    CHECK(hi - lo > 0.2 * limit);      // it does move
    CHECK(max_step < 0.05 * limit);    // but slowly: no jumps between minutes
  }
}
