// The HTTP representations of live state, cached in the series table.
#include "http/representations.hpp"

#include "core/conditional.hpp"
#include "core/wire_format.hpp"

namespace telemetry::bridge::http {

representation_ptr latest_representation(series_table& t, std::string_view sensor, std::string_view metric) {
    auto d = t.latest(sensor, metric, [](const reading& r, std::time_t changed_at) -> series_table::derived {
        auto rep = std::make_shared<representation>();
        rep->body = reading_json(r);
        rep->etag = strong_etag(rep->body);
        rep->last_modified = changed_at;
        rep->not_modified_http11 =
            std::make_shared<const std::string>(http11_not_modified(rep->etag, rep->last_modified));
        return rep;
    });
    return std::static_pointer_cast<const representation>(d);
}

representation_ptr sensors_representation(series_table& t, const grant& g, std::string_view topic_prefix,
                                          const sensors_page* page) {
    const std::string key = page ? g.key() + '\n' + page->cache_key : g.key();
    auto d = t.overview(key, [&](const std::vector<series_row>& rows, std::time_t changed_at) -> series_table::derived {
        auto rep = std::make_shared<representation>();
        std::string& out = rep->body;
        out.reserve(64 + rows.size() * 256);
        out += "{\"series\":[";
        bool first = true;
        std::string topic;
        std::size_t listed = 0;
        const series_row* last = nullptr;
        bool more = false;
        // Rows come in (sensor, metric) order: a page starts after its "sensor/metric".
        std::string_view after_sensor, after_metric;
        if (page && !page->after.empty()) {
            const auto slash = page->after.find('/');
            after_sensor = std::string_view(page->after).substr(0, slash);
            after_metric = slash == std::string::npos ? std::string_view{} : std::string_view(page->after).substr(slash + 1);
        }
        for (const auto& s : rows) {
            if (!after_sensor.empty() && std::pair(s.sensor, s.metric) <= std::pair(after_sensor, after_metric)) continue;
            if (!g.unrestricted() || page) {
                assign_topic(topic, topic_prefix, s.sensor, s.metric);
                if (!g.permits(topic)) continue;
                if (page && page->only && !page->only->selects(topic)) continue;
            }
            if (page && page->limit && listed == page->limit) {
                more = true;
                break;
            }
            ++listed;
            last = &s;
            if (!first) out.push_back(',');
            first = false;
            out += "{\"sensor\":";
            append_json_string(out, s.sensor);
            out += ",\"metric\":";
            append_json_string(out, s.metric);
            out += ",\"unit\":";
            if (s.unit.empty()) out += "null"; else append_json_string(out, s.unit);
            out += ",\"online\":";
            out += !s.online ? "null" : (*s.online ? "true" : "false");
            out += ",\"count\":";
            append_int(out, s.count);
            out += ",\"interval_ms\":";
            if (s.interval_ms) append_int(out, *s.interval_ms); else out += "null";
            out += ",\"seq_gaps\":";
            if (s.seq_gaps) append_int(out, *s.seq_gaps); else out += "null";
            out += ",\"latest\":";
            if (s.latest) append_reading_json(out, *s.latest); else out += "null";
            out.push_back('}');
        }
        out += "]";
        if (more && last) {
            out += ",\"next\":";
            append_json_string(out, std::string(last->sensor) + '/' + std::string(last->metric));
        }
        out += "}";
        rep->etag = strong_etag(rep->body);
        rep->last_modified = changed_at;
        return rep;
    });
    return std::static_pointer_cast<const representation>(d);
}

}  // namespace telemetry::bridge::http
