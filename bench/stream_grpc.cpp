// stream-bench, gRPC transport (see stream_grpc.hpp): each stream is a Subscribe call driven by a
// ClientReadReactor; gRPC runs the reactions on its own few threads, whatever the number of calls.
#include "stream_grpc.hpp"

#include "telemetry/v1/telemetry.grpc.pb.h"

#include <grpcpp/grpcpp.h>

#include <charconv>
#include <chrono>
#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <unordered_set>
#include <utility>
#include <vector>

namespace stream_bench::grpc_sub {

namespace {

std::int64_t now_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

class subscribe_call;

struct client::impl {
    std::vector<std::unique_ptr<telemetry::v1::Telemetry::Stub>> stubs;
    std::vector<std::shared_ptr<grpc::Channel>> channels;
    std::string authorization;  // "Bearer <token>", or empty
    std::mutex mu;
    std::condition_variable all_done;
    std::unordered_set<subscribe_call*> live;  // calls whose OnDone has not run yet
};

class subscribe_call final : public call,
                             public grpc::ClientReadReactor<telemetry::v1::Event>,
                             public std::enable_shared_from_this<subscribe_call> {
public:
    subscribe_call(client::impl& owner, std::shared_ptr<handler> h) : owner_(owner), h_(std::move(h)) {}

    void start(telemetry::v1::Telemetry::Stub& stub, const std::string& topic, std::optional<std::int64_t> after) {
        if (!owner_.authorization.empty()) ctx_.AddMetadata("authorization", owner_.authorization);
        if (!topic.empty()) req_.add_topics(topic);
        if (after) req_.set_after(*after);
        {
            const std::lock_guard lock(owner_.mu);
            owner_.live.insert(this);
        }
        self_ = shared_from_this();  // released by OnDone, gRPC's last reaction for this call
        stub.async()->Subscribe(&ctx_, &req_, this);
        StartRead(&ev_);
        StartCall();
    }

    void cancel() override { ctx_.TryCancel(); }

    void OnReadInitialMetadataDone(bool ok) override {
        if (!ok) return;  // OnDone follows with the status
        std::optional<std::int64_t> after;
        const auto& md = ctx_.GetServerInitialMetadata();
        if (const auto it = md.find("telemetry-after"); it != md.end()) {
            std::int64_t v = 0;
            const auto r = std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
            if (r.ec == std::errc{}) after = v;
        }
        h_->opened(after);
    }

    void OnReadDone(bool ok) override {
        if (!ok) return;  // the stream ended: OnDone follows
        const std::int64_t rx = now_us();
        switch (ev_.kind_case()) {
        case telemetry::v1::Event::kReading: {
            const auto& r = ev_.reading();
            h_->reading(r.id(), r.has_seq() ? std::optional<std::int64_t>(r.seq()) : std::nullopt, r.ts(), rx);
            break;
        }
        case telemetry::v1::Event::kStatus:
            h_->status(ev_.status().sensor(), rx);
            break;
        case telemetry::v1::Event::kHeartbeat:
            h_->heartbeat();
            break;
        default:
            h_->other();
            break;
        }
        StartRead(&ev_);
    }

    void OnDone(const grpc::Status& status) override {
        h_->ended(static_cast<int>(status.error_code()), status.error_message());
        h_.reset();  // the handler holds this call: break the cycle
        {
            const std::lock_guard lock(owner_.mu);
            owner_.live.erase(this);
        }
        owner_.all_done.notify_all();
        const auto keep = std::move(self_);  // may be the last reference: nothing after this
    }

private:
    client::impl& owner_;
    std::shared_ptr<handler> h_;
    std::shared_ptr<subscribe_call> self_;
    grpc::ClientContext ctx_;
    telemetry::v1::SubscribeRequest req_;
    telemetry::v1::Event ev_;
};

client::client(const std::string& target, int channels, std::string token) : impl_(std::make_unique<impl>()) {
    if (!token.empty()) impl_->authorization = "Bearer " + std::move(token);
    for (int i = 0; i < std::max(1, channels); ++i) {
        grpc::ChannelArguments args;
        args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // one TCP connection per channel
        auto ch = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
        impl_->stubs.push_back(telemetry::v1::Telemetry::NewStub(ch));
        impl_->channels.push_back(std::move(ch));
    }
}

client::~client() {
    // Cancelled outside the lock: gRPC may run a call's OnDone (which takes it) inside TryCancel.
    std::vector<std::shared_ptr<subscribe_call>> running;
    {
        const std::lock_guard lock(impl_->mu);
        for (subscribe_call* c : impl_->live) running.push_back(c->shared_from_this());
    }
    for (auto& c : running) c->cancel();
    running.clear();
    std::unique_lock lock(impl_->mu);
    if (!impl_->all_done.wait_for(lock, std::chrono::seconds(10), [this] { return impl_->live.empty(); })) {
        // A call that never ended still refers to the state: leave it be (the process is ending).
        lock.unlock();
        static_cast<void>(impl_.release());
    }
}

int client::channels() const { return static_cast<int>(impl_->stubs.size()); }

std::shared_ptr<call> client::subscribe(std::size_t index, const std::string& topic, std::optional<std::int64_t> after,
                                        std::shared_ptr<handler> h) {
    auto c = std::make_shared<subscribe_call>(*impl_, std::move(h));
    c->start(*impl_->stubs[index % impl_->stubs.size()], topic, after);
    return c;
}

}  // namespace stream_bench::grpc_sub
