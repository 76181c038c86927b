// Opens the configured storage engine.
#include "pipeline/stores.hpp"

#include "database.hpp"
#include "postgresql.hpp"

#include <filesystem>
#include <regex>

namespace telemetry::bridge {

std::unique_ptr<storage::exclusive_use> hold_store(const config& c) {
    if (c.storage.postgresql()) return nullptr;
    const auto& db = c.storage.db_path;
    if (db.has_parent_path()) std::filesystem::create_directories(db.parent_path());
    return std::make_unique<storage::exclusive_use>(db);
}

std::unique_ptr<storage::store_writer> open_writer(const config& c, bool power_safe) {
    if (c.storage.postgresql()) return std::make_unique<storage::postgresql_writer>(c.storage.url, c.mqtt.client_id);
    const auto& db = c.storage.db_path;
    if (db.has_parent_path()) std::filesystem::create_directories(db.parent_path());
    return std::make_unique<storage::writer>(db, power_safe);
}

std::unique_ptr<storage::store_reader> open_reader(const storage_config& s) {
    if (s.postgresql()) return std::make_unique<storage::postgresql_reader>(s.url);
    return std::make_unique<storage::reader>(s.db_path);
}

std::filesystem::path journal_path(const std::filesystem::path& db) { return db.string() + ".ingest-journal"; }

std::filesystem::path republish_cursor_path(const std::filesystem::path& db) {
    return db.string() + ".mqtt-out-cursor";
}

std::string describe_store(const storage_config& s) {
    if (!s.postgresql()) return "SQLite " + s.db_path.string();
    // postgresql://user:secret@host/db -> postgresql://user:***@host/db; password=secret -> ***
    static const std::regex url_password(R"(^([a-z]+://[^:/@]*):[^@]*@)");
    static const std::regex key_password(R"(password\s*=\s*('[^']*'|\S+))");
    std::string shown = std::regex_replace(s.url, url_password, "$1:***@");
    shown = std::regex_replace(shown, key_password, "password=***");
    return "PostgreSQL " + shown;
}

}  // namespace telemetry::bridge
