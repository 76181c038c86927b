// The exit codes scripts rely on, and the one exception type that carries them to main().
#pragma once

#include <stdexcept>
#include <string>

namespace telemetry::cli {

enum class exit_code : int {
    ok = 0,
    usage = 1,         // bad flags or arguments (checked before anything is sent)
    network = 2,       // cannot connect, or the connection failed or timed out
    client_error = 3,  // the server answered 4xx (e.g. unknown series, bad parameter)
    server_error = 4,  // the server answered 5xx
    bad_response = 5,  // the server's answer could not be understood
};

// Thrown wherever a command cannot go on; main() prints "bridge-cli: <what>" and exits with code.
class cli_error : public std::runtime_error {
public:
    cli_error(exit_code c, const std::string& what) : std::runtime_error(what), code_(c) {}
    exit_code code() const noexcept { return code_; }

private:
    exit_code code_;
};

}  // namespace telemetry::cli
