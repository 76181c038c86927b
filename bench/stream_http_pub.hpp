// stream-bench, HTTP publisher (--publish-http): each reading is POSTed to a publisher endpoint
// (Nchan's nchan_publisher location, bench/stream_vs_nchan.sh) instead of published over MQTT.
// One keep-alive HTTP/1.1 connection, one request at a time (Beast's synchronous client): the
// answer is the acknowledgement, as PUBACK is for the MQTT publisher.
#pragma once

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>

#include <stdexcept>
#include <string>

namespace stream_bench::http_pub {

namespace asio = boost::asio;
namespace http = boost::beast::http;

class publisher {
public:
    // `url`: http://HOST:PORT/PATH. Throws std::invalid_argument for anything else, and what
    // connecting throws when the server is not there.
    explicit publisher(const std::string& url) {
        const auto u = boost::urls::parse_uri(url);
        if (!u || u->scheme() != "http" || u->host().empty() || u->port().empty())
            throw std::invalid_argument("--publish-http wants http://HOST:PORT/PATH, got '" + url + "'");
        host_ = u->host();
        port_ = u->port();
        target_ = u->encoded_target().empty() ? "/" : std::string(u->encoded_target());
        connect();
    }

    // POSTs `body` as application/json; true when the server answered 2xx. A connection the
    // server closed while idle (keep-alive timeout, request limit) is reopened once and the
    // request sent again; any other failure is one failed publish, and the next one reconnects.
    bool post(const std::string& body) {
        for (int attempt = 0; attempt < 2; ++attempt) {
            boost::system::error_code ec;
            if (!sock_.is_open()) connect(ec);
            if (!ec) {
                const unsigned status = exchange(body, ec);
                if (!ec) return status >= 200 && status < 300;
            }
            error_ = ec.message();
            boost::system::error_code ignored;
            sock_.close(ignored);
        }
        return false;
    }

    // Why the last failed post failed (a transport error; a non-2xx answer leaves it empty).
    const std::string& error() const { return error_; }

private:
    void connect() {
        boost::system::error_code ec;
        connect(ec);
        if (ec) throw std::runtime_error("connect to " + host_ + ":" + port_ + ": " + ec.message());
    }

    void connect(boost::system::error_code& ec) {
        asio::ip::tcp::resolver resolver(ioc_);
        const auto eps = resolver.resolve(host_, port_, ec);
        if (ec) return;
        asio::connect(sock_, eps, ec);
        if (!ec) sock_.set_option(asio::ip::tcp::no_delay(true), ec);
    }

    unsigned exchange(const std::string& body, boost::system::error_code& ec) {
        http::request<http::string_body> req{http::verb::post, target_, 11};
        req.set(http::field::host, host_);
        req.set(http::field::content_type, "application/json");
        req.keep_alive(true);
        req.body() = body;
        req.prepare_payload();
        http::write(sock_, req, ec);
        if (ec) return 0;
        http::response<http::string_body> res;
        http::read(sock_, buf_, res, ec);
        if (ec) return 0;
        if (!res.keep_alive()) {
            boost::system::error_code ignored;
            sock_.close(ignored);
        }
        error_.clear();
        return res.result_int();
    }

    asio::io_context ioc_{1};
    asio::ip::tcp::socket sock_{ioc_};
    boost::beast::flat_buffer buf_;
    std::string host_, port_, target_, error_;
};

}  // namespace stream_bench::http_pub
