// The PostgreSQL listener: LISTEN on the readings channel, waiting on its socket and on an
// eventfd that this process's own commits signal.
#include "pg_connection.hpp"
#include "postgresql.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace telemetry::storage {

struct postgresql_listener::impl {
    detail::pg_connection conn;
    int wake_fd = -1;
    const std::string listen = std::string("LISTEN ") + postgresql_readings_channel;

    explicit impl(const std::string& conninfo) : conn(conninfo) {
        wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (wake_fd < 0) throw storage_error(std::string("postgresql: eventfd: ") + std::strerror(errno));
        conn.exec(listen.c_str());
    }
    ~impl() {
        if (wake_fd >= 0) ::close(wake_fd);
    }

    // Reads what arrived; true if it held a notification. A broken connection is reopened and
    // listened on again (throws storage_error while the server is away).
    bool consume() {
        PGconn* c = conn.raw();
        bool got = false;
        if (PQconsumeInput(c) == 0) {
            conn.exec(listen.c_str());  // ensure_open() re-establishes it first
            return true;
        }
        while (PGnotify* n = PQnotifies(c)) {
            got = true;
            PQfreemem(n);
        }
        return got;
    }
};

postgresql_listener::postgresql_listener(const std::string& conninfo) : impl_(std::make_unique<impl>(conninfo)) {}
postgresql_listener::~postgresql_listener() = default;

bool postgresql_listener::wait(std::chrono::milliseconds timeout) {
    if (impl_->consume()) return true;  // arrived with an earlier result
    pollfd fds[2] = {{PQsocket(impl_->conn.raw()), POLLIN, 0}, {impl_->wake_fd, POLLIN, 0}};
    const int n = ::poll(fds, 2, static_cast<int>(timeout.count()));
    if (n <= 0) return false;
    bool woken = false;
    if (fds[1].revents & POLLIN) {
        eventfd_t v = 0;
        woken = eventfd_read(impl_->wake_fd, &v) == 0;
    }
    return impl_->consume() || woken || (fds[0].revents & (POLLERR | POLLHUP)) != 0;
}

void postgresql_listener::wake() noexcept { eventfd_write(impl_->wake_fd, 1); }

}  // namespace telemetry::storage
