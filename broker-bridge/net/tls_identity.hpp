// The certificate and key the HTTPS listener offers, replaceable while the bridge runs.
#pragma once

#include <boost/asio/ssl/context.hpp>

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

namespace telemetry::bridge::http {

// Built from PEM files, or it throws config_error saying which file and why. reload() reads them
// again (SIGHUP): new connections get the new certificate; an open connection holds the context
// it started with (shared), so replacing it drops nothing. A reload that fails keeps the old one.
class tls_identity {
public:
    tls_identity(std::filesystem::path cert, std::filesystem::path key);

    std::shared_ptr<boost::asio::ssl::context> current() const;
    // Returns the error that kept the old certificate, or "" when the new one is in place.
    std::string reload();

    // The PEM texts of the identity in use (as read and checked when it was loaded), for the
    // other TLS listener (gRPC) to offer the same.
    struct pem_pair {
        std::string cert_chain;
        std::string private_key;
    };
    pem_pair pem() const;

private:
    struct loaded {
        std::shared_ptr<boost::asio::ssl::context> ctx;
        pem_pair pem;
    };
    loaded load() const;

    std::filesystem::path cert_;
    std::filesystem::path key_;
    mutable std::mutex mutex_;
    loaded current_;
};

}  // namespace telemetry::bridge::http
