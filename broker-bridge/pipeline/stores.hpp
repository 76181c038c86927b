// Opens the configured storage engine ([storage] engine): the one place that knows both.
#pragma once

#include "core/config.hpp"
#include "backup.hpp"
#include "store.hpp"

#include <filesystem>
#include <functional>
#include <memory>

namespace telemetry::bridge {

// SQLite: the database for this process alone while it runs (storage::exclusive_use; a second
// bridge or a restore on the same file is refused), its folder created. PostgreSQL: nullptr,
// replicas share the database. Throws storage_error.
std::unique_ptr<storage::exclusive_use> hold_store(const config& c);
// The writer for the committer. SQLite: the database file at db_path (its folder created),
// synchronous=FULL when `power_safe`. PostgreSQL: a connection to storage.url recording the
// ingest journal's progress under this replica's name (mqtt.client_id). Throws storage_error.
std::unique_ptr<storage::store_writer> open_writer(const config& c, bool power_safe);
// A reader (one per thread) of the same store.
std::unique_ptr<storage::store_reader> open_reader(const storage_config& s);

// Files the bridge keeps beside an SQLite database (db_path) about its contents: the ingest
// journal, the MQTT republisher's cursor. A restore sets them aside (storage::restore).
std::filesystem::path journal_path(const std::filesystem::path& db);
std::filesystem::path republish_cursor_path(const std::filesystem::path& db);

// What the store says about itself in the log: the file, or the PostgreSQL URL without its
// password.
std::string describe_store(const storage_config& s);

}  // namespace telemetry::bridge
