// ListSeries, History and Aggregate: the gRPC forms of GET /api/v1/sensors, .../readings and
// .../aggregate (docs/api.md 3.3, 3.5, 3.6), with the same bounds, cursor and grants.
#include "grpc/calls.hpp"

#include "core/history_limits.hpp"
#include "core/metrics.hpp"
#include "core/payload.hpp"
#include "core/wire_format.hpp"
#include "database.hpp"
#include "live/hub.hpp"
#include "pipeline/query_pool.hpp"

#include <spdlog/spdlog.h>

#include <memory>
#include <optional>
#include <stdexcept>

namespace telemetry::bridge::grpc_api {

namespace v1 = telemetry::v1;
using ::grpc::Status;
using ::grpc::StatusCode;

namespace {

// The call may read (sensor, metric): valid names, within the grant, a known series.
std::optional<Status> series_refusal(const grpc_parts& parts, const ::grpc::CallbackServerContext& call,
                                     const std::string& sensor, const std::string& metric) {
    auto who = authorize(parts, call);
    if (auto* refused = std::get_if<Status>(&who)) return *refused;
    if (!valid_name(sensor) || !valid_name(metric))
        return Status(StatusCode::INVALID_ARGUMENT, "sensor and metric names are [A-Za-z0-9_.-]{1,64}");
    std::string topic;
    assign_topic(topic, parts.live.topic_prefix(), sensor, metric);
    if (!std::get<grant_ptr>(who)->permits(topic))
        return Status(StatusCode::PERMISSION_DENIED, "the token does not grant reading this series");
    if (!parts.live.series().version(sensor, metric))
        return Status(StatusCode::NOT_FOUND, "unknown series " + sensor + "/" + metric);
    return std::nullopt;
}

// Runs `job` on the query pool, which finishes the call; a full queue is UNAVAILABLE at once.
template <typename Job>
::grpc::ServerUnaryReactor* on_query_pool(const grpc_parts& parts, ::grpc::CallbackServerContext* call, Job job) {
    auto* r = call->DefaultReactor();
    const bool queued = parts.queries.submit([r, job = std::move(job)](storage::store_reader& rd) mutable {
        try {
            r->Finish(job(rd));
        } catch (const std::exception& e) {
            spdlog::error("grpc: storage query failed: {}", e.what());
            r->Finish(Status(StatusCode::INTERNAL, "reading storage failed"));
        }
    });
    if (!queued) {
        parts.stats.query_jobs_rejected.fetch_add(1, std::memory_order_relaxed);
        r->Finish(Status(StatusCode::UNAVAILABLE, "too many queries in progress; retry shortly"));
    }
    return r;
}

// A History or Aggregate request's series and time range, as its storage query.
template <typename Query, typename Request>
Query series_range(const Request& req) {
    Query q;
    q.sensor = req.sensor();
    q.metric = req.metric();
    if (req.has_from()) q.from = req.from();
    if (req.has_to()) q.to = req.to();
    return q;
}

::grpc::ServerUnaryReactor* finish_now(::grpc::CallbackServerContext* call, Status s) {
    auto* r = call->DefaultReactor();
    r->Finish(std::move(s));
    return r;
}

}  // namespace

void set_reading(v1::Reading& out, const reading& r) {
    out.set_id(r.id);
    out.set_sensor(r.sensor);
    out.set_metric(r.metric);
    out.set_ts(r.ts);
    out.set_value(r.value);
    if (!r.unit.empty()) out.set_unit(r.unit);
    if (r.seq) out.set_seq(*r.seq);
}

::grpc::ServerUnaryReactor* list_series(const grpc_parts& parts, ::grpc::CallbackServerContext* call,
                                        v1::ListSeriesResponse* out) {
    auto who = authorize(parts, *call);
    if (auto* refused = std::get_if<Status>(&who)) return finish_now(call, *refused);
    const grant_ptr g = std::get<grant_ptr>(std::move(who));
    // From the series table, as /api/v1/sensors: no storage read. Cached per grant until a
    // series changes.
    const std::string& prefix = parts.live.topic_prefix();
    auto d = parts.live.series().overview("grpc\n" + g->key(), [&](const std::vector<series_row>& rows, std::time_t) {
        auto list = std::make_shared<v1::ListSeriesResponse>();
        std::string topic;
        for (const auto& row : rows) {
            assign_topic(topic, prefix, row.sensor, row.metric);
            if (!g->permits(topic)) continue;
            auto* s = list->add_series();
            s->set_sensor(std::string(row.sensor));
            s->set_metric(std::string(row.metric));
            if (!row.unit.empty()) s->set_unit(std::string(row.unit));
            if (row.online) s->set_online(*row.online);
            s->set_count(row.count);
            if (row.latest) set_reading(*s->mutable_latest(), *row.latest);
        }
        return series_table::derived(std::move(list));
    });
    *out = *std::static_pointer_cast<const v1::ListSeriesResponse>(d);
    return finish_now(call, Status::OK);
}

::grpc::ServerUnaryReactor* history(const grpc_parts& parts, ::grpc::CallbackServerContext* call,
                                    const v1::HistoryRequest* req, v1::HistoryResponse* out) {
    if (auto refused = series_refusal(parts, *call, req->sensor(), req->metric())) return finish_now(call, *refused);
    auto q = series_range<storage::history_query>(*req);
    if (req->limit() > max_history_limit)
        return finish_now(call, Status(StatusCode::INVALID_ARGUMENT, "limit must be from 1 to 10000 (0: 1000)"));
    if (req->limit() > 0) q.limit = req->limit();
    q.descending = req->descending();
    if (!req->cursor().empty()) q.cursor = req->cursor();
    return on_query_pool(parts, call, [q = std::move(q), out](storage::store_reader& rd) {
        storage::history_page page;
        try {
            page = rd.history(q);
        } catch (const std::invalid_argument&) {
            return Status(StatusCode::INVALID_ARGUMENT, "cursor is not one this server gave for this query");
        }
        for (const auto& r : page.readings) set_reading(*out->add_readings(), r);
        if (page.next) out->set_next(*page.next);
        return Status::OK;
    });
}

::grpc::ServerUnaryReactor* aggregate(const grpc_parts& parts, ::grpc::CallbackServerContext* call,
                                      const v1::AggregateRequest* req, v1::AggregateResponse* out) {
    if (auto refused = series_refusal(parts, *call, req->sensor(), req->metric())) return finish_now(call, *refused);
    auto q = series_range<storage::aggregate_query>(*req);
    if (req->bucket_ms() < 0) return finish_now(call, Status(StatusCode::INVALID_ARGUMENT, "bucket_ms must be positive"));
    if (req->bucket_ms() > 0) q.bucket_ms = req->bucket_ms();
    if (req->has_from() && req->has_to()) {
        if (q.to <= q.from) return finish_now(call, Status(StatusCode::INVALID_ARGUMENT, "to must be later than from"));
        if (bucket_count(q.from, q.to, q.bucket_ms) > max_buckets)
            return finish_now(call, Status(StatusCode::INVALID_ARGUMENT, std::string(too_many_buckets)));
    }
    const bool has_from = req->has_from(), has_to = req->has_to();
    return on_query_pool(parts, call, [q = std::move(q), out, has_from, has_to](storage::store_reader& rd) {
        if (!has_from || !has_to) {
            // A missing bound is the series' first reading, or just after its last (as HTTP).
            if (const auto span = rd.ts_span(q.sensor, q.metric);
                span && bucket_count_within(*span, has_from ? std::optional(q.from) : std::nullopt,
                                            has_to ? std::optional(q.to) : std::nullopt, q.bucket_ms) > max_buckets)
                return Status(StatusCode::INVALID_ARGUMENT, std::string(too_many_buckets));
        }
        out->set_bucket_ms(q.bucket_ms);
        for (const auto& b : rd.aggregate(q)) {
            auto* o = out->add_buckets();
            o->set_t(b.t);
            o->set_count(b.count);
            o->set_min(b.min);
            o->set_max(b.max);
            o->set_avg(b.avg);
        }
        return Status::OK;
    });
}

}  // namespace telemetry::bridge::grpc_api
