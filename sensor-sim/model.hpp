// Temperature model of the simulated sensors: pure, seeded and deterministic, no I/O.
#pragma once

#include <chrono>
#include <cstdint>

namespace telemetry::sim {

// Where a simulated sensor hangs decides how strongly the day shows in its signal.
enum class placement { indoor, outdoor };

// Everything that makes one sensor differ from another; derived from (seed, index) only.
struct sensor_profile {
  placement where = placement::indoor;
  double base_c = 21.0;             // long-run mean temperature
  double daily_amplitude_c = 1.0;   // half the peak-to-peak swing of the 24 h cycle
  double peak_hour = 16.0;          // hour of the day (UTC) of the daily maximum
  double noise_sd_c = 0.05;         // white measurement noise, standard deviation
  double drift_limit_c = 0.8;       // the slow drift never leaves [-limit, +limit]
};

// The profile of sensor `index` in a fleet seeded with `seed`.
[[nodiscard]] sensor_profile make_profile(std::uint64_t seed, std::uint32_t index) noexcept;

// One sensor's signal: base + daily cycle + slow drift + noise, each a pure function of time.
//
// Invariant: value_at(t) depends only on (seed, index, t), never on call order or on which
// other times were sampled, so a run is reproducible whatever the publishing rate and a
// restarted simulator continues the same curve. Immutable after construction: safe to share
// between threads.
class temperature_model {
 public:
  using time_us = std::chrono::microseconds;  // time since the Unix epoch

  temperature_model(std::uint64_t seed, std::uint32_t index) noexcept;

  [[nodiscard]] const sensor_profile& profile() const noexcept { return profile_; }

  // The components, exposed so tests can check each on its own.
  [[nodiscard]] double daily(time_us t) const noexcept;  // in [-amplitude, +amplitude]
  [[nodiscard]] double drift(time_us t) const noexcept;  // in [-drift_limit, +drift_limit]
  [[nodiscard]] double noise(time_us t) const noexcept;  // ~ N(0, noise_sd), clipped at 4 sd

  // The reading a sensor would report at `t`, in degrees Celsius.
  [[nodiscard]] double value_at(time_us t) const noexcept;

 private:
  std::uint64_t key_;  // mixes seed and index; every random draw hashes from it
  sensor_profile profile_;
};

}  // namespace telemetry::sim
