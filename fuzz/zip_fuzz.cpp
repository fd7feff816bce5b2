// The dump package reader (RELIABILITY.md §1.3, Z5–Z8), run whole: libzip with its
// consistency checks, manifest.xml through the sitemap parser, every <loc> through the path
// mapper, entries inflated and committed into a scratch DEST. Oracles, besides no crash/UB:
// nothing appears beside DEST; DEST holds only directories and regular files, no temp file
// left behind; every file there is an entry reported extracted, at that entry's mapped path,
// with the reported byte count and, when verified, the manifest's sha-256.

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>

#include "fuzz_check.hpp"
#include "shardsync/client/dest_root.hpp"
#include "shardsync/client/discovery.hpp"
#include "shardsync/client/dump_package.hpp"
#include "shardsync/client/local_path.hpp"
#include "shardsync/sitemap/digest.hpp"

namespace {

namespace fs = std::filesystem;
using namespace shardsync;

constexpr const char* kPackageUrl = "http://example.org/data/dump.zip";

// A scratch directory per process: <dir>/shardsync-zip-fuzz-<pid>/{dest,beside}, in /dev/shm
// when there is one: the committer fdatasyncs every file, which costs nothing on tmpfs.
fs::path scratch_parent() {
  if (const char* dir = std::getenv("SHARDSYNC_FUZZ_SCRATCH")) return dir;
  std::error_code ec;
  if (fs::is_directory("/dev/shm", ec)) return "/dev/shm";
  const char* tmp = std::getenv("TMPDIR");
  return tmp ? tmp : "/tmp";
}

struct Scratch {
  fs::path top, dest, beside;
  Scratch() {
    top = scratch_parent() / ("shardsync-zip-fuzz-" + std::to_string(::getpid()));
    dest = top / "dest";
    beside = top / "beside";
    fs::remove_all(top);
    fs::create_directories(beside);
    std::ofstream(beside / "sentinel") << "untouched";
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(top, ec);
  }
};

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void check_outcome(const Scratch& scratch, const client::UnpackReport& report) {
  std::map<std::string, const client::UnpackedEntry*> extracted;
  for (const auto& e : report.entries) {
    if (e.outcome == client::UnpackedEntry::Outcome::extracted) {
      FUZZ_CHECK(extracted.emplace(e.path, &e).second, "two entries extracted to one path");
    }
  }
  std::size_t files = 0;
  for (auto it = fs::recursive_directory_iterator(scratch.dest);
       it != fs::recursive_directory_iterator(); ++it) {
    const auto status = it->symlink_status();
    FUZZ_CHECK(!fs::is_symlink(status), "a symlink in DEST");
    if (fs::is_directory(status)) continue;
    FUZZ_CHECK(fs::is_regular_file(status), "a non-regular file in DEST");
    const std::string rel = fs::relative(it->path(), scratch.dest).string();
    const auto found = extracted.find(rel);
    FUZZ_CHECK(found != extracted.end(), "a file in DEST that no entry reported extracted");
    const client::UnpackedEntry& e = *found->second;
    const std::string body = read_file(it->path());
    FUZZ_CHECK(body.size() == e.bytes, "file size unlike the reported bytes");
    const sitemap::Entry& entry = report.manifest.entries[e.index];
    FUZZ_CHECK(entry.md && (!entry.md->length || *entry.md->length == body.size()),
               "file length unlike the manifest");
    const auto listed = entry.md->hash.get(sitemap::HashAlgorithm::sha256);
    if (e.verified && !listed.empty()) {
      sitemap::Hasher hasher;
      hasher.update(body);
      FUZZ_CHECK(hasher.finish().get(sitemap::HashAlgorithm::sha256) == listed,
                 "file content unlike the manifest's sha-256");
    }
    ++files;
  }
  FUZZ_CHECK(files == extracted.size(), "an entry reported extracted has no file");
  std::size_t beside = 0;
  for (const auto& e : fs::directory_iterator(scratch.top)) {
    FUZZ_CHECK(e.path() == scratch.dest || e.path() == scratch.beside, "a file beside DEST");
  }
  for (const auto& e : fs::directory_iterator(scratch.beside)) {
    FUZZ_CHECK(e.path().filename() == "sentinel", "a file beside DEST");
    ++beside;
  }
  FUZZ_CHECK(beside == 1 && read_file(scratch.beside / "sentinel") == "untouched",
             "the sentinel changed");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Scratch scratch;
  static const client::PathMapper mapper =
      *client::PathMapper::create({{"http://example.org/data/", ""}});
  fs::remove_all(scratch.dest);
  auto root = client::DestRoot::open(scratch.dest.string());
  FUZZ_CHECK(root.has_value(), "cannot open the scratch DEST");

  const int fd = ::memfd_create("package.zip", MFD_CLOEXEC);
  FUZZ_CHECK(fd >= 0, "memfd_create");
  for (std::size_t at = 0; at < size;) {
    const ssize_t n = ::write(fd, data + at, size - at);
    FUZZ_CHECK(n > 0, "write to memfd");
    at += static_cast<std::size_t>(n);
  }
  client::UnpackOptions options;
  options.package_url = kPackageUrl;
  options.commit_threads = 1;
  options.max_manifest_bytes = 1u << 20;
  // The last byte picks the package kind, so both paths get exercised.
  if (size > 0 && (data[size - 1] & 1)) {
    options.manifest_capability = sitemap::Capability::changedump_manifest;
  }
  auto report = client::unpack_package(fd, options, *root, mapper);
  ::close(fd);
  if (report) {
    for (const auto& e : report->entries) {
      if (e.path.empty()) continue;
      auto expected = mapper.local_path(e.url);
      FUZZ_CHECK(expected && *expected == e.path, "entry path is not the mapper's");
    }
    check_outcome(scratch, *report);
  } else {
    FUZZ_CHECK(!fs::exists(scratch.dest) || fs::is_empty(scratch.dest),
               "a refused package changed DEST");
  }
  return 0;
}
