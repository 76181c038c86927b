// Test support: a throwaway PostgreSQL 15 cluster on a free loopback port, as the tests start
// Mosquitto (processes.hpp).
#pragma once

#include "processes.hpp"

#include <cstdint>
#include <memory>
#include <string>

namespace telemetry::testing {

// initdb into a fresh folder, then the server as a child of the test (it dies with the test, even
// when the test crashes), stopped with a fast shutdown and removed at scope exit. The server
// refuses to run as root: as root, initdb runs through `runuser -u postgres` and the server
// through `setpriv` (which, unlike pg_ctl or runuser, replaces itself with the server, so that the
// server is the test's own child and gets its parent-death signal). No fsync: the data is
// thrown away.
class pg_cluster {
public:
    pg_cluster();
    ~pg_cluster();
    pg_cluster(const pg_cluster&) = delete;
    pg_cluster& operator=(const pg_cluster&) = delete;

    std::uint16_t port() const { return port_; }
    // The libpq URL of database `db` (user postgres, trust authentication on loopback).
    std::string url(const std::string& db) const;
    // A new empty database with a unique name; returns its URL.
    std::string create_database();
    // Runs `sql` with psql in database `db`; returns what it printed (unaligned, tuples only).
    // Throws std::runtime_error with psql's message when it fails.
    std::string psql(const std::string& db, const std::string& sql);

private:
    temp_dir dir_;
    std::uint16_t port_ = 0;
    int databases_ = 0;
    std::unique_ptr<child> server_;
};

// One cluster for the whole test process, started on first use.
pg_cluster& shared_pg_cluster();

}  // namespace telemetry::testing
