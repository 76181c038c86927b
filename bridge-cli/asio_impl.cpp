// Compiles Asio and Beast once for bridge-cli (separate compilation): http_client.cpp then
// rebuilds quickly. The bridge has its own copy; the CLI links nothing of the bridge.
#include <boost/asio/impl/src.hpp>
#include <boost/beast/src.hpp>
