#include "shardsync/server/change_log.hpp"

#include <sqlite3.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "shardsync/server/errc.hpp"
#include "test_paths.hpp"

using namespace shardsync::server;
using shardsync::sitemap::ChangeType;
namespace fs = std::filesystem;

namespace {

constexpr std::int64_t kSecond = 1'000'000'000;
constexpr std::int64_t kEpoch = 1'700'000'000 * kSecond;

// A clock the test sets by hand; the log reads it through the open() overload.
struct ManualClock {
  std::shared_ptr<std::atomic<std::int64_t>> now =
      std::make_shared<std::atomic<std::int64_t>>(kEpoch);
  ChangeLog::Clock function() const {
    return [now = now] { return now->load(); };
  }
  void set(std::int64_t t) const { *now = t; }
};

std::unique_ptr<ChangeLog> open_log(const fs::path& dir, const ManualClock& clock) {
  auto log = ChangeLog::open(dir.string(), clock.function());
  REQUIRE(log);
  return std::move(*log);
}

std::unique_ptr<ChangeLog> open_log(const fs::path& dir) {
  auto log = ChangeLog::open(dir.string());
  REQUIRE(log);
  return std::move(*log);
}

// A state whose digests are `fill` repeated: distinct fills are distinct contents.
ResourceState state(const std::string& path, char fill = 'a', std::uint64_t length = 10,
                    std::int64_t mtime_ns = kEpoch) {
  ResourceState s;
  s.path = path;
  s.length = length;
  s.sha256 = std::string(64, fill);
  s.md5 = std::string(32, fill);
  s.mtime_ns = mtime_ns;
  s.type = "application/octet-stream";
  return s;
}

ResourceState path_only(const std::string& path) {
  ResourceState s;
  s.path = path;
  return s;
}

Change record(ChangeLog& log, ChangeType type, const ResourceState& s,
              const std::string& collection = "c") {
  auto r = log.record(collection, type, s);
  REQUIRE(r);
  REQUIRE(r->has_value());
  return **r;
}

void sql(const fs::path& db, const std::string& statement) {
  sqlite3* handle = nullptr;
  REQUIRE(sqlite3_open(db.string().c_str(), &handle) == SQLITE_OK);
  char* message = nullptr;
  const int rc = sqlite3_exec(handle, statement.c_str(), nullptr, nullptr, &message);
  const std::string text = message ? message : "";
  sqlite3_free(message);
  sqlite3_close(handle);
  INFO(text);
  REQUIRE(rc == SQLITE_OK);
}

std::string sql_text(const fs::path& db, const std::string& query) {
  sqlite3* handle = nullptr;
  REQUIRE(sqlite3_open(db.string().c_str(), &handle) == SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  REQUIRE(sqlite3_prepare_v2(handle, query.c_str(), -1, &stmt, nullptr) == SQLITE_OK);
  std::string out;
  if (sqlite3_step(stmt) == SQLITE_ROW) {
    const auto* text = sqlite3_column_text(stmt, 0);
    if (text) out = reinterpret_cast<const char*>(text);
  }
  sqlite3_finalize(stmt);
  sqlite3_close(handle);
  return out;
}

}  // namespace

TEST_CASE("a new log is a WAL-mode SQLite file in a state directory it creates",
          "[server][changelog]") {
  shardsync::test::TempDir tmp;
  const fs::path dir = tmp / "state";
  {
    auto log = open_log(dir / "nested");
    REQUIRE(log->ensure_collection("c"));
  }
  const fs::path db = dir / "nested" / "changes.sqlite";
  CHECK(fs::is_regular_file(db));
  CHECK(sql_text(db, "PRAGMA journal_mode") == "wal");
  CHECK(sql_text(db, "SELECT value FROM meta WHERE key = 'schema_version'") == "1");
}

TEST_CASE("registering a collection is idempotent and keeps its creation time",
          "[server][changelog]") {
  shardsync::test::TempDir tmp;
  ManualClock clock;
  auto log = open_log(tmp.path(), clock);
  auto first = log->ensure_collection("c");
  REQUIRE(first);
  CHECK(first->name == "c");
  CHECK(first->created_ns == kEpoch);
  CHECK(first->earliest_from_ns == kEpoch);
  CHECK(first->first_retained == 1);
  CHECK(first->last_change == 0);
  CHECK(first->last_datetime_ns == kEpoch);

  clock.set(kEpoch + 5 * kSecond);
  auto again = log->ensure_collection("c");
  REQUIRE(again);
  CHECK(again->created_ns == kEpoch);
  auto read = log->collection("c");
  REQUIRE(read);
  CHECK(read->created_ns == kEpoch);
}

TEST_CASE("an unregistered collection is an invalid_config error", "[server][changelog]") {
  shardsync::test::TempDir tmp;
  auto log = open_log(tmp.path());
  auto info = log->collection("nope");
  REQUIRE_FALSE(info);
  CHECK(info.error().code == errc::invalid_config);
  CHECK(info.error().detail.find("nope") != std::string::npos);
  auto r = log->record("nope", ChangeType::created, state("a"));
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::invalid_config);
  CHECK_FALSE(log->snapshot("nope"));
  CHECK_FALSE(log->changes("nope", 1, 10));
}

TEST_CASE("changes are numbered per collection and carry the state after them",
          "[server][changelog]") {
  shardsync::test::TempDir tmp;
  ManualClock clock;
  auto log = open_log(tmp.path(), clock);
  REQUIRE(log->ensure_collection("c"));
  REQUIRE(log->ensure_collection("d"));

  clock.set(kEpoch + kSecond);
  const Change a = record(*log, ChangeType::created, state("a.bin", 'a'));
  CHECK(a.number == 1);
  CHECK(a.change == ChangeType::created);
  CHECK(a.datetime_ns == kEpoch + kSecond);
  CHECK(a.state.sha256 == std::string(64, 'a'));
  const Change d = record(*log, ChangeType::created, state("x", 'x'), "d");
  CHECK(d.number == 1);
  const Change b = record(*log, ChangeType::updated, state("a.bin", 'b', 11));
  CHECK(b.number == 2);
  CHECK(b.change == ChangeType::updated);
  const Change gone = record(*log, ChangeType::deleted, path_only("a.bin"));
  CHECK(gone.number == 3);
  CHECK(gone.change == ChangeType::deleted);
  CHECK(gone.state.sha256.empty());
  CHECK(gone.state.length == 0);

  auto all = log->changes("c", 1, 100);
  REQUIRE(all);
  REQUIRE(all->size() == 3);
  CHECK((*all)[0].path == "a.bin");
  CHECK((*all)[1].state.length == 11);
  CHECK((*all)[1].state.md5 == std::string(32, 'b'));
  CHECK((*all)[2].change == ChangeType::deleted);
  auto middle = log->changes("c", 2, 2);
  REQUIRE(middle);
  REQUIRE(middle->size() == 1);
  CHECK(middle->front().number == 2);
  auto none = log->changes("c", 5, 4);
  REQUIRE(none);
  CHECK(none->empty());

  auto info = log->collection("c");
  REQUIRE(info);
  CHECK(info->last_change == 3);
  CHECK(info->last_datetime_ns == gone.datetime_ns);
  auto current = log->resource("c", "a.bin");
  REQUIRE(current);
  CHECK_FALSE(current->has_value());
}

TEST_CASE("change datetimes strictly increase, even when the clock steps back",
          "[server][changelog]") {
  shardsync::test::TempDir tmp;
  ManualClock clock;
  auto log = open_log(tmp.path(), clock);
  REQUIRE(log->ensure_collection("c"));

  clock.set(kEpoch + 100 * kSecond);
  const Change first = record(*log, ChangeType::created, state("a", 'a'));
  CHECK(first.datetime_ns == kEpoch + 100 * kSecond);

  SECTION("the same instant twice") {
    const Change second = record(*log, ChangeType::created, state("b", 'b'));
    CHECK(second.datetime_ns == first.datetime_ns + 1);
  }
  SECTION("an hour back") {
    clock.set(kEpoch + 100 * kSecond - 3600 * kSecond);
    const Change second = record(*log, ChangeType::created, state("b", 'b'));
    const Change third = record(*log, ChangeType::created, state("c", 'c'));
    CHECK(second.datetime_ns == first.datetime_ns + 1);
    CHECK(third.datetime_ns == first.datetime_ns + 2);
    // Registering a collection draws from the same sequence.
    auto d = log->ensure_collection("d");
    REQUIRE(d);
    CHECK(d->created_ns == first.datetime_ns + 3);
  }
  SECTION("back, and then forward past the last datetime") {
    clock.set(kEpoch);
    record(*log, ChangeType::created, state("b", 'b'));
    clock.set(kEpoch + 200 * kSecond);
    const Change later = record(*log, ChangeType::created, state("c", 'c'));
    CHECK(later.datetime_ns == kEpoch + 200 * kSecond);
  }
}

TEST_CASE("a restart keeps the log, the resources and the last datetime", "[server][changelog]") {
  shardsync::test::TempDir tmp;
  ManualClock clock;
  Change last;
  {
    auto log = open_log(tmp.path(), clock);
    REQUIRE(log->ensure_collection("c"));
    clock.set(kEpoch + 50 * kSecond);
    record(*log, ChangeType::created, state("a", 'a'));
    last = record(*log, ChangeType::created, state("b", 'b'));
  }
  // The machine comes back with its clock a day behind.
  clock.set(kEpoch - 86'400 * kSecond);
  auto log = open_log(tmp.path(), clock);
  auto info = log->ensure_collection("c");
  REQUIRE(info);
  CHECK(info->created_ns == kEpoch);
  CHECK(info->last_change == 2);
  auto b = log->resource("c", "b");
  REQUIRE(b);
  REQUIRE(b->has_value());
  CHECK((*b)->sha256 == std::string(64, 'b'));
  const Change next = record(*log, ChangeType::deleted, path_only("a"));
  CHECK(next.number == 3);
  CHECK(next.datetime_ns == last.datetime_ns + 1);
}

TEST_CASE("a change that changes nothing is not recorded", "[server][changelog]") {
  shardsync::test::TempDir tmp;
  auto log = open_log(tmp.path());
  REQUIRE(log->ensure_collection("c"));
  record(*log, ChangeType::created, state("a", 'a'));
  std::uint64_t expected_changes = 1;

  SECTION("the same state again") {
    auto r = log->record("c", ChangeType::updated, state("a", 'a'));
    REQUIRE(r);
    CHECK_FALSE(r->has_value());
    auto again = log->record("c", ChangeType::created, state("a", 'a'));
    REQUIRE(again);
    CHECK_FALSE(again->has_value());
  }
  SECTION("a delete of a path the log does not know") {
    auto r = log->record("c", ChangeType::deleted, path_only("never"));
    REQUIRE(r);
    CHECK_FALSE(r->has_value());
  }
  SECTION("but a new mtime alone is a change (the entry's lastmod)") {
    const Change c = record(*log, ChangeType::updated, state("a", 'a', 10, kEpoch + 1));
    CHECK(c.change == ChangeType::updated);
    expected_changes = 2;
  }
  auto info = log->collection("c");
  REQUIRE(info);
  CHECK(info->last_change == expected_changes);
  auto changes = log->changes("c", 1, 100);
  REQUIRE(changes);
  CHECK(changes->size() == expected_changes);
}

TEST_CASE("created and updated follow the log's state, not the caller's word",
          "[server][changelog]") {
  shardsync::test::TempDir tmp;
  auto log = open_log(tmp.path());
  REQUIRE(log->ensure_collection("c"));
  CHECK(record(*log, ChangeType::updated, state("a", 'a')).change == ChangeType::created);
  CHECK(record(*log, ChangeType::created, state("a", 'b')).change == ChangeType::updated);
  CHECK(record(*log, ChangeType::deleted, path_only("a")).change == ChangeType::deleted);
  CHECK(record(*log, ChangeType::updated, state("a", 'c')).change == ChangeType::created);
}

TEST_CASE("a snapshot lists the current resources by path with the matching info",
          "[server][changelog]") {
  shardsync::test::TempDir tmp;
  auto log = open_log(tmp.path());
  REQUIRE(log->ensure_collection("c"));
  REQUIRE(log->ensure_collection("other"));
  record(*log, ChangeType::created, state("b/2", 'b'));
  record(*log, ChangeType::created, state("a", 'a'));
  record(*log, ChangeType::created, state("b/1", 'c'));
  record(*log, ChangeType::created, state("z", 'z'), "other");
  record(*log, ChangeType::deleted, path_only("a"));

  auto snap = log->snapshot("c");
  REQUIRE(snap);
  CHECK(snap->info.last_change == 4);
  REQUIRE(snap->resources.size() == 2);
  CHECK(snap->resources[0].path == "b/1");
  CHECK(snap->resources[0].sha256 == std::string(64, 'c'));
  CHECK(snap->resources[1].path == "b/2");

  auto below = log->resources_under("c", "b");
  REQUIRE(below);
  CHECK(below->size() == 2);
  auto none = log->resources_under("c", "b/1");
  REQUIRE(none);
  CHECK(none->empty());
  auto everything = log->resources_under("c", "");
  REQUIRE(everything);
  CHECK(everything->size() == 2);
}

TEST_CASE("resources_under takes exactly the paths below the directory", "[server][changelog]") {
  shardsync::test::TempDir tmp;
  auto log = open_log(tmp.path());
  REQUIRE(log->ensure_collection("c"));
  // '-' and '.' sort before '/', '0' and 'a' after: none of these is below "d".
  for (const char* p : {"d", "d-x", "d.x", "d0", "da", "d/a", "d/b/c", "e/x"}) {
    record(*log, ChangeType::created, state(p, 'a'));
  }
  auto below = log->resources_under("c", "d");
  REQUIRE(below);
  REQUIRE(below->size() == 2);
  CHECK((*below)[0].path == "d/a");
  CHECK((*below)[1].path == "d/b/c");
}

TEST_CASE("a snapshot is consistent while another connection records changes",
          "[server][changelog]") {
  shardsync::test::TempDir tmp;
  auto reader = open_log(tmp.path());
  REQUIRE(reader->ensure_collection("c"));
  std::atomic<bool> done{false};
  std::thread writer([&] {
    auto log = ChangeLog::open(tmp.path().string());
    if (!log) return;
    for (int i = 0; i < 200; ++i) {
      if (!(*log)->record("c", ChangeType::created, state("f" + std::to_string(i), 'a'))) break;
    }
    done = true;
  });
  // Only creations: every change number has exactly one resource behind it.
  int snapshots = 0;
  bool consistent = true;
  while (!done || snapshots == 0) {
    auto snap = reader->snapshot("c");
    REQUIRE(snap);
    consistent = consistent && snap->resources.size() == snap->info.last_change;
    ++snapshots;
  }
  writer.join();
  CHECK(consistent);
  auto final_snap = reader->snapshot("c");
  REQUIRE(final_snap);
  CHECK(final_snap->resources.size() == 200);
}

TEST_CASE("prune drops whole blocks of changes older than the cut-off", "[server][changelog]") {
  shardsync::test::TempDir tmp;
  ManualClock clock;
  auto log = open_log(tmp.path(), clock);
  REQUIRE(log->ensure_collection("c"));
  // Change n happens at kEpoch + n seconds.
  auto at = [](std::uint64_t n) { return kEpoch + static_cast<std::int64_t>(n) * kSecond; };
  auto add = [&](std::uint64_t n) {
    clock.set(at(n));
    record(*log, ChangeType::created, state("f" + std::to_string(n), 'a'));
  };
  for (std::uint64_t n = 1; n <= 10; ++n) add(n);

  SECTION("only full blocks, and only when all of a block is old") {
    REQUIRE(log->prune("c", at(7), 4));  // changes 1-6 are old; block 5-8 is not all old
    auto info = log->collection("c");
    REQUIRE(info);
    CHECK(info->first_retained == 5);
    CHECK(info->earliest_from_ns == at(4));
    CHECK(info->last_change == 10);
    auto kept = log->changes("c", 1, 10);
    REQUIRE(kept);
    REQUIRE(kept->size() == 6);
    CHECK(kept->front().number == 5);

    // Nothing more is old enough: no change.
    REQUIRE(log->prune("c", at(8), 4));
    CHECK(log->collection("c")->first_retained == 5);
  }
  SECTION("the open block stays even when it is all old") {
    REQUIRE(log->prune("c", at(100), 4));  // 9-10 would be block 9-12, still open
    auto info = log->collection("c");
    REQUIRE(info);
    CHECK(info->first_retained == 9);
    CHECK(info->earliest_from_ns == at(8));
  }
  SECTION("a closed last block goes too, and numbering continues") {
    for (std::uint64_t n = 11; n <= 12; ++n) add(n);
    REQUIRE(log->prune("c", at(100), 4));
    auto info = log->collection("c");
    REQUIRE(info);
    CHECK(info->first_retained == 13);
    CHECK(info->last_change == 12);
    CHECK(info->last_datetime_ns == at(12));
    CHECK(info->earliest_from_ns == at(12));
    auto none = log->changes("c", 1, 12);
    REQUIRE(none);
    CHECK(none->empty());
    add(13);
    CHECK(log->changes("c", 13, 13)->front().number == 13);
    // Pruning changes history, not the current state.
    auto snap = log->snapshot("c");
    REQUIRE(snap);
    CHECK(snap->resources.size() == 13);
  }
  SECTION("nothing old, nothing pruned") {
    REQUIRE(log->prune("c", at(1), 4));
    CHECK(log->collection("c")->first_retained == 1);
    CHECK(log->collection("c")->earliest_from_ns == kEpoch);
  }
  SECTION("a block of zero changes is a configuration error") {
    auto r = log->prune("c", at(100), 0);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == errc::invalid_config);
  }
  SECTION("the pruned start survives a restart") {
    REQUIRE(log->prune("c", at(7), 4));
    log.reset();
    auto reopened = open_log(tmp.path(), clock);
    auto info = reopened->collection("c");
    REQUIRE(info);
    CHECK(info->first_retained == 5);
    CHECK(info->earliest_from_ns == at(4));
  }
}

TEST_CASE("the hash cache answers only for the exact file key and survives a restart",
          "[server][changelog]") {
  shardsync::test::TempDir tmp;
  const FileKey key{7, 42, 1000, kEpoch};
  {
    auto log = open_log(tmp.path());
    auto miss = log->cached_hashes(key);
    REQUIRE(miss);
    CHECK_FALSE(miss->has_value());
    REQUIRE(log->cache_hashes(key, std::string(64, 'a'), std::string(32, 'b')));
  }
  auto log = open_log(tmp.path());
  auto hit = log->cached_hashes(key);
  REQUIRE(hit);
  REQUIRE(hit->has_value());
  CHECK((*hit)->first == std::string(64, 'a'));
  CHECK((*hit)->second == std::string(32, 'b'));

  for (FileKey other : {FileKey{8, 42, 1000, kEpoch}, FileKey{7, 43, 1000, kEpoch},
                        FileKey{7, 42, 1001, kEpoch}, FileKey{7, 42, 1000, kEpoch + 1}}) {
    auto r = log->cached_hashes(other);
    REQUIRE(r);
    CHECK_FALSE(r->has_value());
  }

  // New contents of the same inode replace its entry.
  const FileKey rewritten{7, 42, 2000, kEpoch + kSecond};
  REQUIRE(log->cache_hashes(rewritten, std::string(64, 'c'), std::string(32, 'd')));
  CHECK_FALSE(log->cached_hashes(key)->has_value());
  CHECK((*log->cached_hashes(rewritten))->first == std::string(64, 'c'));
  // Device and inode numbers past 2^63 survive the trip through SQLite's signed integers.
  const FileKey big{~std::uint64_t{0}, ~std::uint64_t{0} - 1, 5, 0};
  REQUIRE(log->cache_hashes(big, std::string(64, 'e'), std::string(32, 'f')));
  CHECK(log->cached_hashes(big)->has_value());
}

TEST_CASE("a batch is one transaction: all of it or none of it", "[server][changelog]") {
  shardsync::test::TempDir tmp;
  auto log = open_log(tmp.path());
  REQUIRE(log->ensure_collection("c"));

  SECTION("a successful batch keeps everything") {
    auto r = log->batch([&]() -> shardsync::Result<void> {
      for (int i = 0; i < 100; ++i) {
        auto c = log->record("c", ChangeType::created, state("f" + std::to_string(i)));
        if (!c) return tl::unexpected(c.error());
      }
      return log->cache_hashes(FileKey{1, 2, 3, 4}, "s", "m");
    });
    REQUIRE(r);
    CHECK(log->collection("c")->last_change == 100);
    CHECK(log->cached_hashes(FileKey{1, 2, 3, 4})->has_value());
  }
  SECTION("a failed batch keeps nothing, not even its datetimes") {
    const std::int64_t before = log->collection("c")->last_datetime_ns;
    auto r = log->batch([&]() -> shardsync::Result<void> {
      REQUIRE(log->record("c", ChangeType::created, state("a")));
      REQUIRE(log->cache_hashes(FileKey{1, 2, 3, 4}, "s", "m"));
      return shardsync::fail(errc::io_error, "disk on fire");
    });
    REQUIRE_FALSE(r);
    CHECK(r.error().code == errc::io_error);
    CHECK(log->collection("c")->last_change == 0);
    CHECK_FALSE(log->resource("c", "a")->has_value());
    CHECK_FALSE(log->cached_hashes(FileKey{1, 2, 3, 4})->has_value());
    const Change next = record(*log, ChangeType::created, state("b"));
    CHECK(next.number == 1);
    CHECK(next.datetime_ns > before);
  }
  SECTION("a nested batch that fails is undone alone") {
    auto r = log->batch([&]() -> shardsync::Result<void> {
      REQUIRE(log->record("c", ChangeType::created, state("outer")));
      auto inner = log->batch([&]() -> shardsync::Result<void> {
        REQUIRE(log->record("c", ChangeType::created, state("inner")));
        return shardsync::fail(errc::io_error, "inner failure");
      });
      CHECK_FALSE(inner);
      return {};
    });
    REQUIRE(r);
    CHECK(log->resource("c", "outer")->has_value());
    CHECK_FALSE(log->resource("c", "inner")->has_value());
    CHECK(log->collection("c")->last_change == 1);
  }
  SECTION("an exception escaping the work rolls back and propagates") {
    CHECK_THROWS_AS(log->batch([&]() -> shardsync::Result<void> {
      REQUIRE(log->record("c", ChangeType::created, state("a")));
      throw std::runtime_error("bug");
    }),
                    std::runtime_error);
    CHECK(log->collection("c")->last_change == 0);
    // The log is usable afterwards.
    CHECK(record(*log, ChangeType::created, state("b")).number == 1);
  }
}

TEST_CASE("a file that is not a change log is a database error naming it", "[server][changelog]") {
  shardsync::test::TempDir tmp;
  shardsync::test::write_file(tmp / "changes.sqlite", std::string(4096, 'x'));
  auto log = ChangeLog::open(tmp.path().string());
  REQUIRE_FALSE(log);
  CHECK(log.error().code == errc::database);
  CHECK(log.error().detail.find("changes.sqlite") != std::string::npos);
}

TEST_CASE("a log written by a newer schema version is refused", "[server][changelog]") {
  shardsync::test::TempDir tmp;
  { open_log(tmp.path()); }
  sql(tmp / "changes.sqlite", "UPDATE meta SET value = 99 WHERE key = 'schema_version'");
  auto log = ChangeLog::open(tmp.path().string());
  REQUIRE_FALSE(log);
  CHECK(log.error().code == errc::database);
  CHECK(log.error().detail.find("schema version 99") != std::string::npos);
}

TEST_CASE("an unusable state directory is an I/O error", "[server][changelog]") {
  shardsync::test::TempDir tmp;
  shardsync::test::write_file(tmp / "file", "x");
  auto log = ChangeLog::open((tmp / "file" / "state").string());
  REQUIRE_FALSE(log);
  CHECK(log.error().code == errc::io_error);
}
