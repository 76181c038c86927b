// The identity of an MQTT delivery: what a QoS 1 redelivery (DUP) shares with the first delivery
// of the same message, so that the journal can recognise it whatever the payload's form. Pure.
#pragma once

#include <cstdint>
#include <string_view>

namespace telemetry::bridge {

// A 64-bit hash (FNV-1a) of the packet identifier, the topic and the payload; never 0, which
// means "no identity". The broker sends a redelivery with the packet identifier of the first
// delivery and reuses an identifier only after 65535 further messages, so within the deliveries
// the journal keeps, equal keys mean the same message (up to a 2^-64 chance per pair).
// Persisted in the journal: changing the function makes a crash before an upgrade store the
// redeliveries after it again.
std::uint64_t delivery_key(int packet_id, std::string_view topic, std::string_view payload) noexcept;

}  // namespace telemetry::bridge
