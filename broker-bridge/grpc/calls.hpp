// What the handlers of the Telemetry service share (only grpc/*.cpp include this): the caller's
// grant from its metadata, and a reading as a telemetry.v1.Reading.
#pragma once

#include "core/auth.hpp"
#include "grpc/grpc_server.hpp"
#include "reading.hpp"

#include "telemetry/v1/telemetry.grpc.pb.h"

#include <variant>

namespace telemetry::bridge::grpc_api {

// The grant of the call's `authorization: Bearer <token>` metadata (the same tokens as HTTP,
// docs/api.md 8.1), or UNAUTHENTICATED saying why.
std::variant<grant_ptr, ::grpc::Status> authorize(const grpc_parts& parts, const ::grpc::CallbackServerContext& call);

// The Reading object of docs/api.md 3.2 as a message (`skipped` left 0).
void set_reading(telemetry::v1::Reading& out, const reading& r);

// The unary calls: each reads storage on the query pool (never on gRPC's threads), as HTTP does.
::grpc::ServerUnaryReactor* list_series(const grpc_parts& parts, ::grpc::CallbackServerContext* call,
                                        telemetry::v1::ListSeriesResponse* out);
::grpc::ServerUnaryReactor* history(const grpc_parts& parts, ::grpc::CallbackServerContext* call,
                                    const telemetry::v1::HistoryRequest* req, telemetry::v1::HistoryResponse* out);
::grpc::ServerUnaryReactor* aggregate(const grpc_parts& parts, ::grpc::CallbackServerContext* call,
                                      const telemetry::v1::AggregateRequest* req,
                                      telemetry::v1::AggregateResponse* out);

}  // namespace telemetry::bridge::grpc_api
