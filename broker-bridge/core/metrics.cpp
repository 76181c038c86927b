// Counters and gauges of the bridge, rendered in the Prometheus text exposition format.
#include "core/metrics.hpp"

#include <algorithm>


#include <sstream>

namespace telemetry::bridge {

void metrics::observe_commit(std::chrono::nanoseconds d) noexcept {
    const double s = std::chrono::duration<double>(d).count();
    std::size_t i = 0;
    while (i < commit_bounds_s.size() && s > commit_bounds_s[i]) ++i;
    commit_buckets_[i].fetch_add(1, std::memory_order_relaxed);
    commit_count_.fetch_add(1, std::memory_order_relaxed);
    commit_sum_ns_.fetch_add(static_cast<std::uint64_t>(d.count()), std::memory_order_relaxed);
}

std::string metrics::render(const live_gauges& g) const {
    std::ostringstream o;
    const auto rd = [](const auto& a) { return a.load(std::memory_order_relaxed); };
    const auto family = [&](const char* name, const char* type, const char* help) {
        o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
    };

    family("telemetry_mqtt_messages_received_total", "counter", "MQTT messages received on the reading and status topics.");
    o << "telemetry_mqtt_messages_received_total " << rd(messages_received) << '\n';
    family("telemetry_readings_stored_total", "counter", "Readings committed to storage (rate() of it is the ingest rate).");
    o << "telemetry_readings_stored_total " << rd(readings_stored) << '\n';
    family("telemetry_readings_duplicate_total", "counter",
           "Redelivered readings recognised (as an MQTT redelivery already journaled, or by (series, seq, ts)) and not stored again.");
    o << "telemetry_readings_duplicate_total " << rd(readings_duplicate) << '\n';
    family("telemetry_readings_seq_gaps_total", "counter",
           "Readings missing upstream: seq values skipped between consecutive readings of a series.");
    o << "telemetry_readings_seq_gaps_total " << rd(readings_seq_gaps) << '\n';
    family("telemetry_status_messages_total", "counter", "Presence (status topic) messages received.");
    o << "telemetry_status_messages_total " << rd(status_messages) << '\n';
    family("telemetry_ingest_rejects_total", "counter", "MQTT messages rejected, by reason; never stored.");
    for (const auto r : all_reject_reasons)
        o << "telemetry_ingest_rejects_total{reason=\"" << to_string(r) << "\"} " << rejects(r) << '\n';
    family("telemetry_storage_id_lock_seconds_total", "counter",
           "Time this replica's commits held the store's id lock (PostgreSQL; 0 with SQLite).");
    o << "telemetry_storage_id_lock_seconds_total " << static_cast<double>(rd(id_lock_ns)) / 1e9 << '\n';
    family("telemetry_commit_failures_total", "counter", "Storage commits that failed and were retried.");
    o << "telemetry_commit_failures_total " << rd(commit_failures) << '\n';
    family("telemetry_journal_syncs_total", "counter",
           "Ingest journal syncs to stable storage (ingest.sync on: one per journaled message, before its PUBACK).");
    o << "telemetry_journal_syncs_total " << rd(journal_syncs) << '\n';

    family("telemetry_commit_duration_seconds", "histogram", "Time to commit one batch of journaled readings to SQLite.");
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < commit_bounds_s.size(); ++i) {
        cumulative += rd(commit_buckets_[i]);
        o << "telemetry_commit_duration_seconds_bucket{le=\"" << commit_bounds_s[i] << "\"} " << cumulative << '\n';
    }
    cumulative += rd(commit_buckets_.back());
    o << "telemetry_commit_duration_seconds_bucket{le=\"+Inf\"} " << cumulative << '\n';
    o << "telemetry_commit_duration_seconds_sum " << static_cast<double>(rd(commit_sum_ns_)) / 1e9 << '\n';
    o << "telemetry_commit_duration_seconds_count " << rd(commit_count_) << '\n';

    family("telemetry_mqtt_connected", "gauge", "1 while connected to the MQTT broker.");
    o << "telemetry_mqtt_connected " << rd(mqtt_connected) << '\n';
    family("telemetry_mqtt_subscribed", "gauge", "1 once the reading subscription is acknowledged.");
    o << "telemetry_mqtt_subscribed " << rd(mqtt_subscribed) << '\n';
    if (mqtt_out_enabled.load(std::memory_order_relaxed)) {
        family("telemetry_mqtt_out_published_total", "counter",
               "Committed readings republished to [mqtt_out] and acknowledged by its broker (PUBACK).");
        o << "telemetry_mqtt_out_published_total " << rd(mqtt_out_published) << '\n';
        family("telemetry_mqtt_out_acked_id", "gauge",
               "Every committed reading up to this id is republished and acknowledged (kept across restarts).");
        const auto acked = rd(mqtt_out_acked_id);
        o << "telemetry_mqtt_out_acked_id " << acked << '\n';
        family("telemetry_mqtt_out_lag_ids", "gauge", "Newest committed id minus telemetry_mqtt_out_acked_id.");
        o << "telemetry_mqtt_out_lag_ids " << std::max<std::int64_t>(0, g.newest_id - acked) << '\n';
        family("telemetry_mqtt_out_connected", "gauge", "1 while connected to the [mqtt_out] broker.");
        o << "telemetry_mqtt_out_connected " << rd(mqtt_out_connected) << '\n';
        family("telemetry_mqtt_out_fell_behind_total", "counter",
               "Times the republisher let go of live delivery (max_queued) and read storage instead.");
        o << "telemetry_mqtt_out_fell_behind_total " << rd(mqtt_out_fell_behind) << '\n';
    }
    family("telemetry_storage_ok", "gauge", "1 while the last commit succeeded.");
    o << "telemetry_storage_ok " << (g.storage_writable ? 1 : 0) << '\n';

    family("telemetry_http_responses_total", "counter", "HTTP responses sent, by status code.");
    for (std::size_t i = 0; i < responses_.size(); ++i)
        if (const auto n = rd(responses_[i]))
            o << "telemetry_http_responses_total{code=\"" << i + 100 << "\"} " << n << '\n';
    family("telemetry_http_not_modified_total", "counter", "304 Not Modified responses (answered from memory).");
    o << "telemetry_http_not_modified_total " << rd(responses_[304 - 100]) << '\n';
    family("telemetry_http_connections", "gauge", "Open HTTP connections.");
    o << "telemetry_http_connections " << rd(http_connections) << '\n';
    family("telemetry_http_connections_rejected_total", "counter", "Connections closed at accept because the limit was reached.");
    o << "telemetry_http_connections_rejected_total " << rd(http_connections_rejected) << '\n';
    family("telemetry_http_connections_rejected_per_address_total", "counter",
           "Connections closed at accept because their client address held http.max_connections_per_address.");
    o << "telemetry_http_connections_rejected_per_address_total " << rd(http_connections_rejected_per_address) << '\n';
    family("telemetry_http_tls_handshake_failures_total", "counter",
           "Connections closed because the TLS handshake failed or did not finish within http.handshake_timeout_s.");
    o << "telemetry_http_tls_handshake_failures_total " << rd(http_tls_handshake_failures) << '\n';
    family("telemetry_http_tls_reloads_total", "counter", "Certificate reloads (SIGHUP) that put a new certificate in place.");
    o << "telemetry_http_tls_reloads_total " << rd(http_tls_reloads) << '\n';
    family("telemetry_http_auth_failures_total", "counter", "Requests refused with 401: no token, or a bad, expired or tampered one.");
    o << "telemetry_http_auth_failures_total " << rd(auth_failures) << '\n';
    family("telemetry_http_rate_limited_total", "counter", "Requests answered 429 (per-address or per-token rate limit).");
    o << "telemetry_http_rate_limited_total " << rd(rate_limited) << '\n';
    family("telemetry_query_jobs_rejected_total", "counter", "Storage queries refused (503) because the query queue was full.");
    o << "telemetry_query_jobs_rejected_total " << rd(query_jobs_rejected) << '\n';
    family("telemetry_stream_connections", "gauge", "Open streaming connections, by transport.");
    o << "telemetry_stream_connections{transport=\"sse\"} " << rd(sse_connections) << '\n';
    o << "telemetry_stream_connections{transport=\"websocket\"} " << rd(ws_connections) << '\n';
    o << "telemetry_stream_connections{transport=\"grpc\"} " << rd(grpc_streams) << '\n';
    family("telemetry_stream_readings_sent_total", "counter", "Readings queued to streaming clients.");
    o << "telemetry_stream_readings_sent_total " << rd(stream_readings_sent) << '\n';
    family("telemetry_stream_slow_disconnects_total", "counter", "Streams closed because the client fell behind its send-queue bound.");
    o << "telemetry_stream_slow_disconnects_total " << rd(stream_slow_disconnects) << '\n';
    family("telemetry_stream_budget_disconnects_total", "counter",
           "Of the slow disconnects, those made because all streams together held stream.max_total_queue_bytes.");
    o << "telemetry_stream_budget_disconnects_total " << rd(stream_budget_disconnects) << '\n';
    family("telemetry_stream_queued_bytes", "gauge", "Bytes queued to all streams together, writes in flight included.");
    o << "telemetry_stream_queued_bytes " << rd(stream_queued_bytes) << '\n';
    family("telemetry_stream_readings_conflated_total", "counter",
           "Readings not sent to a conflating stream because a newer one of the series replaced them.");
    o << "telemetry_stream_readings_conflated_total " << rd(stream_conflated) << '\n';
    family("telemetry_longpoll_parked", "gauge", "Long polls currently waiting for a reading.");
    o << "telemetry_longpoll_parked " << g.parked << '\n';
    family("telemetry_series", "gauge", "Series known to the bridge.");
    o << "telemetry_series " << g.series << '\n';
    family("telemetry_newest_id", "gauge", "Greatest committed reading id.");
    o << "telemetry_newest_id " << g.newest_id << '\n';
    return o.str();
}

}  // namespace telemetry::bridge
