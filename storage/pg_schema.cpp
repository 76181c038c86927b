// The PostgreSQL schema, created once per database; why it looks like this.
#include "pg_schema.hpp"

#include <string>

namespace telemetry::storage::detail {

namespace {

// - readings.id is the global cursor. It is not a sequence: sequence values are taken at insert
//   time but transactions commit in any order, so a reader past id N could later find a smaller
//   id. id_counter's single row is locked FOR UPDATE by each inserting transaction, which assigns
//   its ids from it and keeps the lock until its commit (postgresql.hpp).
// - The redelivery check is a partial UNIQUE index on (series_id, seq, ts) WHERE seq IS NOT NULL,
//   as in SQLite; (series_id, ts, id) serves history, latest and aggregates, (series_id, id) the
//   newest readings of a series.
// - Names sort byte-wise (COLLATE "C"), as in SQLite, whatever the cluster's locale.
// - No rollup table yet: aggregates group raw rows on the server.
constexpr const char* schema_v1 = R"sql(
CREATE TABLE meta(
    key   text COLLATE "C" PRIMARY KEY,
    value bigint NOT NULL
);
CREATE TABLE id_counter(
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    next_id  bigint NOT NULL
);
INSERT INTO id_counter(next_id) VALUES (1);
CREATE TABLE series(
    series_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sensor         text COLLATE "C" NOT NULL,
    metric         text COLLATE "C" NOT NULL,
    retired_max_id bigint NOT NULL DEFAULT 0,
    UNIQUE (sensor, metric)
);
CREATE TABLE sensors(
    sensor     text COLLATE "C" PRIMARY KEY,
    online     boolean NOT NULL,
    changed_at bigint NOT NULL
);
CREATE TABLE readings(
    id        bigint PRIMARY KEY,
    series_id bigint NOT NULL,
    ts        bigint NOT NULL,
    value     double precision NOT NULL,
    seq       bigint,
    unit      text NOT NULL
);
CREATE INDEX readings_by_series_ts ON readings(series_id, ts, id);
CREATE INDEX readings_by_series_id ON readings(series_id, id);
CREATE UNIQUE INDEX readings_redelivery ON readings(series_id, seq, ts) WHERE seq IS NOT NULL;
)sql";

// - replica_journal: per replica (its [mqtt] client_id), the greatest ingest-journal number it
//   has committed, written in the same transaction as the batch, so that after a crash the
//   replica stores each journaled reading once (store.hpp, next_journal_id).
constexpr const char* schema_v2 = R"sql(
CREATE TABLE replica_journal(
    replica  text COLLATE "C" PRIMARY KEY,
    position bigint NOT NULL
);
)sql";

// - meta.epoch: as in SQLite (schema 3), a random number naming this database's id sequence;
//   every replica reads the same one, so a cursor from any replica is valid on every other.
constexpr const char* schema_v3 = R"sql(
INSERT INTO meta(key, value) VALUES('epoch', floor(random() * 4294967296)::bigint);
)sql";

// Any constant shared by every replica: serialises schema creation across processes.
constexpr const char* schema_lock = "SELECT pg_advisory_xact_lock(7314042915)";

}  // namespace

std::int64_t pg_schema_version(pg_connection& c) {
    auto has = c.query("SELECT to_regclass('meta') IS NOT NULL");
    if (has.text(0, 0) != "t") return 0;
    auto v = c.query("SELECT value FROM meta WHERE key = 'schema_version'");
    return v.rows() == 0 ? 0 : v.int64(0, 0);
}

void pg_migrate(pg_connection& c) {
    pg_transaction txn(c);
    c.exec(schema_lock);
    const std::int64_t version = pg_schema_version(c);
    if (version > postgresql_schema_version)
        throw storage_error("storage: database schema version " + std::to_string(version) +
                            " is newer than this program's " +
                            std::to_string(postgresql_schema_version));
    if (version < 1) {
        c.exec(schema_v1);
        c.exec("INSERT INTO meta(key, value) VALUES('schema_version', 1)");
    }
    if (version < 2) {
        c.exec(schema_v2);
        c.exec("UPDATE meta SET value = 2 WHERE key = 'schema_version'");
    }
    if (version < 3) {
        c.exec(schema_v3);
        c.exec("UPDATE meta SET value = 3 WHERE key = 'schema_version'");
    }
    txn.commit();
}

}  // namespace telemetry::storage::detail
