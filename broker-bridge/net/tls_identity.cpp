// The certificate and key the HTTPS listener offers, replaceable while the bridge runs.
#include "net/tls_identity.hpp"

#include "core/config.hpp"

#include <openssl/ssl.h>

namespace telemetry::bridge::http {

namespace ssl = boost::asio::ssl;

tls_identity::tls_identity(std::filesystem::path cert, std::filesystem::path key)
    : cert_(std::move(cert)), key_(std::move(key)), current_(load()) {}

std::shared_ptr<ssl::context> tls_identity::load() const {
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
    // TLS 1.2 and 1.3 only; OpenSSL's defaults choose the ciphers (Debian's are strict).
    SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_compression |
                     ssl::context::single_dh_use);
    boost::system::error_code ec;
    ctx->use_certificate_chain_file(cert_.string(), ec);
    if (ec)
        throw config_error("http.tls_cert " + cert_.string() + ": cannot use it as a PEM certificate chain: " +
                           ec.message());
    ctx->use_private_key_file(key_.string(), ssl::context::pem, ec);
    if (ec)
        throw config_error("http.tls_key " + key_.string() + ": cannot use it as a PEM private key: " + ec.message());
    if (SSL_CTX_check_private_key(ctx->native_handle()) != 1)
        throw config_error("http.tls_key " + key_.string() + " does not belong to the certificate in " +
                           cert_.string());
    return ctx;
}

std::shared_ptr<ssl::context> tls_identity::current() const {
    std::lock_guard lock(mutex_);
    return current_;
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
