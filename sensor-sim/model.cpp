// Temperature model of the simulated sensors: counter-based randomness, so no state to carry.
#include "model.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace telemetry::sim {
namespace {

// splitmix64's finaliser: a cheap, well-mixed hash. Randomness is hash(key, stream, counter)
// rather than a generator's state, which is what makes every value a pure function of time.
constexpr std::uint64_t mix(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

constexpr std::uint64_t hash(std::uint64_t key, std::uint64_t stream, std::uint64_t counter) noexcept {
  return mix(mix(key ^ mix(stream)) ^ counter);
}

// Uniform in [0, 1) from the top 53 bits.
constexpr double unit(std::uint64_t h) noexcept {
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

constexpr double lerp_range(double lo, double hi, double u) noexcept { return lo + (hi - lo) * u; }

// Streams keep the draws of different purposes independent of each other.
enum stream : std::uint64_t {
  stream_profile = 1,
  stream_drift_slow = 2,
  stream_drift_fast = 3,
  stream_noise_a = 4,
  stream_noise_b = 5,
};

constexpr double day_us = 86'400e6;

// Smooth value noise in [-1, 1]: a random level at every knot, eased between knots. It wanders
// like a random walk over hours but, unlike one, stays bounded and needs no history.
double value_noise(std::uint64_t key, std::uint64_t stream_id, std::int64_t t_us,
                   std::int64_t knot_us) noexcept {
  const auto knot = t_us >= 0 ? t_us / knot_us : (t_us - knot_us + 1) / knot_us;  // floor
  const double frac = static_cast<double>(t_us - knot * knot_us) / static_cast<double>(knot_us);
  const double a = 2.0 * unit(hash(key, stream_id, static_cast<std::uint64_t>(knot))) - 1.0;
  const double b = 2.0 * unit(hash(key, stream_id, static_cast<std::uint64_t>(knot + 1))) - 1.0;
  const double ease = frac * frac * (3.0 - 2.0 * frac);  // zero slope at knots: no kinks
  return a + (b - a) * ease;
}

}  // namespace

sensor_profile make_profile(std::uint64_t seed, std::uint32_t index) noexcept {
  const std::uint64_t key = hash(seed, 0, index);
  auto draw = [key](std::uint64_t n) { return unit(hash(key, stream_profile, n)); };

  sensor_profile p;
  // About one sensor in four is outdoors: enough to make the daily cycle obvious on a dashboard.
  p.where = draw(0) < 0.25 ? placement::outdoor : placement::indoor;
  if (p.where == placement::outdoor) {
    // A mild-season outdoor sensor: ~17..22 mean, 3..5 swing, warmest mid-afternoon.
    p.base_c = lerp_range(17.0, 22.0, draw(1));
    p.daily_amplitude_c = lerp_range(3.0, 5.0, draw(2));
    p.peak_hour = lerp_range(14.0, 16.0, draw(3));
    p.noise_sd_c = lerp_range(0.08, 0.15, draw(4));
    p.drift_limit_c = lerp_range(1.0, 2.0, draw(5));
  } else {
    // A heated/cooled room: 20..23 mean, small swing peaking late afternoon.
    p.base_c = lerp_range(20.0, 23.0, draw(1));
    p.daily_amplitude_c = lerp_range(0.5, 1.5, draw(2));
    p.peak_hour = lerp_range(15.0, 18.0, draw(3));
    p.noise_sd_c = lerp_range(0.03, 0.08, draw(4));
    p.drift_limit_c = lerp_range(0.3, 1.0, draw(5));
  }
  return p;
}

temperature_model::temperature_model(std::uint64_t seed, std::uint32_t index) noexcept
    : key_(hash(seed, 0, index)), profile_(make_profile(seed, index)) {}

double temperature_model::daily(time_us t) const noexcept {
  const double hour = 24.0 * std::fmod(static_cast<double>(t.count()), day_us) / day_us;
  return profile_.daily_amplitude_c *
         std::cos(2.0 * std::numbers::pi * (hour - profile_.peak_hour) / 24.0);
}

double temperature_model::drift(time_us t) const noexcept {
  // Two octaves: weather-like changes over ~3 h and smaller wobbles over ~20 min.
  constexpr std::int64_t slow_knot_us = 3LL * 3600 * 1'000'000;
  constexpr std::int64_t fast_knot_us = 20LL * 60 * 1'000'000;
  const double v = value_noise(key_, stream_drift_slow, t.count(), slow_knot_us) +
                   0.35 * value_noise(key_, stream_drift_fast, t.count(), fast_knot_us);
  return profile_.drift_limit_c * v / 1.35;  // |v| <= 1.35, so the bound holds exactly
}

double temperature_model::noise(time_us t) const noexcept {
  // Box-Muller from two independent draws keyed by the exact sample time.
  const auto counter = static_cast<std::uint64_t>(t.count());
  const double u1 = 1.0 - unit(hash(key_, stream_noise_a, counter));  // (0, 1]: log is finite
  const double u2 = unit(hash(key_, stream_noise_b, counter));
  const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  return profile_.noise_sd_c * std::clamp(z, -4.0, 4.0);
}

double temperature_model::value_at(time_us t) const noexcept {
  return profile_.base_c + daily(t) + drift(t) + noise(t);
}

}  // namespace telemetry::sim
