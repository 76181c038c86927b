// Tests of the ingest journal on real files: round trip, torn tails, reset, compaction, full.
#include "journal.hpp"

#include "database.hpp"
#include "small_fs.hpp"
#include "temp_dir.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using namespace telemetry;
using namespace telemetry::storage;

namespace {

using telemetry::testing::open_descriptors;
using telemetry::testing::small_fs;
using telemetry::testing::temp_dir;

reading make(std::int64_t id, std::string sensor, double value, std::optional<std::int64_t> seq = {}) {
    reading r;
    r.id = id;
    r.sensor = std::move(sensor);
    r.metric = "temperature";
    r.ts = 1'700'000'000'000 + id;
    r.value = value;
    r.unit = id % 2 ? "Cel" : "";
    r.seq = seq;
    return r;
}

}  // namespace

TEST_CASE("journal - readings survive closing and reopening exactly") {
    temp_dir dir;
    const auto file = dir / "j";
    std::vector<reading> written{make(1, "a", 21.5, 7), make(2, "b", -3.25), make(3, "a", 1e300, 0)};
    {
        journal j(file, 1 << 20);
        j.append(std::span(written).subspan(0, 2));
        j.append(std::span(written).subspan(2));
    }
    journal again(file, 1 << 20);
    CHECK(again.recover() == written);
    CHECK(again.size() > 0);
}

TEST_CASE("journal - a torn or corrupt tail is ignored and appending continues after the intact part") {
    temp_dir dir;
    const auto file = dir / "j";
    std::uint64_t intact = 0;
    {
        journal j(file, 1 << 20);
        std::vector<reading> one{make(1, "a", 1.0)};
        j.append(one);
        intact = j.size();
        std::vector<reading> two{make(2, "a", 2.0)};
        j.append(two);
    }
    {
        // Flip a byte inside the second record, as a crash mid-copy could leave it.
        std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(intact + 12));
        f.put('\x7f');
    }
    journal j(file, 1 << 20);
    auto got = j.recover();
    REQUIRE(got.size() == 1);
    CHECK(got[0].id == 1);
    CHECK(j.size() == intact);
    std::vector<reading> three{make(3, "a", 3.0)};
    j.append(three);
    got = j.recover();
    REQUIRE(got.size() == 2);
    CHECK(got[1].id == 3);
}

TEST_CASE("journal - reset empties it and rewrite keeps only what is given") {
    temp_dir dir;
    const auto file = dir / "j";
    journal j(file, 1 << 20);
    std::vector<reading> rs{make(1, "a", 1.0), make(2, "a", 2.0)};
    j.append(rs);
    j.reset();
    CHECK(j.recover().empty());
    CHECK(j.size() == 0);
    j.append(rs);
    std::vector<reading> keep{make(2, "a", 2.0)};
    j.rewrite(keep);
    CHECK(j.recover() == keep);
    journal reopened(file, 1 << 20);
    CHECK(reopened.recover() == keep);
}

TEST_CASE("journal - a full journal refuses the append with an error and keeps what it has") {
    temp_dir dir;
    journal j(dir / "j", 4096);
    std::vector<reading> one{make(1, std::string(100, 's'), 1.0)};
    int appended = 0;
    for (; appended < 100; ++appended) {
        try {
            one[0].id = appended + 1;
            j.append(one);
        } catch (const storage_error& e) {
            CHECK(std::string(e.what()).find("full") != std::string::npos);
            break;
        }
    }
    CHECK(appended > 5);
    CHECK(appended < 100);
    CHECK(j.recover().size() == static_cast<std::size_t>(appended));
}

TEST_CASE("journal - a compaction that cannot reserve its new file leaks nothing and keeps the journal") {
    small_fs fs(3 << 20);  // room for one 2 MiB journal, not for the second one a compaction writes
    if (!fs.mounted()) {
        MESSAGE("skipped: " << fs.why_not());
        return;
    }
    const auto file = fs / "j";
    journal j(file, 2 << 20);
    std::vector<reading> rs{make(1, "a", 1.0), make(2, "a", 2.0)};
    j.append(rs);
    std::vector<reading> keep{make(2, "a", 2.0)};
    const auto before = open_descriptors();
    for (int i = 0; i < 50; ++i) CHECK_THROWS_AS(j.rewrite(keep), storage_error);
    CHECK(open_descriptors() == before);
    // Nothing half-reserved is left behind to take the space, and the journal still works.
    CHECK(!fs::exists(fs.path() / "j.new"));
    CHECK(j.recover() == rs);
    std::vector<reading> more{make(3, "b", 3.0)};
    j.append(more);
    CHECK(j.recover().size() == 3);
    // The same for a journal that cannot be opened at all.
    for (int i = 0; i < 20; ++i) CHECK_THROWS_AS(journal(fs / "other", 2 << 20), storage_error);
    CHECK(open_descriptors() == before);
}

TEST_CASE("journal - a volume too small for the reservation is an error naming file, size and free space") {
    small_fs fs(1 << 20);
    if (!fs.mounted()) {
        MESSAGE("skipped: " << fs.why_not());
        return;
    }
    const auto file = fs / "j";
    std::string message;
    try {
        journal j(file, 4 << 20);
    } catch (const journal_space_error& e) {
        message = e.what();
    }
    CHECK(message.find(file.string()) != std::string::npos);
    CHECK(message.find("4 MiB") != std::string::npos);
    CHECK(message.find("1 MiB free on its file system") != std::string::npos);
    CHECK(fs::file_size(file) == 0);  // what was reserved of it is given back
    journal fits(file, 512 << 10);
    std::vector<reading> one{make(1, "a", 1.0)};
    fits.append(one);
    CHECK(fits.recover() == one);
}

TEST_CASE("journal - reopened with a smaller reservation it still recovers everything the file holds") {
    temp_dir dir;
    const auto file = dir / "j";
    std::vector<reading> written;
    {
        journal j(file, 1 << 20);
        for (int i = 1; i <= 2000; ++i) {
            std::vector<reading> one{make(i, "a", i)};
            j.append(one);
            written.push_back(one[0]);
        }
        REQUIRE(j.size() > (64 << 10));
    }
    journal smaller(file, 64 << 10);
    CHECK(smaller.recover() == written);
}
