#include "shardsync/server/scanner.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "shardsync/server/errc.hpp"
#include "test_paths.hpp"

using namespace shardsync::server;
using shardsync::sitemap::ChangeType;
namespace fs = std::filesystem;

namespace {

constexpr std::int64_t kSecond = 1'000'000'000;
constexpr const char* kHelloSha256 =
    "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
constexpr const char* kHelloMd5 = "5d41402abc4b2a76b9719d911017c592";
constexpr const char* kEmptySha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr const char* kEmptyMd5 = "d41d8cd98f00b204e9800998ecf8427e";

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void set_mtime(const fs::path& path, std::int64_t ns) {
  const timespec t{static_cast<time_t>(ns / kSecond), static_cast<long>(ns % kSecond)};
  const timespec times[2] = {t, t};
  REQUIRE(::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW) == 0);
}

std::int64_t mtime_of(const fs::path& path) {
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * kSecond + st.st_mtim.tv_nsec;
}

// A collection directory, its change log and a scanner, with the log lines it wrote.
struct Fixture {
  shardsync::test::TempDir tmp;
  fs::path dir = tmp / "data";
  std::unique_ptr<ChangeLog> log;
  std::vector<std::string> lines;
  ScanOptions options;
  std::unique_ptr<Scanner> scanner;

  Fixture() {
    fs::create_directories(dir);
    reopen();
  }

  // A fresh log object and scanner on the same files: a restart.
  void reopen() {
    scanner.reset();
    log.reset();
    auto opened = ChangeLog::open((tmp / "state").string());
    REQUIRE(opened);
    log = std::move(*opened);
    REQUIRE(log->ensure_collection("c"));
    make_scanner();
  }

  void make_scanner() {
    scanner = std::make_unique<Scanner>(
        Collection{"c", dir.string()}, *log, options,
        [this](std::string_view level, std::string_view message) {
          lines.push_back(std::string(level) + " " + std::string(message));
        });
  }

  // A file written an hour ago: settled, and old enough for the hash cache.
  fs::path put(const std::string& rel, const std::string& bytes,
               std::int64_t mtime_ns = now_ns() - 3600 * kSecond) {
    const fs::path p = dir / rel;
    fs::create_directories(p.parent_path());
    shardsync::test::write_file(p, bytes);
    set_mtime(p, mtime_ns);
    return p;
  }

  ScanStats scan() {
    auto stats = scanner->scan();
    REQUIRE(stats);
    return *stats;
  }

  ScanStats check(const std::string& rel, bool closed) {
    auto stats = scanner->check(rel, closed);
    REQUIRE(stats);
    return *stats;
  }

  std::optional<ResourceState> resource(const std::string& rel) {
    auto r = log->resource("c", rel);
    REQUIRE(r);
    return *r;
  }

  std::vector<std::string> published() {
    auto snap = log->snapshot("c");
    REQUIRE(snap);
    std::vector<std::string> paths;
    for (const ResourceState& s : snap->resources) paths.push_back(s.path);
    return paths;
  }
};

using Paths = std::vector<std::string>;

}  // namespace

TEST_CASE("a first scan publishes every regular file with digests, length, mtime and type",
          "[server][scanner]") {
  Fixture f;
  const fs::path a = f.put("a.bin", "hello");
  f.put("empty", "");
  f.put("sub/dir/b.json", "{}");

  const ScanStats stats = f.scan();
  CHECK(stats.files == 3);
  CHECK(stats.hashed == 3);
  CHECK(stats.cache_hits == 0);
  CHECK(stats.bytes_hashed == 7);
  CHECK(stats.created == 3);
  CHECK(stats.updated == 0);
  CHECK(stats.deleted == 0);
  CHECK(stats.refused == 0);
  CHECK(stats.unsettled == 0);

  const auto r = f.resource("a.bin");
  REQUIRE(r);
  CHECK(r->length == 5);
  CHECK(r->sha256 == kHelloSha256);
  CHECK(r->md5 == kHelloMd5);
  CHECK(r->mtime_ns == mtime_of(a));
  CHECK(r->type == "application/octet-stream");
  CHECK(f.resource("empty")->sha256 == kEmptySha256);
  CHECK(f.resource("empty")->md5 == kEmptyMd5);
  CHECK(f.resource("sub/dir/b.json")->type == "application/json");

  // Changes in path order, all creations.
  auto changes = f.log->changes("c", 1, 10);
  REQUIRE(changes);
  REQUIRE(changes->size() == 3);
  CHECK((*changes)[0].path == "a.bin");
  CHECK((*changes)[1].path == "empty");
  CHECK((*changes)[2].path == "sub/dir/b.json");
  for (const Change& c : *changes) CHECK(c.change == ChangeType::created);
  CHECK(f.lines.empty());
}

TEST_CASE("an unchanged tree is not hashed again, not even after a restart", "[server][scanner]") {
  Fixture f;
  f.put("a.bin", "hello");
  f.put("b/c.bin", "more bytes");
  CHECK(f.scan().hashed == 2);

  ScanStats again = f.scan();
  CHECK(again.files == 2);
  CHECK(again.hashed == 0);
  CHECK(again.cache_hits == 2);
  CHECK(again.created + again.updated + again.deleted == 0);

  f.reopen();
  again = f.scan();
  CHECK(again.hashed == 0);
  CHECK(again.bytes_hashed == 0);
  CHECK(again.cache_hits == 2);
  CHECK(again.created + again.updated + again.deleted == 0);
  CHECK(f.log->collection("c")->last_change == 2);
}

TEST_CASE("changed contents and a new mtime are updates", "[server][scanner]") {
  Fixture f;
  const std::int64_t old = now_ns() - 3600 * kSecond;
  const fs::path a = f.put("a.bin", "hello", old);
  f.scan();

  SECTION("new contents") {
    f.put("a.bin", "hello, world", old + kSecond);
    const ScanStats stats = f.scan();
    CHECK(stats.updated == 1);
    CHECK(stats.hashed == 1);
    CHECK(f.resource("a.bin")->length == 12);
    CHECK(f.resource("a.bin")->sha256 != kHelloSha256);
  }
  SECTION("the same contents with a new mtime (a new lastmod)") {
    set_mtime(a, old + 2 * kSecond);
    const ScanStats stats = f.scan();
    CHECK(stats.updated == 1);
    CHECK(f.resource("a.bin")->sha256 == kHelloSha256);
    CHECK(f.resource("a.bin")->mtime_ns == old + 2 * kSecond);
  }
  auto last = f.log->changes("c", 2, 2);
  REQUIRE(last);
  REQUIRE(last->size() == 1);
  CHECK(last->front().change == ChangeType::updated);
}

TEST_CASE("files and directories that disappear are deleted", "[server][scanner]") {
  Fixture f;
  f.put("keep", "k");
  f.put("gone", "g");
  f.put("tree/x", "x");
  f.put("tree/deeper/y", "y");
  CHECK(f.scan().created == 4);

  SECTION("by a scan") {
    fs::remove(f.dir / "gone");
    fs::remove_all(f.dir / "tree");
    const ScanStats stats = f.scan();
    CHECK(stats.deleted == 3);
    CHECK(stats.files == 1);
  }
  SECTION("by checks of the paths") {
    fs::remove(f.dir / "gone");
    fs::remove_all(f.dir / "tree");
    CHECK(f.check("gone", false).deleted == 1);
    CHECK(f.check("tree", false).deleted == 2);
    CHECK(f.check("gone", false).deleted == 0);
  }
  CHECK(f.published() == Paths{"keep"});
}

TEST_CASE("a rename is a delete and a create, without hashing again", "[server][scanner]") {
  Fixture f;
  f.put("old.bin", "hello");
  f.scan();
  fs::rename(f.dir / "old.bin", f.dir / "new.bin");

  SECTION("found by a scan") {
    const ScanStats stats = f.scan();
    CHECK(stats.deleted == 1);
    CHECK(stats.created == 1);
    CHECK(stats.hashed == 0);  // same inode, size and mtime: the hash cache knows it
    CHECK(stats.cache_hits == 1);
  }
  SECTION("reported as moved out and moved in") {
    CHECK(f.check("old.bin", false).deleted == 1);
    const ScanStats stats = f.check("new.bin", true);
    CHECK(stats.created == 1);
    CHECK(stats.hashed == 0);
  }
  CHECK(f.published() == Paths{"new.bin"});
  CHECK(f.resource("new.bin")->sha256 == kHelloSha256);
  auto changes = f.log->changes("c", 2, 3);
  REQUIRE(changes);
  REQUIRE(changes->size() == 2);
  std::vector<ChangeType> types{(*changes)[0].change, (*changes)[1].change};
  std::sort(types.begin(), types.end());
  CHECK(types == std::vector<ChangeType>{ChangeType::created, ChangeType::deleted});
}

TEST_CASE("a file open for writing is never published, however long its writer pauses",
          "[server][scanner]") {
  Fixture f;
  const fs::path p = f.dir / "slow.bin";
  const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, "hel", 3) == 3);
  set_mtime(p, now_ns() - 3600 * kSecond);  // long past any settle time
  ScanStats stats = f.scan();
  CHECK(stats.unsettled == 1);
  CHECK_FALSE(f.resource("slow.bin"));
  CHECK(f.check("slow.bin", false).unsettled == 1);
  REQUIRE(::write(fd, "lo", 2) == 2);
  REQUIRE(::close(fd) == 0);
  // Closed: a scan publishes it at once, whatever its mtime.
  stats = f.scan();
  CHECK(stats.created == 1);
  REQUIRE(f.resource("slow.bin"));
  CHECK(f.resource("slow.bin")->sha256 == kHelloSha256);
}

TEST_CASE("a file still being written is not published by a scan, but is once closed",
          "[server][scanner]") {
  Fixture f;
  f.options.use_leases = false;  // the settle-time rule, as where leases are unavailable
  f.make_scanner();
  const fs::path p = f.dir / "shard.bin";
  const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, "hel", 3) == 3);

  ScanStats stats = f.scan();
  CHECK(stats.files == 1);
  CHECK(stats.unsettled == 1);
  CHECK(stats.created == 0);
  CHECK(stats.hashed == 0);
  CHECK_FALSE(f.resource("shard.bin"));

  REQUIRE(::write(fd, "lo", 2) == 2);
  REQUIRE(::close(fd) == 0);
  // Still recent: a scan keeps waiting...
  CHECK(f.scan().unsettled == 1);
  CHECK_FALSE(f.resource("shard.bin"));
  // ...but the writer's close publishes it at once.
  stats = f.check("shard.bin", true);
  CHECK(stats.created == 1);
  CHECK(stats.unsettled == 0);
  REQUIRE(f.resource("shard.bin"));
  CHECK(f.resource("shard.bin")->sha256 == kHelloSha256);

  SECTION("an event without a close waits like a scan") {
    shardsync::test::write_file(p, "hello again");
    stats = f.check("shard.bin", false);
    CHECK(stats.unsettled == 1);
    CHECK(stats.updated == 0);
    CHECK(f.resource("shard.bin")->sha256 == kHelloSha256);
  }
  SECTION("a file just closed is hashed again later rather than cached") {
    // Its mtime is too recent to trust as a cache key (a same-size rewrite within the
    // file system's timestamp granularity would keep it).
    f.options.settle_ns = 0;
    f.options.use_leases = false;
    f.make_scanner();
    CHECK(f.scan().hashed == 1);
  }
}

TEST_CASE("a file that changes while it is hashed is not published", "[server][scanner]") {
  Fixture f;
  f.options.read_block = 4096;  // many reads, so the writer gets in between them
  f.make_scanner();
  const fs::path p = f.put("growing.bin", std::string(32 << 20, 'x'));
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    const int fd = ::open(p.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) return;
    while (!stop) {
      if (::write(fd, "y", 1) != 1) break;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    ::close(fd);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto stats = f.scanner->check("growing.bin", true);
  stop = true;
  writer.join();
  REQUIRE(stats);
  CHECK(stats->unsettled == 1);
  CHECK(stats->created == 0);
  CHECK_FALSE(f.resource("growing.bin"));
  // Left alone, it is published on the next look.
  CHECK(f.check("growing.bin", true).created == 1);
}

TEST_CASE("a file with an mtime in the future settles by the scanner's own clock",
          "[server][scanner]") {
  Fixture f;
  f.options.use_leases = false;
  f.options.settle_ns = 200'000'000;
  f.make_scanner();
  // As after the wall clock stepped back by an hour.
  f.put("ahead.bin", "hello", now_ns() + 3600 * kSecond);
  CHECK(f.scan().unsettled == 1);
  CHECK_FALSE(f.resource("ahead.bin"));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const ScanStats stats = f.scan();
  CHECK(stats.unsettled == 0);
  CHECK(stats.created == 1);
}

TEST_CASE("symlinks are never followed or published", "[server][scanner]") {
  Fixture f;
  const fs::path outside = f.tmp / "outside";
  fs::create_directories(outside);
  shardsync::test::write_file(outside / "secret", "secret");
  f.put("a.bin", "hello");
  fs::create_symlink(outside / "secret", f.dir / "to-file");
  fs::create_directory_symlink(outside, f.dir / "to-dir");
  fs::create_symlink("a.bin", f.dir / "to-inside");

  const ScanStats stats = f.scan();
  CHECK(stats.files == 1);
  CHECK(stats.refused == 3);
  CHECK(f.published() == Paths{"a.bin"});
  REQUIRE(f.lines.size() == 3);
  for (const std::string& line : f.lines) {
    CHECK(line.starts_with("warn refused c/to-"));
    CHECK(line.ends_with(": symbolic link"));
  }

  SECTION("not by checks either") {
    CHECK(f.check("to-file", true).refused == 1);
    CHECK(f.check("to-dir/secret", true).created == 0);
    CHECK(f.check("to-dir", true).created == 0);
    CHECK(f.published() == Paths{"a.bin"});
  }
  SECTION("a published file replaced by a symlink is deleted") {
    fs::remove(f.dir / "a.bin");
    fs::create_symlink(outside / "secret", f.dir / "a.bin");
    SECTION("by a scan") { CHECK(f.scan().deleted == 1); }
    SECTION("by a check") { CHECK(f.check("a.bin", true).deleted == 1); }
    CHECK(f.published().empty());
  }
  SECTION("a published directory replaced by a symlink to a copy of it is deleted") {
    f.put("d/x", "x");
    f.scan();
    fs::create_directories(outside / "d");
    fs::rename(f.dir / "d" / "x", outside / "d" / "x");
    fs::remove(f.dir / "d");
    fs::create_directory_symlink(outside / "d", f.dir / "d");
    CHECK(f.check("d/x", true).deleted == 1);
    CHECK(f.published() == Paths{"a.bin"});
  }
}

TEST_CASE("reserved paths and unsafe names are refused with one log line each",
          "[server][scanner]") {
  Fixture f;
  f.put("capabilitylist.xml", "<x/>");
  f.put(".resourcesync/changelist.xml", "<x/>");
  f.put(std::string("bad\x01name"), "x");
  f.put("back\\slash", "x");
  f.put("\xff\xfe", "x");
  f.put("bad-dir\x7f/inside", "x");
  // Allowed: reserved names only at the top, and any valid UTF-8.
  f.put("sub/capabilitylist.xml", "x");
  f.put("sub/.resourcesync", "x");
  f.put("d\xc3\xa9j\xc3\xa0-vu.txt", "x");

  const ScanStats stats = f.scan();
  CHECK(stats.refused == 6);
  CHECK(stats.files == 3);
  CHECK(f.published() ==
        Paths{"d\xc3\xa9j\xc3\xa0-vu.txt", "sub/.resourcesync", "sub/capabilitylist.xml"});
  REQUIRE(f.lines.size() == 6);
  for (const std::string& line : f.lines) {
    CHECK(line.starts_with("warn refused c/"));
    for (const char ch : line) CHECK(static_cast<unsigned char>(ch) >= 0x20);
  }
  CHECK(std::count(f.lines.begin(), f.lines.end(),
                   "warn refused c/capabilitylist.xml: reserved name") == 1);
  CHECK(std::count(f.lines.begin(), f.lines.end(), "warn refused c/.resourcesync: reserved name") ==
        1);
  CHECK(std::count(f.lines.begin(), f.lines.end(),
                   "warn refused c/bad\\x01name: name contains a control character") == 1);
  CHECK(std::count(f.lines.begin(), f.lines.end(),
                   "warn refused c/\\xff\\xfe: name is not valid UTF-8") == 1);

  // Once per scan: the next scan says it again.
  CHECK(f.scan().refused == 6);
  CHECK(f.lines.size() == 12);

  SECTION("checks refuse them too") {
    CHECK(f.check("capabilitylist.xml", true).refused == 1);
    CHECK(f.check(".resourcesync/changelist.xml", true).refused == 1);
    CHECK(f.check("back\\slash", true).refused == 1);
    CHECK(f.published().size() == 3);
  }
}

TEST_CASE("a check of a path outside the collection is an unsafe_path error", "[server][scanner]") {
  Fixture f;
  for (const char* bad : {"../x", "a/../../x", "/etc/passwd", "a//b", "./a", "a/"}) {
    auto r = f.scanner->check(bad, true);
    INFO(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == errc::unsafe_path);
  }
}

TEST_CASE("a check of a directory re-checks everything below it", "[server][scanner]") {
  Fixture f;
  f.put("other", "o");
  f.scan();
  f.put("new/a", "a");
  f.put("new/deep/b", "b");
  ScanStats stats = f.check("new", true);
  CHECK(stats.created == 2);
  CHECK(f.published() == Paths{"new/a", "new/deep/b", "other"});

  SECTION("and deletes what is gone from it") {
    fs::remove(f.dir / "new/deep/b");
    stats = f.check("new", false);
    CHECK(stats.deleted == 1);
    CHECK(stats.files == 1);
    CHECK(f.published() == Paths{"new/a", "other"});
  }
  SECTION("a directory that became a file takes its files along") {
    fs::remove_all(f.dir / "new");
    f.put("new", "now a file");
    stats = f.check("new", true);
    CHECK(stats.deleted == 2);
    CHECK(stats.created == 1);
    CHECK(f.published() == Paths{"new", "other"});
  }
  SECTION("a file that became a directory is deleted, its contents created") {
    fs::remove(f.dir / "other");
    f.put("other/inside", "i");
    stats = f.check("other", true);
    CHECK(stats.deleted == 1);
    CHECK(stats.created == 1);
    CHECK(f.published() == Paths{"new/a", "new/deep/b", "other/inside"});
  }
  SECTION("the empty path is the whole collection") {
    fs::remove(f.dir / "other");
    stats = f.check("", false);
    CHECK(stats.deleted == 1);
    CHECK(stats.files == 2);
  }
}

TEST_CASE("the media type comes from the file name's extension", "[server][scanner]") {
  Fixture f;
  f.put("a.JSON", "{}");
  f.put("b.tar", "");
  f.put("c.safetensors", "");
  f.put("noext", "");
  f.put(".hidden", "");
  f.put("dir.txt/d", "");
  f.put("e.txt", "");
  f.scan();
  CHECK(f.resource("a.JSON")->type == "application/json");
  CHECK(f.resource("b.tar")->type == "application/x-tar");
  CHECK(f.resource("c.safetensors")->type == "application/octet-stream");
  CHECK(f.resource("noext")->type == "application/octet-stream");
  CHECK(f.resource(".hidden")->type == "application/octet-stream");
  CHECK(f.resource("dir.txt/d")->type == "application/octet-stream");
  CHECK(f.resource("e.txt")->type == "text/plain");
}

TEST_CASE("special files are refused without blocking the scan", "[server][scanner]") {
  Fixture f;
  f.put("a", "a");
  REQUIRE(::mkfifo((f.dir / "pipe").c_str(), 0644) == 0);
  const ScanStats stats = f.scan();
  CHECK(stats.refused == 1);
  CHECK(f.published() == Paths{"a"});
  CHECK(f.check("pipe", true).refused == 1);
}

TEST_CASE("a scan fails, deleting nothing, when the collection directory is gone",
          "[server][scanner]") {
  Fixture f;
  f.put("a", "a");
  f.scan();
  fs::rename(f.dir, f.tmp / "moved");
  auto r = f.scanner->scan();
  REQUIRE_FALSE(r);
  CHECK(r.error().code == errc::io_error);
  CHECK(r.error().detail.find(f.dir.string()) != std::string::npos);
  CHECK(f.published() == Paths{"a"});
}

TEST_CASE("a directory that cannot be read keeps its published state", "[server][scanner]") {
  if (::geteuid() == 0) {
    WARN("running as root, which reads any directory: skipped");
    return;
  }
  Fixture f;
  f.put("locked/a", "a");
  f.scan();
  fs::permissions(f.dir / "locked", fs::perms::none);
  const ScanStats stats = f.scan();
  fs::permissions(f.dir / "locked", fs::perms::owner_all);
  CHECK(stats.deleted == 0);
  CHECK(f.published() == Paths{"locked/a"});
  REQUIRE_FALSE(f.lines.empty());
  CHECK(f.lines.back().find("locked") != std::string::npos);
}

TEST_CASE("a scan of many files commits in batches and records every one", "[server][scanner]") {
  Fixture f;
  const int kFiles = 5'500;  // more than one batch of records
  const std::int64_t old = now_ns() - 3600 * kSecond;
  for (int i = 0; i < kFiles; ++i) {
    f.put("d" + std::to_string(i % 10) + "/f" + std::to_string(i), std::to_string(i), old);
  }
  ScanStats stats = f.scan();
  CHECK(stats.files == kFiles);
  CHECK(stats.created == kFiles);
  CHECK(stats.hashed == kFiles);
  auto info = f.log->collection("c");
  REQUIRE(info);
  CHECK(info->last_change == kFiles);

  stats = f.scan();
  CHECK(stats.hashed == 0);
  CHECK(stats.cache_hits == kFiles);
  CHECK(stats.created == 0);
}

TEST_CASE("upload temp files a killed server left are removed by the first scan only",
          "[server][scanner]") {
  Fixture f;
  const std::string left = "d/" + std::string(kUploadPrefix) + "1-a.bin";
  f.put(left, "torn");
  f.put("keep.bin", "hello");
  // An upload some process still writes is left alone.
  const fs::path writing = f.dir / (std::string(kUploadPrefix) + "2-b.bin");
  const int fd = ::open(writing.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  f.scan();
  CHECK_FALSE(fs::exists(f.dir / left));
  CHECK(fs::exists(writing));
  CHECK(f.published() == std::vector<std::string>{"keep.bin"});
  REQUIRE(::close(fd) == 0);
  // Later scans never remove one: an upload may be between its close and its rename.
  f.put(left, "torn");
  f.scan();
  CHECK(fs::exists(f.dir / left));
  CHECK(fs::exists(writing));
  CHECK(f.published() == std::vector<std::string>{"keep.bin"});
}
