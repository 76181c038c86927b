// Per-sensor MQTT identities: patterns with {id}, or a `user:password` file.
#include "credentials.hpp"

#include <fstream>
#include <stdexcept>

namespace telemetry::sim {

std::string expand_id(const std::string& pattern, const std::string& id) {
  static const std::string marker = "{id}";
  std::string out;
  std::size_t from = 0;
  for (auto at = pattern.find(marker); at != std::string::npos; at = pattern.find(marker, from)) {
    out.append(pattern, from, at - from);
    out += id;
    from = at + marker.size();
  }
  out.append(pattern, from);
  return out;
}

credential_source::credential_source(const credential_settings& s) : settings_(s), username_(s.username) {
  if (!s.password.empty() && !s.password_file.empty())
    throw std::invalid_argument("password and password_file: give one of them");
  // Credentials without a user name mean "each sensor logs in as itself".
  if (username_.empty() && (!s.password.empty() || !s.password_file.empty())) username_ = "{id}";
  if (s.password_file.empty()) return;
  std::ifstream in(s.password_file);
  if (!in) throw std::invalid_argument("password_file: cannot read '" + s.password_file + "'");
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.front() == '#') continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos || colon == 0)
      throw std::invalid_argument("password_file: " + s.password_file + ":" + std::to_string(number) +
                                  ": expected user:password");
    // Later lines win, as when a file is edited by appending.
    file_[line.substr(0, colon)] = line.substr(colon + 1);
  }
}

credentials credential_source::for_sensor(const std::string& id) const {
  credentials c;
  c.cert_file = expand_id(settings_.cert_file, id);
  c.key_file = expand_id(settings_.key_file, id);
  if (username_.empty()) return c;
  c.username = expand_id(username_, id);
  if (settings_.password_file.empty()) {
    c.password = expand_id(settings_.password, id);
    return c;
  }
  const auto it = file_.find(c.username);
  if (it == file_.end())
    throw std::invalid_argument("password_file: " + settings_.password_file + " has no line for user '" +
                                c.username + "' (sensor " + id + ")");
  c.password = it->second;
  return c;
}

}  // namespace telemetry::sim
