// gzip content coding for large response bodies (zlib).
#include "core/gzip.hpp"

#include <zlib.h>

#include <cctype>
#include <cstdlib>

namespace telemetry::bridge::http {

std::optional<std::string> gzip(std::string_view body) {
    z_stream z{};
    // windowBits 15 + 16 selects the gzip wrapper; level 1 because these are live API answers,
    // where latency matters more than the last few percent of size.
    if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return std::nullopt;
    std::string out;
    out.resize(deflateBound(&z, static_cast<uLong>(body.size())));
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(body.data()));
    z.avail_in = static_cast<uInt>(body.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    const int rc = deflate(&z, Z_FINISH);
    const auto produced = z.total_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END) return std::nullopt;
    out.resize(produced);
    return out;
}

bool accepts_gzip(std::string_view v) noexcept {
    bool star = false, gz = false, gz_listed = false;
    while (!v.empty()) {
        const auto comma = v.find(',');
        std::string_view item = v.substr(0, comma);
        v = comma == std::string_view::npos ? std::string_view{} : v.substr(comma + 1);
        const auto semi = item.find(';');
        std::string_view coding = item.substr(0, semi);
        while (!coding.empty() && std::isspace(static_cast<unsigned char>(coding.front()))) coding.remove_prefix(1);
        while (!coding.empty() && std::isspace(static_cast<unsigned char>(coding.back()))) coding.remove_suffix(1);
        bool accepted = true;
        if (semi != std::string_view::npos) {
            std::string_view params = item.substr(semi + 1);
            const auto q = params.find("q=");
            if (q != std::string_view::npos) {
                std::string num(params.substr(q + 2));
                accepted = std::strtod(num.c_str(), nullptr) > 0.0;
            }
        }
        const auto eq = [](std::string_view a, std::string_view b) {
            if (a.size() != b.size()) return false;
            for (std::size_t i = 0; i < a.size(); ++i)
                if (std::tolower(static_cast<unsigned char>(a[i])) != b[i]) return false;
            return true;
        };
        if (eq(coding, "gzip") || eq(coding, "x-gzip")) {
            gz_listed = true;
            gz = accepted;
        } else if (coding == "*") {
            star = accepted;
        }
    }
    return gz_listed ? gz : star;
}

}  // namespace telemetry::bridge::http
