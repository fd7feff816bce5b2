#include "shardsync/client/dest_root.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "shardsync/client/errc.hpp"
#include "test_paths.hpp"

namespace shardsync::client {
namespace {

namespace fs = std::filesystem;
using test::read_file;
using test::write_file;

// A destination beside an "outside" directory holding a sentinel file: whatever a test
// plants or races, the outside tree must end exactly as it started.
class DestFixture {
 public:
  DestFixture() {
    fs::create_directories(outside());
    write_file(sentinel(), "keep");
    auto opened = DestRoot::open(dest().string());
    REQUIRE(opened);
    root_.emplace(std::move(*opened));
  }

  fs::path dest() const { return tmp_ / "dest"; }
  fs::path outside() const { return tmp_ / "outside"; }
  fs::path sentinel() const { return outside() / "sentinel"; }
  DestRoot& root() { return *root_; }

  void check_outside_untouched() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(outside())) {
      names.push_back(entry.path().filename().string());
    }
    CHECK(names == std::vector<std::string>{"sentinel"});
    CHECK(read_file(sentinel()) == "keep");
  }

 private:
  test::TempDir tmp_;
  std::optional<DestRoot> root_;
};

template <typename T>
std::error_code code_of(const Result<T>& result) {
  REQUIRE_FALSE(result);
  INFO(result.error().describe());
  return result.error().code;
}

const std::error_code kUnsafe = make_error_code(errc::unsafe_path);
const std::error_code kAbsent = std::make_error_code(std::errc::no_such_file_or_directory);

// Writes `bytes` as a new file `leaf` in the Parent's directory, as the downloader would.
void create_in(const DestRoot::Parent& parent, const std::string& bytes) {
  const int fd = ::openat(parent.dir_fd, parent.leaf.c_str(),
                          O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  ::close(fd);
}

ino_t inode_of_fd(int fd) {
  struct stat st {};
  REQUIRE(::fstat(fd, &st) == 0);
  return st.st_ino;
}

std::size_t open_fd_count() {
  std::size_t count = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator("/proc/self/fd")) ++count;
  return count;
}

std::vector<std::pair<std::string, std::uint64_t>> walk_all(DestRoot& root) {
  std::vector<std::pair<std::string, std::uint64_t>> seen;
  REQUIRE(root.walk(
      [&](const std::string& path, const LocalFile& file) { seen.emplace_back(path, file.size); }));
  return seen;
}

}  // namespace

TEST_CASE("opening a destination creates it and its parents", "[client][dest]") {
  test::TempDir tmp;
  const auto path = (tmp / "a") / "b" / "dest";
  auto root = DestRoot::open(path.string());
  REQUIRE(root);
  CHECK(fs::is_directory(path));
  CHECK(root->path() == path.string());
  CHECK(root->root_fd() >= 0);

  DestRoot moved = std::move(*root);
  CHECK(root->root_fd() == -1);  // NOLINT(bugprone-use-after-move): documented state
  CHECK(moved.root_fd() >= 0);
  CHECK(code_of(root->stat_file("x")) == make_error_code(errc::io_error));
}

TEST_CASE("a destination that is a file or empty is invalid", "[client][dest]") {
  test::TempDir tmp;
  write_file(tmp / "file", "x");
  CHECK(code_of(DestRoot::open((tmp / "file").string())) == make_error_code(errc::invalid_options));
  CHECK(code_of(DestRoot::open((tmp / "file" / "sub").string())) ==
        make_error_code(errc::invalid_options));
  CHECK(code_of(DestRoot::open("")) == make_error_code(errc::invalid_options));
}

TEST_CASE_METHOD(DestFixture, "parent_of creates missing directories and names the leaf",
                 "[client][dest]") {
  auto parent = root().parent_of("a/b/c.bin", true);
  REQUIRE(parent);
  CHECK(parent->leaf == "c.bin");
  CHECK(fs::is_directory(dest() / "a" / "b"));
  create_in(*parent, "hello");
  CHECK(read_file(dest() / "a" / "b" / "c.bin") == "hello");

  const auto stat = root().stat_file("a/b/c.bin");
  REQUIRE(stat);
  REQUIRE(stat->has_value());
  CHECK((*stat)->size == 5);
  CHECK((*stat)->links == 1);

  SECTION("a top-level leaf's parent is the root itself") {
    const auto top = root().parent_of("top.bin", true);
    REQUIRE(top);
    CHECK(top->dir_fd == root().root_fd());
    CHECK(top->leaf == "top.bin");
  }
  SECTION("Parents of one directory share one fd") {
    const auto again = root().parent_of("a/b/other.bin", false);
    REQUIRE(again);
    CHECK(again->dir_fd == parent->dir_fd);
    CHECK(again->dir.get() == parent->dir.get());
  }
  check_outside_untouched();
}

TEST_CASE_METHOD(DestFixture, "a missing directory is reported, not created, without create",
                 "[client][dest]") {
  CHECK(code_of(root().parent_of("missing/x", false)) == kAbsent);
  CHECK_FALSE(fs::exists(dest() / "missing"));
  const auto stat = root().stat_file("missing/x");
  REQUIRE(stat);
  CHECK_FALSE(stat->has_value());
  CHECK(code_of(root().open_read("missing/x")) == kAbsent);
  CHECK(code_of(root().open_read("absent")) == kAbsent);
  CHECK(root().remove_file("missing/x"));
  CHECK(root().remove_file("absent"));
  CHECK_FALSE(fs::exists(dest() / "missing"));
}

TEST_CASE_METHOD(DestFixture, "paths that are not plain relative paths are refused before I/O",
                 "[client][dest]") {
  const std::string path =
      GENERATE(as<std::string>{}, "", "/etc/passwd", "/", "../outside/sentinel", "a/../../x",
               "a/..", "..", ".", "./a", "a/./b", "a//b", "a/", ".shardsync/state.json",
               ".ShardSync", "a/.shardsync-part-0123", std::string("a\0b", 3));
  INFO("path: " << path);
  CHECK(code_of(root().parent_of(path, true)) == kUnsafe);
  CHECK(code_of(root().stat_file(path)) == kUnsafe);
  CHECK(code_of(root().open_read(path)) == kUnsafe);
  CHECK(code_of(root().remove_file(path)) == kUnsafe);
  CHECK(fs::is_empty(dest()));
  check_outside_untouched();
}

TEST_CASE_METHOD(DestFixture, "a symlink planted at a parent is never followed", "[client][dest]") {
  const auto target = GENERATE(as<std::string>{}, "absolute", "relative", "inside");
  if (target == "absolute") {
    fs::create_directory_symlink(outside(), dest() / "a");
  } else if (target == "relative") {
    fs::create_directory_symlink("../outside", dest() / "a");
  } else {
    // Even a link that stays beneath the root is refused: links are never ours.
    fs::create_directories(dest() / "real");
    write_file(dest() / "real" / "sentinel", "inside");
    fs::create_directory_symlink("real", dest() / "a");
  }
  INFO("symlink " << target);
  CHECK(code_of(root().parent_of("a/new.bin", true)) == kUnsafe);
  CHECK(code_of(root().parent_of("a/new.bin", false)) == kUnsafe);
  CHECK(code_of(root().parent_of("a/deeper/new.bin", true)) == kUnsafe);
  CHECK(code_of(root().stat_file("a/sentinel")) == kUnsafe);
  CHECK(code_of(root().open_read("a/sentinel")) == kUnsafe);
  CHECK(code_of(root().remove_file("a/sentinel")) == kUnsafe);
  CHECK(fs::is_symlink(dest() / "a"));
  check_outside_untouched();
  if (target == "inside") CHECK(read_file(dest() / "real" / "sentinel") == "inside");
}

TEST_CASE_METHOD(DestFixture, "a symlink deeper in the chain is refused when creating below it",
                 "[client][dest]") {
  fs::create_directories(dest() / "x");
  fs::create_directory_symlink(outside(), dest() / "x" / "y");
  CHECK(code_of(root().parent_of("x/y/z/file", true)) == kUnsafe);
  CHECK(code_of(root().parent_of("x/y/file", true)) == kUnsafe);
  CHECK(code_of(root().remove_file("x/y/sentinel")) == kUnsafe);
  check_outside_untouched();
}

TEST_CASE_METHOD(DestFixture, "a symlink at the leaf is refused and replaced only by rename",
                 "[client][dest]") {
  fs::create_symlink(sentinel(), dest() / "leaf");
  CHECK(code_of(root().stat_file("leaf")) == kUnsafe);
  CHECK(code_of(root().open_read("leaf")) == kUnsafe);
  CHECK(code_of(root().remove_file("leaf")) == kUnsafe);
  CHECK(fs::is_symlink(dest() / "leaf"));

  // The downloader's way of publishing: a temp file renamed over the leaf replaces the link
  // itself, never writes through it.
  auto parent = root().parent_of("leaf", true);
  REQUIRE(parent);
  DestRoot::Parent temp = *parent;
  temp.leaf = "leaf.tmp";
  create_in(temp, "new");
  REQUIRE(::renameat(parent->dir_fd, "leaf.tmp", parent->dir_fd, "leaf") == 0);
  CHECK_FALSE(fs::is_symlink(dest() / "leaf"));
  CHECK(read_file(dest() / "leaf") == "new");
  check_outside_untouched();
}

TEST_CASE_METHOD(DestFixture, "a parent swapped for a symlink between calls is refused",
                 "[client][dest]") {
  auto first = root().parent_of("a/f", true);
  REQUIRE(first);
  create_in(*first, "one");
  fs::rename(dest() / "a", dest() / "a.old");
  fs::create_directory_symlink(outside(), dest() / "a");

  CHECK(code_of(root().parent_of("a/g", true)) == kUnsafe);
  CHECK(code_of(root().parent_of("a/g", false)) == kUnsafe);
  CHECK(code_of(root().stat_file("a/f")) == kUnsafe);
  CHECK(code_of(root().open_read("a/sentinel")) == kUnsafe);
  CHECK(code_of(root().remove_file("a/sentinel")) == kUnsafe);
  check_outside_untouched();
  // The Parent handed out before still names the directory it was resolved to.
  struct stat old_dir {};
  REQUIRE(::stat((dest() / "a.old").c_str(), &old_dir) == 0);
  CHECK(inode_of_fd(first->dir_fd) == old_dir.st_ino);
}

TEST_CASE_METHOD(DestFixture, "a directory removed and recreated is resolved afresh",
                 "[client][dest]") {
  auto first = root().parent_of("a/f", true);
  REQUIRE(first);
  const ino_t old_inode = inode_of_fd(first->dir_fd);
  fs::remove(dest() / "a");
  fs::create_directory(dest() / "a");
  auto second = root().parent_of("a/g", true);
  REQUIRE(second);
  CHECK(inode_of_fd(second->dir_fd) != old_inode);
  struct stat now {};
  REQUIRE(::stat((dest() / "a").c_str(), &now) == 0);
  CHECK(inode_of_fd(second->dir_fd) == now.st_ino);
}

TEST_CASE_METHOD(DestFixture, "a parent flipping between directory and symlink never leaks out",
                 "[client][dest]") {
  // A racing thread swaps dest/a atomically between a real directory and a symlink to the
  // outside (RENAME_EXCHANGE) while the loop resolves and creates files through DestRoot.
  fs::create_directories(dest() / "a");
  write_file(dest() / "a" / "keep", "k");  // so that remove_file never prunes it
  fs::create_directory_symlink(outside(), dest() / "swap");
  std::atomic<bool> stop{false};
  std::thread racer([&] {
    const std::string a = (dest() / "a").string();
    const std::string swap = (dest() / "swap").string();
    while (!stop.load()) {
      ::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, swap.c_str(), RENAME_EXCHANGE);
    }
  });
  int created = 0;
  int refused = 0;
  for (int i = 0; i < 3000; ++i) {
    const std::string name = "a/f" + std::to_string(i);
    auto parent = root().parent_of(name, i % 2 == 0);
    if (!parent) {
      CHECK((parent.error().code == kUnsafe || parent.error().code == kAbsent));
      ++refused;
      continue;
    }
    create_in(*parent, "x");
    ++created;
    (void)root().remove_file(name);
  }
  stop = true;
  racer.join();
  INFO("created " << created << ", refused " << refused);
  CHECK(created + refused == 3000);
  check_outside_untouched();
}

TEST_CASE_METHOD(DestFixture, "file and directory conflicts are refused, never replaced",
                 "[client][dest]") {
  SECTION("a file where a directory is needed") {
    write_file(dest() / "a", "file");
    CHECK(code_of(root().parent_of("a/b", true)) == kUnsafe);
    CHECK(code_of(root().parent_of("a/b", false)) == kUnsafe);
    CHECK(code_of(root().parent_of("a/b/c", true)) == kUnsafe);
    CHECK(code_of(root().stat_file("a/b")) == kUnsafe);
    CHECK(read_file(dest() / "a") == "file");
  }
  SECTION("a directory where a file is expected") {
    fs::create_directories(dest() / "d");
    write_file(dest() / "d" / "inner", "inner");
    CHECK(code_of(root().stat_file("d")) == kUnsafe);
    CHECK(code_of(root().open_read("d")) == kUnsafe);
    CHECK(code_of(root().remove_file("d")) == kUnsafe);
    CHECK(read_file(dest() / "d" / "inner") == "inner");
    fs::create_directories(dest() / "empty");
    CHECK(code_of(root().remove_file("empty")) == kUnsafe);
    CHECK(fs::is_directory(dest() / "empty"));
  }
}

TEST_CASE_METHOD(DestFixture, "FIFOs and devices are refused without being opened",
                 "[client][dest]") {
  REQUIRE(::mkfifo((dest() / "fifo").c_str(), 0600) == 0);
  // open_read must not block on the FIFO (no writer would ever come).
  CHECK(code_of(root().open_read("fifo")) == kUnsafe);
  CHECK(code_of(root().stat_file("fifo")) == kUnsafe);
  CHECK(code_of(root().remove_file("fifo")) == kUnsafe);
  CHECK(fs::is_fifo(dest() / "fifo"));
  if (::mknod((dest() / "null").c_str(), S_IFCHR | 0600, makedev(1, 3)) == 0) {
    CHECK(code_of(root().open_read("null")) == kUnsafe);
    CHECK(code_of(root().remove_file("null")) == kUnsafe);
    CHECK(fs::is_character_file(dest() / "null"));
  } else {
    WARN("mknod not permitted here: device case skipped");
  }
}

TEST_CASE_METHOD(DestFixture, "remove_file prunes the directories it empties, never the root",
                 "[client][dest]") {
  for (const char* path : {"a/b/c/f", "a/g", "z/only"}) {
    auto parent = root().parent_of(path, true);
    REQUIRE(parent);
    create_in(*parent, "x");
  }
  REQUIRE(root().remove_file("a/b/c/f"));
  CHECK_FALSE(fs::exists(dest() / "a" / "b"));
  CHECK(fs::exists(dest() / "a" / "g"));
  REQUIRE(root().remove_file("a/g"));
  CHECK_FALSE(fs::exists(dest() / "a"));
  REQUIRE(root().remove_file("z/only"));
  CHECK(fs::is_directory(dest()));
  CHECK(fs::is_empty(dest()));
  // Removing again is fine, and the directories come back when needed.
  CHECK(root().remove_file("a/b/c/f"));
  auto again = root().parent_of("a/b/c/f", true);
  REQUIRE(again);
  create_in(*again, "y");
  CHECK(read_file(dest() / "a" / "b" / "c" / "f") == "y");
  check_outside_untouched();
}

TEST_CASE_METHOD(DestFixture, "a directory holding a partial download is not pruned",
                 "[client][dest]") {
  auto parent = root().parent_of("a/f", true);
  REQUIRE(parent);
  create_in(*parent, "x");
  write_file(dest() / "a" / ".shardsync-part-0123456789abcdef", "partial");
  REQUIRE(root().remove_file("a/f"));
  CHECK_FALSE(fs::exists(dest() / "a" / "f"));
  CHECK(fs::exists(dest() / "a" / ".shardsync-part-0123456789abcdef"));
}

TEST_CASE_METHOD(DestFixture, "remove_file removes one name of a hard-linked file",
                 "[client][dest]") {
  write_file(dest() / "f", "shared");
  fs::create_hard_link(dest() / "f", outside() / "link");
  const auto stat = root().stat_file("f");
  REQUIRE(stat);
  REQUIRE(stat->has_value());
  CHECK((*stat)->links == 2);
  REQUIRE(root().remove_file("f"));
  CHECK_FALSE(fs::exists(dest() / "f"));
  CHECK(read_file(outside() / "link") == "shared");
  fs::remove(outside() / "link");
  check_outside_untouched();
}

TEST_CASE_METHOD(DestFixture, "stat_file reports size, mtime, inode and links", "[client][dest]") {
  write_file(dest() / "f", "12345678");
  const timespec times[2] = {{1'700'000'000, 123'456'789}, {1'700'000'000, 123'456'789}};
  REQUIRE(::utimensat(AT_FDCWD, (dest() / "f").c_str(), times, 0) == 0);
  struct stat st {};
  REQUIRE(::stat((dest() / "f").c_str(), &st) == 0);
  const auto file = root().stat_file("f");
  REQUIRE(file);
  REQUIRE(file->has_value());
  CHECK((*file)->size == 8);
  CHECK((*file)->mtime_ns == 1'700'000'000'123'456'789);
  CHECK((*file)->inode == st.st_ino);
  CHECK((*file)->links == 1);
}

TEST_CASE_METHOD(DestFixture, "open_read hands the caller a blocking read-only fd",
                 "[client][dest]") {
  fs::create_directories(dest() / "d");
  write_file(dest() / "d" / "f", "content");
  const auto fd = root().open_read("d/f");
  REQUIRE(fd);
  const int flags = ::fcntl(*fd, F_GETFL);
  CHECK((flags & O_ACCMODE) == O_RDONLY);
  CHECK((flags & O_NONBLOCK) == 0);
  CHECK((::fcntl(*fd, F_GETFD) & FD_CLOEXEC) != 0);
  char buffer[16] = {};
  CHECK(::read(*fd, buffer, sizeof buffer) == 7);
  CHECK(std::string(buffer) == "content");
  ::close(*fd);
}

TEST_CASE_METHOD(DestFixture, "walk lists regular files only, skipping reserved names and links",
                 "[client][dest]") {
  fs::create_directories(dest() / "d" / "e");
  fs::create_directories(dest() / ".shardsync");
  fs::create_directories(dest() / ".ShardSync-old" / "x");
  write_file(dest() / "a.bin", "a");
  write_file(dest() / "d" / "b.bin", "bb");
  write_file(dest() / "d" / "e" / "c.bin", "ccc");
  write_file(dest() / ".shardsync" / "state.json", "{}");
  write_file(dest() / ".ShardSync-old" / "x" / "y", "y");
  write_file(dest() / "d" / ".shardsync-part-0123", "partial");
  write_file(dest() / "d" / ".SHARDSYNC-tmp", "tmp");
  fs::create_directory_symlink(outside(), dest() / "link");
  fs::create_symlink(sentinel(), dest() / "d" / "flink");
  fs::create_directory_symlink("..", dest() / "d" / "loop");
  REQUIRE(::mkfifo((dest() / "d" / "fifo").c_str(), 0600) == 0);

  const std::vector<std::pair<std::string, std::uint64_t>> expected = {
      {"a.bin", 1}, {"d/b.bin", 2}, {"d/e/c.bin", 3}};
  CHECK(walk_all(root()) == expected);
  // A second walk sees the same (its directory stream is its own).
  CHECK(walk_all(root()) == expected);
  check_outside_untouched();
}

TEST_CASE_METHOD(DestFixture, "walk descends as deep as a mapped path can go and no deeper",
                 "[client][dest]") {
  fs::path deep = dest();
  for (int i = 0; i < 63; ++i) deep /= "d";
  fs::create_directories(deep / "d");
  write_file(deep / "f64", "x");        // 64 segments: a mapped path can be this deep
  write_file(deep / "d" / "f65", "x");  // 65: never a mapped path, not listed
  const auto seen = walk_all(root());
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].first.size() == 63 * 2 + 3);
  CHECK(seen[0].first.ends_with("/f64"));
}

TEST_CASE_METHOD(DestFixture, "walk on an empty destination calls nothing", "[client][dest]") {
  CHECK(walk_all(root()).empty());
}

TEST_CASE_METHOD(DestFixture, "a Parent keeps its directory fd open after the DestRoot is gone",
                 "[client][dest]") {
  std::optional<DestRoot::Parent> parent;
  {
    auto other = DestRoot::open(dest().string());
    REQUIRE(other);
    auto got = other->parent_of("kept/f", true);
    REQUIRE(got);
    parent = std::move(*got);
  }
  create_in(*parent, "still here");
  CHECK(read_file(dest() / "kept" / "f") == "still here");
}

TEST_CASE_METHOD(DestFixture, "the directory cache bounds open fds while held Parents stay valid",
                 "[client][dest]") {
  const std::size_t before = open_fd_count();
  SECTION("released Parents: at most the cache's worth of fds stays open") {
    for (int i = 0; i < 600; ++i) {
      auto parent = root().parent_of("dir" + std::to_string(i) + "/f", true);
      REQUIRE(parent);
    }
    CHECK(open_fd_count() <= before + DestRoot::kMaxCachedDirs + 1);
  }
  SECTION("held Parents survive the cache being dropped") {
    std::vector<DestRoot::Parent> held;
    for (int i = 0; i < 300; ++i) {
      auto parent = root().parent_of("dir" + std::to_string(i) + "/f", true);
      REQUIRE(parent);
      held.push_back(std::move(*parent));
    }
    for (const auto& parent : held) create_in(parent, "x");
    for (int i = 0; i < 300; ++i) {
      CHECK(fs::exists(dest() / ("dir" + std::to_string(i)) / "f"));
    }
  }
}

TEST_CASE("a full file system maps to disk_full", "[client][dest]") {
  test::TempDir tmp;
  const auto mount_point = tmp / "small";
  fs::create_directories(mount_point);
  // Few inodes: mkdirat runs out of them long before bytes run out.
  if (::mount("tmpfs", mount_point.c_str(), "tmpfs", 0, "size=256k,nr_inodes=8") != 0) {
    WARN("cannot mount a tmpfs here (not root?): disk-full case skipped");
    return;
  }
  struct Unmount {
    fs::path path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{mount_point};
  auto root = DestRoot::open(mount_point.string());
  REQUIRE(root);
  Result<DestRoot::Parent> parent;
  for (int i = 0; i < 16 && parent; ++i)
    parent = root->parent_of("d" + std::to_string(i) + "/f", true);
  CHECK(code_of(parent) == make_error_code(errc::disk_full));
}

}  // namespace shardsync::client
