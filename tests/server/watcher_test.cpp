#include "shardsync/server/watcher.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "shardsync/server/errc.hpp"
#include "test_paths.hpp"

using namespace shardsync::server;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// A watched directory and everything the watcher has reported so far.
struct Fixture {
  shardsync::test::TempDir tmp;
  fs::path dir = tmp / "data";
  fs::path outside = tmp / "outside";
  std::unique_ptr<Watcher> watcher;
  std::vector<WatchEvent> events;

  Fixture() {
    fs::create_directories(dir);
    fs::create_directories(outside);
  }

  void start() {
    auto w = Watcher::start(dir.string());
    REQUIRE(w);
    watcher = std::move(*w);
  }

  // Polls until an event matches `pred` (true) or two seconds pass (false).
  bool wait_for(const std::function<bool(const WatchEvent&)>& pred) {
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    for (const WatchEvent& e : events) {
      if (pred(e)) return true;
    }
    while (std::chrono::steady_clock::now() < deadline) {
      auto batch = watcher->poll(50ms);
      REQUIRE(batch);
      bool found = false;
      for (WatchEvent& e : *batch) {
        found = found || pred(e);
        events.push_back(std::move(e));
      }
      if (found) return true;
    }
    return false;
  }

  bool wait_for(const std::string& path, bool closed, bool removed, bool directory = false) {
    return wait_for([&](const WatchEvent& e) {
      return e.relative_path == path && e.closed == closed && e.removed == removed &&
             e.directory == directory && !e.rescan;
    });
  }

  // Everything reported within `quiet`.
  void drain(std::chrono::milliseconds quiet = 200ms) {
    auto batch = watcher->poll(quiet);
    REQUIRE(batch);
    for (WatchEvent& e : *batch) events.push_back(std::move(e));
  }

  bool reported(const std::string& path) const {
    for (const WatchEvent& e : events) {
      if (e.relative_path == path) return true;
    }
    return false;
  }
};

}  // namespace

TEST_CASE("a file written and closed is reported as closed", "[server][watcher]") {
  Fixture f;
  fs::create_directories(f.dir / "sub");
  f.start();
  shardsync::test::write_file(f.dir / "a.bin", "hello");
  shardsync::test::write_file(f.dir / "sub" / "b.bin", "hello");
  CHECK(f.wait_for("a.bin", true, false));
  CHECK(f.wait_for("sub/b.bin", true, false));
}

TEST_CASE("a file still open for writing is not reported until it is closed", "[server][watcher]") {
  Fixture f;
  f.start();
  const int fd = ::open((f.dir / "slow.bin").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, "part", 4) == 4);
  f.drain();
  CHECK_FALSE(f.reported("slow.bin"));
  REQUIRE(::close(fd) == 0);
  CHECK(f.wait_for("slow.bin", true, false));
}

TEST_CASE("files moved in are reported closed, moved out and deleted ones removed",
          "[server][watcher]") {
  Fixture f;
  shardsync::test::write_file(f.dir / "leaving", "x");
  shardsync::test::write_file(f.dir / "doomed", "x");
  shardsync::test::write_file(f.outside / "arriving", "x");
  f.start();
  fs::rename(f.outside / "arriving", f.dir / "arriving");
  fs::rename(f.dir / "leaving", f.outside / "leaving");
  fs::remove(f.dir / "doomed");
  CHECK(f.wait_for("arriving", true, false));
  CHECK(f.wait_for("leaving", false, true));
  CHECK(f.wait_for("doomed", false, true));

  SECTION("a rename inside the tree is both") {
    fs::rename(f.dir / "arriving", f.dir / "renamed");
    CHECK(f.wait_for("arriving", false, true));
    CHECK(f.wait_for("renamed", true, false));
  }
}

TEST_CASE("a new subdirectory is reported and watched", "[server][watcher]") {
  Fixture f;
  f.start();
  fs::create_directories(f.dir / "a" / "b" / "c");
  CHECK(f.wait_for("a", false, false, true));
  // Every level is watched by now, including those made before the watch on "a" existed.
  shardsync::test::write_file(f.dir / "a" / "b" / "c" / "f", "x");
  CHECK(f.wait_for("a/b/c/f", true, false));
  fs::remove(f.dir / "a" / "b" / "c" / "f");
  fs::remove(f.dir / "a" / "b" / "c");
  CHECK(f.wait_for("a/b/c/f", false, true));
  CHECK(f.wait_for("a/b/c", false, true, true));
}

TEST_CASE("a directory moved in is reported whole and watched under its name",
          "[server][watcher]") {
  Fixture f;
  fs::create_directories(f.outside / "ckpt" / "inner");
  shardsync::test::write_file(f.outside / "ckpt" / "inner" / "shard", "x");
  f.start();
  fs::rename(f.outside / "ckpt", f.dir / "ckpt");
  CHECK(f.wait_for("ckpt", true, false, true));
  shardsync::test::write_file(f.dir / "ckpt" / "inner" / "later", "x");
  CHECK(f.wait_for("ckpt/inner/later", true, false));

  SECTION("and renamed inside the tree, its events follow the new name") {
    fs::rename(f.dir / "ckpt", f.dir / "step-2");
    CHECK(f.wait_for("ckpt", false, true, true));
    CHECK(f.wait_for("step-2", true, false, true));
    f.events.clear();
    shardsync::test::write_file(f.dir / "step-2" / "inner" / "x", "x");
    CHECK(f.wait_for("step-2/inner/x", true, false));
    CHECK_FALSE(f.reported("ckpt/inner/x"));
  }
  SECTION("and moved out, it is reported removed and no longer watched") {
    fs::rename(f.dir / "ckpt", f.outside / "ckpt2");
    CHECK(f.wait_for("ckpt", false, true, true));
    f.events.clear();
    shardsync::test::write_file(f.outside / "ckpt2" / "inner" / "y", "x");
    f.drain();
    CHECK(f.events.empty());
  }
}

TEST_CASE("the watcher does not follow symlinks", "[server][watcher]") {
  Fixture f;
  fs::create_directory_symlink(f.outside, f.dir / "before");
  f.start();
  fs::create_directory_symlink(f.outside, f.dir / "after");
  shardsync::test::write_file(f.outside / "secret", "x");
  shardsync::test::write_file(f.dir / "marker", "x");
  CHECK(f.wait_for("marker", true, false));
  f.drain();
  for (const WatchEvent& e : f.events) {
    CHECK_FALSE(e.relative_path.starts_with("before"));
    CHECK_FALSE(e.relative_path.starts_with("after"));
    CHECK_FALSE(e.relative_path.ends_with("secret"));
  }
}

TEST_CASE("a file closed many times is reported once per poll", "[server][watcher]") {
  Fixture f;
  f.start();
  for (int i = 0; i < 5; ++i) {
    shardsync::test::write_file(f.dir / "a", "x");
    shardsync::test::write_file(f.dir / "b", "x");
  }
  std::this_thread::sleep_for(100ms);
  f.drain();
  CHECK(std::count_if(f.events.begin(), f.events.end(),
                      [](const WatchEvent& e) { return e.relative_path == "a"; }) == 1);
}

TEST_CASE("an overflowing event queue is reported as one rescan", "[server][watcher]") {
  Fixture f;
  std::ifstream limit_file("/proc/sys/fs/inotify/max_queued_events");
  long limit = 0;
  limit_file >> limit;
  if (limit <= 0 || limit > 200'000) {
    WARN("max_queued_events is " << limit << ": overflow not tested");
    return;
  }
  f.start();
  // Alternate two names so the kernel cannot merge consecutive identical events.
  const std::string a = (f.dir / "a").string();
  const std::string b = (f.dir / "b").string();
  for (long i = 0; i <= limit / 2 + 10; ++i) {
    for (const std::string* p : {&a, &b}) {
      const int fd = ::open(p->c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
      REQUIRE(fd >= 0);
      ::close(fd);
    }
  }
  auto batch = f.watcher->poll(1000ms);
  REQUIRE(batch);
  // Reads are bounded per poll: keep polling until the overflow marker arrives.
  bool rescan = false;
  for (int i = 0; i < 100 && !rescan; ++i) {
    for (const WatchEvent& e : *batch) rescan = rescan || e.rescan;
    if (rescan) {
      CHECK(batch->size() == 1);
      break;
    }
    batch = f.watcher->poll(100ms);
    REQUIRE(batch);
  }
  CHECK(rescan);
  // Watching goes on afterwards.
  f.events.clear();
  f.drain(50ms);
  shardsync::test::write_file(f.dir / "after", "x");
  CHECK(f.wait_for("after", true, false));
}

TEST_CASE("a deleted collection directory is reported as a rescan", "[server][watcher]") {
  Fixture f;
  f.start();
  fs::remove_all(f.dir);
  CHECK(f.wait_for([](const WatchEvent& e) { return e.rescan; }));
}

TEST_CASE("watching a directory that does not exist is an I/O error", "[server][watcher]") {
  shardsync::test::TempDir tmp;
  auto w = Watcher::start((tmp / "missing").string());
  REQUIRE_FALSE(w);
  CHECK(w.error().code == errc::io_error);
}

TEST_CASE("the inotify descriptor becomes readable when events wait", "[server][watcher]") {
  Fixture f;
  f.start();
  REQUIRE(f.watcher->fd() >= 0);
  shardsync::test::write_file(f.dir / "a", "x");
  pollfd p{f.watcher->fd(), POLLIN, 0};
  CHECK(::poll(&p, 1, 2000) == 1);
  CHECK(f.wait_for("a", true, false));
}
