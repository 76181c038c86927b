// Private: creation and version check of the PostgreSQL schema.
#pragma once

#include "pg_connection.hpp"
#include "postgresql.hpp"

#include <cstdint>

namespace telemetry::storage::detail {

// The schema version stored in the database; 0 when it has no schema.
std::int64_t pg_schema_version(pg_connection& c);
// Creates the schema if missing, in one transaction. Throws storage_error on a newer version.
void pg_migrate(pg_connection& c);

}  // namespace telemetry::storage::detail
