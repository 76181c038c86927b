// The certificate and key the HTTPS listener offers, replaceable while the bridge runs.
#include "net/tls_identity.hpp"

#include "core/config.hpp"

#include <openssl/ssl.h>

#include <fstream>
#include <sstream>

namespace telemetry::bridge::http {

namespace ssl = boost::asio::ssl;

tls_identity::tls_identity(std::filesystem::path cert, std::filesystem::path key)
    : cert_(std::move(cert)), key_(std::move(key)), current_(load()) {}

namespace {
std::string read_pem(const std::filesystem::path& p, const char* key) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw config_error(std::string(key) + " " + p.string() + ": cannot read it");
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}
}  // namespace

// The files are read once, and the context is built from what was read: the texts kept for
// gRPC are exactly the ones checked here.
tls_identity::loaded tls_identity::load() const {
    loaded out;
    out.pem = {read_pem(cert_, "http.tls_cert"), read_pem(key_, "http.tls_key")};
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
    // TLS 1.2 and 1.3 only; OpenSSL's defaults choose the ciphers (Debian's are strict).
    SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_compression |
                     ssl::context::single_dh_use);
    boost::system::error_code ec;
    ctx->use_certificate_chain(boost::asio::buffer(out.pem.cert_chain), ec);
    if (ec)
        throw config_error("http.tls_cert " + cert_.string() + ": cannot use it as a PEM certificate chain: " +
                           ec.message());
    ctx->use_private_key(boost::asio::buffer(out.pem.private_key), ssl::context::pem, ec);
    if (ec)
        throw config_error("http.tls_key " + key_.string() + ": cannot use it as a PEM private key: " + ec.message());
    if (SSL_CTX_check_private_key(ctx->native_handle()) != 1)
        throw config_error("http.tls_key " + key_.string() + " does not belong to the certificate in " +
                           cert_.string());
    out.ctx = std::move(ctx);
    return out;
}

std::shared_ptr<ssl::context> tls_identity::current() const {
    std::lock_guard lock(mutex_);
    return current_.ctx;
}

tls_identity::pem_pair tls_identity::pem() const {
    std::lock_guard lock(mutex_);
    return current_.pem;
}

std::string tls_identity::reload() {
    try {
        auto next = load();
        std::lock_guard lock(mutex_);
        current_ = std::move(next);
        return {};
    } catch (const std::exception& e) {
        return e.what();
    }
}

}  // namespace telemetry::bridge::http
