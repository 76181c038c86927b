// Versioned schema migrations (PRAGMA user_version), one transaction per step.
#include "database.hpp"
#include "statement.hpp"

#include <array>
#include <string>

namespace telemetry::storage {

namespace {

// Schema v1, and why it looks like this:
// - readings is a rowid table whose rowid `id` is the global cursor (docs/api.md section 2). The writer hands
//   ids out itself from an in-memory counter instead of AUTOINCREMENT, which would write the
//   sqlite_sequence page in every transaction; meta.retired_max_id (written by retention before it
//   deletes) keeps the counter from going back when the newest rows are deleted.
// - (series_id, ts) is the query index; SQLite appends the rowid to every index key, so it is
//   really (series_id, ts, id): history, latest and raw aggregates are range scans in (ts, id)
//   order with no sort.
// - The redelivery check was a partial UNIQUE index on (series_id, seq, ts) WHERE seq IS NOT NULL
//   until v4 (below): readings without seq are never deduplicated; a sensor that restarts its seq
//   at zero sends new ts values and so does not collide.
// - unit is TEXT per reading: a SenML unit is a few bytes, cheaper than a lookup table that would
//   need a cache and a second insert, and history shows each reading's own unit.
// - rollup_1m holds count/min/max/sum per series and minute number floor(ts/60000), updated by
//   an UPSERT in the insert transaction; WITHOUT ROWID because its key is its only access path.
//   A day of one series is 1,440 rows instead of a scan of every reading.
// - series maps (sensor, metric) to a small integer so readings rows and index keys stay short.
// - sensors keeps presence (status topic), keyed by sensor; meta is a tiny key/value table.
// - No foreign keys: the single writer keeps them by construction; checking costs per insert.
// - STRICT everywhere, so a type error in our SQL fails loudly instead of storing text as ts.
constexpr const char* schema_v1 = R"sql(
CREATE TABLE meta(
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE TABLE series(
    series_id INTEGER PRIMARY KEY,
    sensor    TEXT NOT NULL,
    metric    TEXT NOT NULL,
    UNIQUE(sensor, metric)
) STRICT;
CREATE TABLE sensors(
    sensor     TEXT PRIMARY KEY,
    online     INTEGER NOT NULL,
    changed_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE TABLE readings(
    id        INTEGER PRIMARY KEY,
    series_id INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    value     REAL NOT NULL,
    seq       INTEGER,
    unit      TEXT NOT NULL
) STRICT;
CREATE INDEX readings_by_series_ts ON readings(series_id, ts);
CREATE UNIQUE INDEX readings_redelivery ON readings(series_id, seq, ts) WHERE seq IS NOT NULL;
CREATE TABLE rollup_1m(
    series_id INTEGER NOT NULL,
    minute    INTEGER NOT NULL,
    n         INTEGER NOT NULL,
    vmin      REAL NOT NULL,
    vmax      REAL NOT NULL,
    vsum      REAL NOT NULL,
    PRIMARY KEY(series_id, minute)
) STRICT, WITHOUT ROWID;
)sql";

// Schema v2: series.retired_max_id, the greatest id retention deleted from the series, so that a
// client resuming after a cursor is told of a reset only when a series it selects lost readings
// after it (docs/api.md section 6). What retention deleted under v1 is known only as a global
// maximum: it stays in meta.retired_unattributed and concerns every series.
constexpr const char* schema_v2 = R"sql(
ALTER TABLE series ADD COLUMN retired_max_id INTEGER NOT NULL DEFAULT 0;
INSERT INTO meta(key, value) SELECT 'retired_unattributed', value FROM meta WHERE key = 'retired_max_id';
)sql";

// Schema v3: meta.epoch, a random 32-bit number that names this database's id sequence
// (docs/api.md section 2.1). Cursors on the wire carry it, so that a cursor from another database
// (a re-created file, a restored backup: restore() renews it) is told apart from one of this
// database instead of silently skipping the readings whose ids it reuses.
constexpr const char* schema_v3 = R"sql(
INSERT OR IGNORE INTO meta(key, value) VALUES('epoch', random() & 0xFFFFFFFF);
)sql";

// Schema v4: no redelivery index. Every insert wrote a second index (its leaf page for each series
// in the transaction went to the WAL, and again to the database at the checkpoint); the writer
// now checks for a redelivery through the query index, (series_id, ts), and the single writer
// keeps the rule by construction (measured in bench/README.md, "Ingest").
constexpr const char* schema_v4 = R"sql(
DROP INDEX IF EXISTS readings_redelivery;
)sql";

// steps[i] brings the schema from version i to i + 1.
constexpr std::array<const char*, schema_version> steps = {schema_v1, schema_v2, schema_v3, schema_v4};

std::int64_t pragma_int(connection& c, const char* sql) {
    detail::statement s(c.handle(), sql);
    detail::query q(s);
    return q.step() ? q.int64(0) : 0;
}

int user_version(connection& c) { return static_cast<int>(pragma_int(c, "PRAGMA user_version")); }

}  // namespace

int migrate(connection& c) {
    int version = user_version(c);
    if (version > schema_version)
        throw storage_error("storage: database schema version " + std::to_string(version) +
                            " is newer than this program's " + std::to_string(schema_version));
    if (version == 0 && pragma_int(c, "PRAGMA auto_vacuum") != 2) {
        // Must precede the first CREATE TABLE and cannot run inside a transaction. Switching to
        // WAL has already written page 1, which makes SQLite ignore the setting until a VACUUM;
        // on a file without tables that VACUUM is instant.
        c.exec("PRAGMA auto_vacuum=INCREMENTAL");
        if (pragma_int(c, "PRAGMA auto_vacuum") != 2 &&
            pragma_int(c, "SELECT count(*) FROM sqlite_schema") == 0)
            c.exec("VACUUM");
    }
    while (version < schema_version) {
        c.exec("BEGIN IMMEDIATE");
        try {
            // Re-read under the write lock: another process may have migrated meanwhile.
            version = user_version(c);
            if (version < schema_version) {
                c.exec(steps[static_cast<std::size_t>(version)]);
                ++version;
                c.exec(("PRAGMA user_version=" + std::to_string(version)).c_str());
            }
            c.exec("COMMIT");
        } catch (...) {
            try {
                c.exec("ROLLBACK");
            } catch (...) {
            }
            throw;
        }
    }
    return version;
}

}  // namespace telemetry::storage
