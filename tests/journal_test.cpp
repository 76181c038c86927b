// Tests of the ingest journal on real files: round trip, torn tails, reset, compaction, full.
#include "journal.hpp"

#include "database.hpp"
#include "temp_dir.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using namespace telemetry;
using namespace telemetry::storage;

namespace {

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

TEST_CASE("journal - delivery keys are known from the append on, across reset, rewrite and reopen") {
    temp_dir dir;
    const auto file = dir / "j";
    std::vector<reading> one{make(1, "a", 1.0)};
    {
        journal j(file, 1 << 20);
        CHECK_FALSE(j.redelivered(42));
        j.append(one, 42);
        j.append(one);  // a delivery without identity (QoS 0)
        CHECK(j.redelivered(42));
        CHECK_FALSE(j.redelivered(43));
        CHECK_FALSE(j.redelivered(0));
        j.reset();
        CHECK(j.redelivered(42));
        j.append(one, 44);
        j.rewrite(one);
        CHECK(j.redelivered(44));
        CHECK(j.recover() == one);
    }
    journal again(file, 1 << 20);
    CHECK(again.redelivered(42));
    CHECK(again.redelivered(44));
    CHECK_FALSE(again.redelivered(43));
}

TEST_CASE("journal - a key a crash kept out of the ring is taken back from its record") {
    temp_dir dir;
    const auto file = dir / "j";
    std::vector<reading> one{make(1, "a", 1.0)};
    {
        journal j(file, 4096);
        j.append(one, 7);
    }
    {
        // Wipe the ring (it follows the 4096 bytes for records): the record alone must do.
        std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(4096);
        const std::string zeros(8 * (1 + journal::deliveries_kept), '\0');
        f.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
    }
    journal j(file, 4096);
    CHECK(j.recover() == one);
    CHECK(j.redelivered(7));
    j.reset();
    journal again(file, 4096);  // and it is in the ring now
    CHECK(again.redelivered(7));
}

TEST_CASE("journal - the ring keeps the last deliveries_kept keys") {
    temp_dir dir;
    journal j(dir / "j", 1 << 20);
    std::vector<reading> one{make(1, "a", 1.0)};
    const std::uint64_t n = journal::deliveries_kept + 10;
    for (std::uint64_t k = 1; k <= n; ++k) {
        j.append(one, k);
        if (k % 1000 == 0) j.reset();
    }
    CHECK_FALSE(j.redelivered(1));
    CHECK_FALSE(j.redelivered(10));
    // 11 is the oldest kept; asking for it records it again, so the next appends push out 12..16
    // instead.
    CHECK(j.redelivered(11));
    for (std::uint64_t k = n + 1; k <= n + 5; ++k) j.append(one, k);
    CHECK_FALSE(j.redelivered(12));
    CHECK_FALSE(j.redelivered(16));
    CHECK(j.redelivered(17));
    CHECK(j.redelivered(11));
    CHECK(j.redelivered(n + 5));
}

TEST_CASE("journal - a file from before the ring opens with its readings and no keys") {
    temp_dir dir;
    const auto file = dir / "j";
    std::vector<reading> one{make(1, "a", 1.0)};
    {
        journal j(file, 4096);
        j.append(one);
    }
    fs::resize_file(file, 4096);  // what the earlier version left: records only
    journal j(file, 4096);
    CHECK(j.recover() == one);
    CHECK_FALSE(j.redelivered(1));
    CHECK(fs::file_size(file) > 4096);
}
