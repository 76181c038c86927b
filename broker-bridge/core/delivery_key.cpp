// The identity of an MQTT delivery.
#include "core/delivery_key.hpp"

namespace telemetry::bridge {
namespace {

constexpr std::uint64_t fnv_offset = 14695981039346656037ull;
constexpr std::uint64_t fnv_prime = 1099511628211ull;

void mix(std::uint64_t& h, std::string_view bytes) noexcept {
    for (const char c : bytes) h = (h ^ static_cast<unsigned char>(c)) * fnv_prime;
}

}  // namespace

std::uint64_t delivery_key(int packet_id, std::string_view topic, std::string_view payload) noexcept {
    std::uint64_t h = fnv_offset;
    const char id[2] = {static_cast<char>((packet_id >> 8) & 0xff), static_cast<char>(packet_id & 0xff)};
    mix(h, std::string_view(id, 2));
    // The topic's length first, so that no topic/payload split can be confused with another.
    const auto n = static_cast<std::uint32_t>(topic.size());
    const char len[4] = {static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8),
                         static_cast<char>(n)};
    mix(h, std::string_view(len, 4));
    mix(h, topic);
    mix(h, payload);
    return h == 0 ? 1 : h;
}

}  // namespace telemetry::bridge
