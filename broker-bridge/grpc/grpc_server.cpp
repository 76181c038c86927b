// The gRPC server: the Telemetry service (authentication, Subscribe's request checks) and the
// server's listening port, TLS and limits. The streams are in subscribe_stream.cpp, the unary
// calls in query_calls.cpp.
#include "grpc/grpc_server.hpp"

#include "core/auth.hpp"
#include "core/cursor.hpp"
#include "core/selector.hpp"
#include "net/tls_identity.hpp"
#include "core/topic_filter.hpp"
#include "grpc/calls.hpp"
#include "grpc/subscribe_stream.hpp"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>

namespace telemetry::bridge {

namespace v1 = telemetry::v1;

namespace {

// A call refused before it started: it ends with `status` and sends nothing else.
class refusal final : public ::grpc::ServerWriteReactor<v1::Event> {
public:
    explicit refusal(::grpc::Status s) { Finish(std::move(s)); }
    void OnDone() override { delete this; }
};

// With TLS, gRPC reads the certificate and key from one file of the bridge's own, which it
// watches: HTTPS's identity (checked when it was loaded, http::tls_identity) is written there at
// start-up and again after each successful SIGHUP reload, by an atomic rename, so gRPC never
// reads a half-written pair or a key that does not belong to the certificate. gRPC 1.51's C++ API
// has no way to hand it new credentials directly. The file lives in a private folder (0700) that
// is removed when the server goes.
class watched_identity {
public:
    explicit watched_identity(const http::tls_identity& id) : id_(id) {
        std::string tmpl = (std::filesystem::temp_directory_path() / "telemetry-grpc-tls-XXXXXX").string();
        if (!::mkdtemp(tmpl.data())) throw config_error("grpc: cannot create a private folder for its TLS identity");
        dir_ = tmpl;
        write();
        provider_ = std::make_shared<::grpc::experimental::FileWatcherCertificateProvider>(
            file().string(), file().string(), refresh_s);
    }
    ~watched_identity() {
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    watched_identity(const watched_identity&) = delete;
    watched_identity& operator=(const watched_identity&) = delete;

    std::shared_ptr<::grpc::ServerCredentials> credentials() const {
        ::grpc::experimental::TlsServerCredentialsOptions opts(provider_);
        opts.watch_identity_key_cert_pairs();
        opts.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
        return ::grpc::experimental::TlsServerCredentials(opts);
    }

    // Key and chain in one file (PEM readers skip blocks of the other kind), replaced at once.
    void write() const {
        const auto pem = id_.pem();
        const auto next = dir_ / "identity.pem.next";
        {
            const int fd = ::open(next.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            if (fd < 0) throw config_error("grpc: cannot write " + next.string());
            std::string text = pem.private_key;
            if (!text.empty() && text.back() != '\n') text += '\n';
            text += pem.cert_chain;
            const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
            ::close(fd);
            if (!ok) throw config_error("grpc: cannot write " + next.string());
        }
        std::filesystem::rename(next, file());
    }

private:
    static constexpr unsigned refresh_s = 1;  // how soon gRPC sees a reload
    std::filesystem::path file() const { return dir_ / "identity.pem"; }

    const http::tls_identity& id_;
    std::filesystem::path dir_;
    std::shared_ptr<::grpc::experimental::FileWatcherCertificateProvider> provider_;
};

class telemetry_service final : public v1::Telemetry::CallbackService {
public:
    explicit telemetry_service(const grpc_parts& parts)
        : parts_(parts),
          streams_{parts.live, parts.catchup, parts.queries, parts.io, parts.stats, parts.cfg.stream, parts.budget} {}

    ::grpc::ServerWriteReactor<v1::Event>* Subscribe(::grpc::CallbackServerContext* call,
                                                    const v1::SubscribeRequest* req) override {
        using ::grpc::Status;
        using ::grpc::StatusCode;
        auto who = grpc_api::authorize(parts_, *call);
        if (auto* refused = std::get_if<Status>(&who)) return new refusal(std::move(*refused));
        // Each stream's memory is bounded; their number is too, by the bound on HTTP connections.
        if (parts_.stats.grpc_streams.load(std::memory_order_relaxed) >=
            static_cast<std::int64_t>(parts_.cfg.http.max_connections))
            return new refusal(Status(StatusCode::RESOURCE_EXHAUSTED,
                                      "too many open streams (http.max_connections); retry shortly"));
        if (req->has_after() && req->after() < 0)
            return new refusal(Status(StatusCode::INVALID_ARGUMENT, "after must be a reading id (a non-negative integer)"));
        if (req->policy() != v1::POLICY_ALL && req->policy() != v1::POLICY_CONFLATE)
            return new refusal(Status(StatusCode::INVALID_ARGUMENT, "policy must be POLICY_ALL or POLICY_CONFLATE"));
        std::optional<bucket_spec> bucket;
        if (!req->bucket().empty()) {
            const auto w = live_bucket_width(req->bucket());
            if (!w) return new refusal(Status(StatusCode::INVALID_ARGUMENT, std::string(live_bucket_error)));
            if (req->policy() == v1::POLICY_CONFLATE)
                return new refusal(Status(StatusCode::INVALID_ARGUMENT, "POLICY_CONFLATE cannot be combined with bucket"));
            bucket = bucket_spec{*w, req->provisional()};
        } else if (req->provisional()) {
            return new refusal(Status(StatusCode::INVALID_ARGUMENT, "provisional needs bucket"));
        }
        const std::vector<std::string> topics(req->topics().begin(), req->topics().end());
        const auto& sc = parts_.cfg.stream;
        std::vector<topic_filter> filters;
        if (auto e = parse_client_filters(topics, sc.max_filters, sc.max_filter_bytes, sc.max_filter_levels, filters);
            !e.empty())
            return new refusal(Status(StatusCode::INVALID_ARGUMENT, e));

        grpc_api::subscribe_params p;
        p.selector = std::make_shared<const reading_selector>(std::move(filters), std::get<grant_ptr>(std::move(who)));
        if (!p.selector->can_select_anything())
            return new refusal(Status(StatusCode::PERMISSION_DENIED, "the token grants none of these topics"));
        if (!req->epoch().empty()) {
            const auto epoch = parse_epoch(req->epoch());
            if (!epoch || !req->has_after())
                return new refusal(Status(StatusCode::INVALID_ARGUMENT, "epoch must be eight hexadecimal digits, with after"));
        }
        if (req->has_after()) {
            if (req->after() < 0) return new refusal(Status(StatusCode::INVALID_ARGUMENT, "after must not be negative"));
            wire_cursor c{req->after(), {}};
            if (!req->epoch().empty()) c.epoch = parse_epoch(req->epoch());
            const auto at = parts_.live.resume_from(c);
            p.after = at.after;
            p.epoch_reset = at.epoch_reset;
        }
        p.conflate = req->policy() == v1::POLICY_CONFLATE;
        p.bucket = bucket;
        auto s = std::make_shared<grpc_api::subscribe_stream>(streams_, *call, std::move(p));
        s->start();
        return s.get();
    }

    ::grpc::ServerUnaryReactor* ListSeries(::grpc::CallbackServerContext* call, const v1::ListSeriesRequest*,
                                           v1::ListSeriesResponse* out) override {
        return grpc_api::list_series(parts_, call, out);
    }
    ::grpc::ServerUnaryReactor* History(::grpc::CallbackServerContext* call, const v1::HistoryRequest* req,
                                        v1::HistoryResponse* out) override {
        return grpc_api::history(parts_, call, req, out);
    }
    ::grpc::ServerUnaryReactor* Aggregate(::grpc::CallbackServerContext* call, const v1::AggregateRequest* req,
                                          v1::AggregateResponse* out) override {
        return grpc_api::aggregate(parts_, call, req, out);
    }

private:
    const grpc_parts parts_;  // references to the bridge's parts
    grpc_api::stream_context streams_;
};

std::string host_port(const std::string& host, std::uint16_t port) {
    const bool v6 = host.find(':') != std::string::npos;
    return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

}  // namespace

namespace grpc_api {

std::variant<grant_ptr, ::grpc::Status> authorize(const grpc_parts& parts, const ::grpc::CallbackServerContext& call) {
    // `authorization: Bearer <token>`, the scheme case-insensitive as HTTP's header.
    std::string token;
    const auto& md = call.client_metadata();
    if (const auto it = md.find("authorization"); it != md.end()) {
        const std::string_view v(it->second.data(), it->second.size());
        std::string scheme(v.substr(0, 7));
        for (auto& ch : scheme) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        if (v.size() > 7 && scheme == "bearer ") token = v.substr(7);
    }
    auto who = parts.auth.authenticate(token, std::time(nullptr));
    if (auto* why = std::get_if<auth_failure>(&who)) {
        parts.stats.auth_failures.fetch_add(1, std::memory_order_relaxed);
        return ::grpc::Status(::grpc::StatusCode::UNAUTHENTICATED, std::string(describe(*why)));
    }
    return std::get<grant_ptr>(std::move(who));
}

}  // namespace grpc_api

struct grpc_server::impl {
    explicit impl(const grpc_parts& parts)
        : service(parts), identity(parts.tls ? std::make_unique<watched_identity>(*parts.tls) : nullptr) {}
    telemetry_service service;
    std::unique_ptr<watched_identity> identity;  // TLS: what gRPC offers
    std::unique_ptr<::grpc::Server> server;
    int port = 0;
};

grpc_server::grpc_server(const grpc_parts& parts) : p_(std::make_unique<impl>(parts)) {
    const auto& g = parts.cfg.grpc;
    ::grpc::ServerBuilder b;
    b.AddListeningPort(host_port(g.host, g.port),
                       p_->identity ? p_->identity->credentials() : ::grpc::InsecureServerCredentials(), &p_->port);
    b.RegisterService(&p_->service);
    // Requests are small (a SubscribeRequest is a few filters): a client cannot make the bridge
    // buffer a large one.
    b.SetMaxReceiveMessageSize(static_cast<int>(parts.cfg.stream.ws_max_message_bytes));
    // A peer that vanished without closing is found by keepalive pings, so its stream ends.
    b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60'000);
    b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20'000);
    p_->server = b.BuildAndStart();
    if (!p_->server || p_->port == 0)
        throw config_error("grpc: cannot listen on " + host_port(g.host, g.port) +
                           "; stop what uses it, or set another address: [grpc] listen in the configuration");
    spdlog::info("grpc: serving {} on {}", p_->identity ? "TLS" : "plaintext", host_port(g.host, port()));
}

grpc_server::~grpc_server() {
    if (p_->server) stop(std::chrono::milliseconds(0));
}

std::uint16_t grpc_server::port() const noexcept { return static_cast<std::uint16_t>(p_->port); }

void grpc_server::identity_changed() {
    if (!p_->identity) return;
    try {
        p_->identity->write();
    } catch (const std::exception& e) {
        spdlog::error("grpc: the reloaded TLS certificate is NOT in use on the gRPC port: {}", e.what());
    }
}

void grpc_server::stop(std::chrono::milliseconds grace) {
    if (!p_->server) return;
    p_->server->Shutdown(std::chrono::system_clock::now() + grace);
    p_->server->Wait();
    p_->server.reset();
}

}  // namespace telemetry::bridge
