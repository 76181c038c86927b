// stream-bench, gRPC transport: telemetry.v1.Telemetry/Subscribe calls on gRPC's callback API
// (one ClientReadReactor per call, on a few shared channels), so that thousands of streams run on
// gRPC's few threads. This header names no gRPC type (stream_bench.cpp stays free of gRPC's
// headers); stream_grpc.cpp holds the calls. What each event means is decided by the connection
// in stream_bench.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace stream_bench::grpc_sub {

// What one Subscribe call reports, on gRPC's threads, one callback at a time per call. `rx_us`:
// system_clock microseconds when the message was handed to us.
class handler {
public:
    virtual ~handler() = default;
    // The initial metadata arrived: the subscription is registered. `after`: the id it starts
    // after (metadata `telemetry-after`), when the bridge sent one.
    virtual void opened(std::optional<std::int64_t> after) = 0;
    virtual void reading(std::int64_t id, std::optional<std::int64_t> seq, std::int64_t ts_ms, std::int64_t rx_us) = 0;
    virtual void status(std::string_view sensor, std::int64_t rx_us) = 0;
    virtual void heartbeat() = 0;
    virtual void other() = 0;  // Reset, BucketEvent
    // The call ended (the last callback of this call). `code`: the gRPC status code, 0 for OK.
    virtual void ended(int code, const std::string& message) = 0;
};

class client;

// One Subscribe call; cancel() ends it (ended follows on gRPC's thread).
class call {
public:
    virtual ~call() = default;
    virtual void cancel() = 0;
};

// `channels` HTTP/2 connections to `target` (HOST:PORT, plaintext), each its own (a local
// subchannel pool: channels with equal arguments would otherwise share one connection).
class client {
public:
    client(const std::string& target, int channels, std::string token);
    ~client();  // cancels the calls still running and waits (at most a few seconds) for their end
    client(const client&) = delete;
    client& operator=(const client&) = delete;

    // Starts Subscribe(topics = [topic], after) on channel `index` mod channels. The call keeps
    // `h` alive until its ended has returned.
    std::shared_ptr<call> subscribe(std::size_t index, const std::string& topic, std::optional<std::int64_t> after,
                                    std::shared_ptr<handler> h);

    int channels() const;

    struct impl;  // stream_grpc.cpp: the channels and the calls still running

private:
    std::unique_ptr<impl> impl_;
};

}  // namespace stream_bench::grpc_sub
