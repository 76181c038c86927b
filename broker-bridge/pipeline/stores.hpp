// Opens the configured storage engine ([storage] engine): the one place that knows both.
#pragma once

#include "core/config.hpp"
#include "store.hpp"

#include <functional>
#include <memory>

namespace telemetry::bridge {

// The writer for the committer. SQLite: the database file at db_path (its folder created),
// synchronous=FULL when `power_safe`. PostgreSQL: a connection to storage.url recording the
// ingest journal's progress under this replica's name (mqtt.client_id). Throws storage_error.
std::unique_ptr<storage::store_writer> open_writer(const config& c, bool power_safe);
// A reader (one per thread) of the same store.
std::unique_ptr<storage::store_reader> open_reader(const storage_config& s);

// What the store says about itself in the log: the file, or the PostgreSQL URL without its
// password.
std::string describe_store(const storage_config& s);

}  // namespace telemetry::bridge
