// Per-sensor MQTT identities: each simulated sensor logs in as itself, as a real device would, so
// a broker ACL such as `pattern write sensors/%u/#` confines it to its own topics.
#pragma once

#include <map>
#include <string>

namespace telemetry::sim {

// What the user configured (file or flags); every string may hold `{id}`, the sensor's id.
struct credential_settings {
  std::string username;       // empty: the sensor id when a password is configured, else anonymous
  std::string password;       // one password for every sensor (or a pattern such as "pw-{id}")
  std::string password_file;  // `user:password` lines; each sensor takes the line of its user
  std::string cert_file;      // client certificate (TLS), e.g. "certs/{id}.pem"
  std::string key_file;
};

// One sensor's login; empty username = anonymous.
struct credentials {
  std::string username;
  std::string password;
  std::string cert_file;
  std::string key_file;
};

// `pattern` with every `{id}` replaced by `id`.
[[nodiscard]] std::string expand_id(const std::string& pattern, const std::string& id);

// Resolves settings to each sensor's credentials. Throws std::invalid_argument naming the
// problem (both password and password_file, an unreadable file, a sensor without a line).
class credential_source {
 public:
  explicit credential_source(const credential_settings& s);
  [[nodiscard]] credentials for_sensor(const std::string& id) const;
  [[nodiscard]] bool anonymous() const noexcept { return username_.empty(); }

 private:
  credential_settings settings_;
  std::string username_;  // the pattern actually used
  std::map<std::string, std::string> file_;  // user -> password, from password_file
};

}  // namespace telemetry::sim
