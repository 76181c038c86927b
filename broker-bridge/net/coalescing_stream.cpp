// The layer under a WebSocket stream that lets many messages share one network write.
#include "net/coalescing_stream.hpp"

#include <boost/asio/post.hpp>

namespace telemetry::bridge::http {

namespace asio = boost::asio;
using boost::system::error_code;

void coalescing_stream::flush(std::function<void(error_code)> done) {
    wait(waiter{{}, std::move(done), 0});
}

void coalescing_stream::wait(waiter w) {
    if (failed_) {
        // Completions never run inside the call that started them.
        auto shared = std::make_shared<waiter>(std::move(w));
        asio::post(inner_.get_executor(), [shared, ec = failed_] { complete(*shared, ec); });
        return;
    }
    waiting_.push_back(std::move(w));
    if (!writing_) start_write();
}

void coalescing_stream::start_write() {
    if (pending_.empty()) {
        // Nothing to send (a flush with nothing appended): done as soon as possible.
        auto done = std::make_shared<std::vector<waiter>>(std::move(waiting_));
        waiting_.clear();
        asio::post(inner_.get_executor(), [done] {
            for (auto& w : *done) complete(w, {});
        });
        return;
    }
    writing_ = true;
    sending_.swap(pending_);
    pending_.clear();
    in_flight_ = std::move(waiting_);
    waiting_.clear();
    // The async write tries a send at once and completes through the executor, never inline.
    inner_.async_write_all(asio::buffer(sending_), [this](error_code ec, std::size_t) { on_written(ec); });
}

void coalescing_stream::on_written(error_code ec) {
    writing_ = false;
    sending_.clear();
    if (ec) failed_ = ec;
    auto done = std::move(in_flight_);
    in_flight_.clear();
    // Whoever waits for bytes appended meanwhile gets the next write.
    if (!waiting_.empty()) {
        if (failed_) {
            for (auto& w : waiting_) done.push_back(std::move(w));
            waiting_.clear();
        } else {
            start_write();
        }
    }
    for (auto& w : done) complete(w, ec ? ec : failed_);
}

void coalescing_stream::complete(waiter& w, error_code ec) {
    if (w.beast) std::move(w.beast)(ec, ec ? 0 : w.bytes);
    else if (w.session) w.session(ec);
}

void teardown(boost::beast::role_type role, coalescing_stream& s, error_code& ec) {
    using boost::beast::websocket::teardown;
    teardown(role, s.next_layer().socket(), ec);
}

}  // namespace telemetry::bridge::http
