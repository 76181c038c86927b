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

// Appends one-reading records (with delivery keys from `first_key` on, if not 0) until the journal
// holds at least `bytes` of them; returns the readings.
std::vector<reading> fill(journal& j, std::uint64_t bytes, std::uint64_t first_key = 0) {
    std::vector<reading> written;
    for (int i = 1; j.size() < bytes; ++i) {
        std::vector<reading> one{make(i, "a", i)};
        j.append(one, first_key ? first_key + static_cast<std::uint64_t>(i) - 1 : 0);
        written.push_back(one[0]);
    }
    return written;
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
    SKIP_UNLESS_MOUNTED(fs);
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
    SKIP_UNLESS_MOUNTED(fs);
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
        const std::string zeros(journal::ring_bytes, '\0');
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

TEST_CASE("journal - a crash between a key and the ring's count leaves the ring recognised whole") {
    temp_dir dir;
    const auto file = dir / "j";
    std::vector<reading> one{make(1, "a", 1.0)};
    {
        journal j(file, 4096);
        for (std::uint64_t k = 1; k <= 3; ++k) j.append(one, k);
        j.reset();  // the keys are in the ring only
    }
    {
        // The third key is in its slot, the count still says two.
        std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(4096);
        const char two[8] = {2, 0, 0, 0, 0, 0, 0, 0};
        f.write(two, sizeof two);
    }
    journal j(file, 4096);
    CHECK(j.capacity() == 4096);
    CHECK(fs::file_size(file) == 4096 + journal::ring_bytes);
    // The slot the count does not cover yet is the next one written (its key is in its record,
    // which a real crash would have kept): the others are kept.
    CHECK(j.redelivered(1));
    CHECK(j.redelivered(2));
}

TEST_CASE("journal - reopened with another reservation it keeps its readings and its delivery keys") {
    temp_dir dir;
    const auto file = dir / "j";
    std::vector<reading> written;
    std::uint64_t last_key = 0;
    {
        journal j(file, 64 << 10);
        written = fill(j, 8 << 10, 1000);
        last_key = 1000 + written.size() - 1;
    }
    {
        // Larger: the ring moves to the end of the larger file, by a copy renamed over it.
        journal larger(file, 1 << 20);
        CHECK(larger.capacity() == 1 << 20);
        CHECK(fs::file_size(file) == (1 << 20) + journal::ring_bytes);
        CHECK(!fs::exists(dir / "j.new"));
        CHECK(larger.recover() == written);
        larger.reset();  // the keys are in the ring only
    }
    // Smaller: the file keeps its size, its ring is found at its end.
    journal smaller(file, 64 << 10);
    CHECK(smaller.capacity() == 1 << 20);
    CHECK(smaller.recover().empty());
    for (std::uint64_t k = 1000; k <= last_key; ++k) CHECK(smaller.redelivered(k));
    CHECK_FALSE(smaller.redelivered(last_key + 1));
}

TEST_CASE("journal - a file from before the ring, full to its end, keeps every reading whatever the reservation") {
    temp_dir dir;
    const auto file = dir / "j";
    constexpr std::uint64_t old_size = 256 << 10;
    std::vector<reading> written;
    {
        journal j(file, old_size);
        written = fill(j, old_size - 200);
    }
    fs::resize_file(file, old_size);  // records only, into what is now a ring's place
    {
        journal j(file, 64 << 10);
        CHECK(j.capacity() == old_size);
        CHECK(fs::file_size(file) == old_size + journal::ring_bytes);
        CHECK(j.recover() == written);
        CHECK_FALSE(j.redelivered(1));
        j.append(std::span(written).subspan(0, 1), 77);
    }
    journal again(file, old_size);
    CHECK(again.capacity() == old_size);
    CHECK(again.recover().size() == written.size() + 1);
    CHECK(again.redelivered(77));
}

TEST_CASE("journal - stale records in the tail of a file from before the ring are not taken for a ring") {
    temp_dir dir;
    const auto file = dir / "j";
    constexpr std::uint64_t old_size = 256 << 10;
    std::vector<reading> one{make(1, "a", 1.0)};
    {
        journal j(file, old_size);
        fill(j, old_size - 200);
        j.reset();  // what a reset leaves: stale records after an empty journal
        j.append(one);
    }
    fs::resize_file(file, old_size);
    journal j(file, old_size);
    CHECK(j.capacity() == old_size);  // the stale tail is record space, the ring comes after it
    CHECK(j.recover() == one);
    for (std::uint64_t k = 1; k <= 64; ++k) CHECK_FALSE(j.redelivered(k));
}

TEST_CASE("journal - a larger reservation that does not fit leaves the journal, its keys and the volume as they were") {
    small_fs fs(3 << 20);
    SKIP_UNLESS_MOUNTED(fs);
    const auto file = fs / "j";
    std::vector<reading> one{make(1, "a", 1.0)};
    {
        journal j(file, 1 << 20);
        j.append(one, 5);
    }
    const auto before = open_descriptors();
    for (int i = 0; i < 20; ++i) CHECK_THROWS_AS(journal(file, 2 << 20), journal_space_error);
    CHECK(open_descriptors() == before);
    CHECK(!fs::exists(fs.path() / "j.new"));
    CHECK(fs::file_size(file) == (1 << 20) + journal::ring_bytes);
    journal j(file, 1 << 20);
    CHECK(j.recover() == one);
    CHECK(j.redelivered(5));
}

// Power loss cannot be simulated here: these check that the syncs happen where the promise needs
// them (counted by the journal), not that the disk keeps what it was told to.
TEST_CASE("journal - with sync every append is synced before it returns, without, none is") {
    temp_dir dir;
    journal off(dir / "off", 1 << 20);
    std::vector<reading> rs{make(1, "a", 1.0)};
    off.append(rs, 7);
    off.rewrite(rs);
    CHECK(off.syncs() == 0);
    CHECK_FALSE(off.sync());

    journal on(dir / "on", 1 << 20, true);
    CHECK(on.sync());
    const auto opened = on.syncs();  // creating the file syncs it (and its directory)
    CHECK(opened == 1);
    for (int i = 1; i <= 5; ++i) {
        std::vector<reading> one{make(i, "a", i)};
        on.append(one, 100 + static_cast<std::uint64_t>(i));
        CHECK(on.syncs() == opened + static_cast<std::uint64_t>(i));  // before append() returned
    }
    on.reset();  // the readings are in SQLite (durably: the caller's promise); nothing to sync
    CHECK(on.syncs() == opened + 5);
    std::vector<reading> keep{make(6, "a", 6.0)};
    on.rewrite(keep);  // the new file is synced before its rename
    CHECK(on.syncs() == opened + 6);
    CHECK(on.recover() == keep);
    CHECK(on.redelivered(103));
    journal reopened(dir / "on", 1 << 20, true);
    CHECK(reopened.recover() == keep);
    CHECK(reopened.redelivered(105));
}
