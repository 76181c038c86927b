// Opening the configured engine (broker-bridge/pipeline/stores): what the log says of the store
// never shows a PostgreSQL password.
#include "pipeline/stores.hpp"

#include <doctest/doctest.h>

using namespace telemetry::bridge;

TEST_CASE("stores - the store's description masks the password, in a URL and in key=value form") {
    storage_config s;
    s.db_path = "data/t.db";
    CHECK(describe_store(s) == "SQLite data/t.db");
    s.engine = "postgresql";
    s.url = "postgresql://bridge:s3cret@db.internal:5432/telemetry?sslmode=require";
    CHECK(describe_store(s) == "PostgreSQL postgresql://bridge:***@db.internal:5432/telemetry?sslmode=require");
    s.url = "postgres://bridge@db.internal/telemetry";
    CHECK(describe_store(s) == "PostgreSQL postgres://bridge@db.internal/telemetry");
    s.url = "host=db.internal user=bridge password=s3cret dbname=telemetry";
    CHECK(describe_store(s) == "PostgreSQL host=db.internal user=bridge password=*** dbname=telemetry");
    s.url = "host=db password = 'two words' dbname=t";
    CHECK(describe_store(s).find("two words") == std::string::npos);
}
