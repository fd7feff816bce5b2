#include "shardsync/client/dump_package.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <zip.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "shardsync/client/errc.hpp"
#include "shardsync/sitemap/digest.hpp"
#include "test_paths.hpp"

namespace shardsync::client {
namespace {

namespace fs = std::filesystem;
using test::read_file;
using test::write_file;
using Outcome = UnpackedEntry::Outcome;

constexpr const char* kBase = "http://src.test/set/";

std::string sha256(const std::string& bytes) {
  sitemap::Hasher hasher({sitemap::HashAlgorithm::sha256});
  hasher.update(bytes);
  return std::string(hasher.finish().get(sitemap::HashAlgorithm::sha256));
}

struct ZipItem {
  ZipItem(std::string n, std::string d, bool z = true, std::optional<std::uint32_t> mode = {},
          bool dir = false)
      : name(std::move(n)), data(std::move(d)), deflate(z), unix_mode(mode), directory(dir) {}
  std::string name;
  std::string data;
  bool deflate;
  std::optional<std::uint32_t> unix_mode;  // external attributes (mode << 16), Unix host
  bool directory;
};

struct ManifestItem {
  std::string loc;  // relative to kBase unless absolute
  std::string path;
  std::optional<std::uint64_t> length;
  std::string hash;  // full attribute text; empty: none
};

std::string manifest_xml(const std::vector<ManifestItem>& items,
                         const std::string& capability = "resourcedump-manifest") {
  std::string xml =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\" "
      "xmlns:rs=\"http://www.openarchives.org/rs/terms/\">\n"
      "<rs:md capability=\"" +
      capability + "\" at=\"2026-01-01T00:00:00Z\"/>\n";
  for (const auto& item : items) {
    const std::string loc = item.loc.find("://") == std::string::npos ? kBase + item.loc : item.loc;
    xml += "<url><loc>" + loc + "</loc><lastmod>2026-01-01T00:00:00Z</lastmod><rs:md path=\"" +
           item.path + "\"";
    if (item.length) xml += " length=\"" + std::to_string(*item.length) + "\"";
    if (!item.hash.empty()) xml += " hash=\"" + item.hash + "\"";
    xml += "/></url>\n";
  }
  return xml + "</urlset>\n";
}

// A manifest item that matches `data` exactly.
ManifestItem good(const std::string& loc, const std::string& path, const std::string& data) {
  return {loc, path, data.size(), "sha-256:" + sha256(data)};
}

void write_zip(const fs::path& file, const std::vector<ZipItem>& items) {
  int error = 0;
  zip_t* zip = zip_open(file.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
  REQUIRE(zip != nullptr);
  for (const auto& item : items) {
    zip_int64_t index;
    if (item.directory) {
      index = zip_dir_add(zip, item.name.c_str(), ZIP_FL_ENC_UTF_8);
    } else {
      zip_source_t* source = zip_source_buffer(zip, item.data.data(), item.data.size(), 0);
      REQUIRE(source != nullptr);
      index = zip_file_add(zip, item.name.c_str(), source, ZIP_FL_ENC_UTF_8);
    }
    REQUIRE(index >= 0);
    const auto at = static_cast<zip_uint64_t>(index);
    if (!item.directory) {
      REQUIRE(zip_set_file_compression(zip, at, item.deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0) ==
              0);
    }
    if (item.unix_mode) {
      REQUIRE(zip_file_set_external_attributes(zip, at, 0, ZIP_OPSYS_UNIX, *item.unix_mode << 16) ==
              0);
    }
  }
  REQUIRE(zip_close(zip) == 0);
}

void put32(std::string& bytes, std::size_t at, std::uint32_t value) {
  for (int i = 0; i < 4; ++i)
    bytes[at + static_cast<std::size_t>(i)] = static_cast<char>(value >> (8 * i));
}
std::uint16_t get16(const std::string& bytes, std::size_t at) {
  return static_cast<std::uint16_t>(static_cast<unsigned char>(bytes[at]) |
                                    static_cast<unsigned char>(bytes[at + 1]) << 8);
}

// Rewrites, for the entry called `name`, its uncompressed size (in the local header and/or
// the central directory) and/or its name (same length), as a hostile writer would.
void patch_zip(const fs::path& file, const std::string& name,
               std::optional<std::uint32_t> local_size, std::optional<std::uint32_t> central_size,
               const std::string& new_name = {}) {
  std::string bytes = read_file(file);
  int patched = 0;
  for (std::size_t i = 0; i + 46 < bytes.size(); ++i) {
    if (bytes.compare(i, 4, "PK\x03\x04") == 0) {
      const std::uint16_t length = get16(bytes, i + 26);
      if (bytes.compare(i + 30, length, name) != 0 || length != name.size()) continue;
      if (local_size) put32(bytes, i + 22, *local_size);
      if (!new_name.empty()) bytes.replace(i + 30, length, new_name);
      ++patched;
    } else if (bytes.compare(i, 4, "PK\x01\x02") == 0) {
      const std::uint16_t length = get16(bytes, i + 28);
      if (bytes.compare(i + 46, length, name) != 0 || length != name.size()) continue;
      if (central_size) put32(bytes, i + 24, *central_size);
      if (!new_name.empty()) bytes.replace(i + 46, length, new_name);
      ++patched;
    }
  }
  REQUIRE(patched == 2);
  write_file(file, bytes);
}

// DEST beside an "outside" directory with a sentinel, and an existing good file in DEST:
// whatever a package holds, the outside must end as it started and the good file stay.
class DumpFixture {
 public:
  DumpFixture() {
    fs::create_directories(tmp_ / "outside");
    write_file(tmp_ / "outside" / "sentinel", "keep");
    fs::create_directories(dest());
    write_file(dest() / "good.txt", "old good bytes");
    auto root = DestRoot::open(dest().string());
    REQUIRE(root);
    root_.emplace(std::move(*root));
    auto mapper = PathMapper::create({{kBase, ""}});
    REQUIRE(mapper);
    mapper_.emplace(std::move(*mapper));
  }

  fs::path dest() const { return tmp_ / "dest"; }
  fs::path package() const { return tmp_ / "package.zip"; }

  Result<UnpackReport> unpack(const UnpackOptions& given = {}, const UnpackHooks& hooks = {}) {
    UnpackOptions options = given;
    options.package_url = std::string(kBase) + "dump/part1.zip";
    const UniqueFd fd(::open(package().c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(fd);
    return unpack_package(fd.get(), options, *root_, *mapper_, hooks);
  }

  // Every regular file in DEST (relative path → content), temp files included.
  std::map<std::string, std::string> dest_files() const {
    std::map<std::string, std::string> files;
    for (const auto& entry : fs::recursive_directory_iterator(dest())) {
      if (entry.is_symlink()) {
        files[fs::relative(entry.path(), dest()).string()] = "<symlink>";
      } else if (entry.is_regular_file()) {
        files[fs::relative(entry.path(), dest()).string()] = read_file(entry.path());
      }
    }
    return files;
  }

  void check_nothing_outside() const {
    std::set<std::string> top;
    for (const auto& entry : fs::directory_iterator(tmp_.path())) {
      top.insert(entry.path().filename().string());
    }
    CHECK(top == std::set<std::string>{"dest", "outside", "package.zip"});
    std::set<std::string> outside;
    for (const auto& entry : fs::directory_iterator(tmp_ / "outside")) {
      outside.insert(entry.path().filename().string());
    }
    CHECK(outside == std::set<std::string>{"sentinel"});
    CHECK(read_file(tmp_ / "outside" / "sentinel") == "keep");
  }

 private:
  test::TempDir tmp_;
  std::optional<DestRoot> root_;
  std::optional<PathMapper> mapper_;
};

TEST_CASE("a good dump package unpacks by its manifest, stored and deflated", "[client][dump]") {
  DumpFixture f;
  const std::string a = "alpha contents\n", b(300'000, 'b'), c = "replaced good\n";
  write_zip(f.package(),
            {{"manifest.xml",
              manifest_xml({good("a.txt", "/res/a.txt", a), good("dir/sub/b.bin", "/res/b.bin", b),
                            good("good.txt", "res/c.txt", c)}),
              false},
             {"res/a.txt", a, false},
             {"res/b.bin", b, true},
             {"res/c.txt", c, true}});
  auto report = f.unpack();
  REQUIRE(report);
  REQUIRE(report->entries.size() == 3);
  for (const auto& e : report->entries) {
    INFO(e.url << " " << (e.error ? e.error->describe() : ""));
    CHECK(e.outcome == Outcome::extracted);
    CHECK(e.verified);
  }
  CHECK(report->ignored_zip_entries == 0);
  CHECK(f.dest_files() ==
        std::map<std::string, std::string>{{"a.txt", a}, {"dir/sub/b.bin", b}, {"good.txt", c}});
  // The manifest's lastmod became the mtime (the engine's quick check relies on it).
  struct stat st {};
  REQUIRE(::stat((f.dest() / "a.txt").c_str(), &st) == 0);
  CHECK(st.st_mtim.tv_sec == 1767225600);
  f.check_nothing_outside();
}

TEST_CASE("a file already current is not extracted again", "[client][dump]") {
  DumpFixture f;
  write_zip(f.package(),
            {{"manifest.xml", manifest_xml({good("good.txt", "/g", "new")}), false}, {"g", "new"}});
  UnpackHooks hooks;
  hooks.is_current = [](const std::string& path, const sitemap::Entry&) -> Result<bool> {
    return path == "good.txt";
  };
  auto report = f.unpack({}, hooks);
  REQUIRE(report);
  REQUIRE(report->entries.size() == 1);
  CHECK(report->entries[0].outcome == Outcome::current);
  CHECK(read_file(f.dest() / "good.txt") == "old good bytes");
}

TEST_CASE("ZIP entry names never decide a local path", "[client][dump][hostile]") {
  DumpFixture f;
  const std::string x = "payload";
  // The manifest names hostile entries; the bytes land where the <loc> says, nowhere else.
  write_zip(f.package(),
            {{"manifest.xml",
              manifest_xml({good("one.txt", "/../x", x), good("two.txt", "/a\\..\\x", x),
                            good("three.txt", "//x", x)}),
              false},
             {"../x", x},
             {"a\\..\\x", x},
             {"/x", x},
             {"../../outside/sentinel", "overwritten"}});
  auto report = f.unpack();
  REQUIRE(report);
  for (const auto& e : report->entries) {
    INFO(e.url << " " << (e.error ? e.error->describe() : ""));
    CHECK(e.outcome == Outcome::extracted);
  }
  CHECK(report->ignored_zip_entries == 1);  // the extra entry was never read
  CHECK(f.dest_files() ==
        std::map<std::string, std::string>{
            {"good.txt", "old good bytes"}, {"one.txt", x}, {"three.txt", x}, {"two.txt", x}});
  f.check_nothing_outside();
}

TEST_CASE("manifest locs outside DEST are refused like fetches, the rest still unpacks",
          "[client][dump][hostile]") {
  DumpFixture f;
  const std::string x = "payload";
  write_zip(f.package(),
            {{"manifest.xml",
              manifest_xml({good("../../outside/sentinel", "/p", x),
                            good("%2e%2e/%2e%2e/outside/sentinel", "/p", x),
                            good("http://other.test/set/good.txt", "/p", x),
                            good("sub/..%2f..%2fx", "/p", x), good("fine.txt", "/p", x)}),
              false},
             {"p", x}});
  auto report = f.unpack();
  REQUIRE(report);
  REQUIRE(report->entries.size() == 5);
  for (std::size_t i = 0; i < 4; ++i) {
    INFO(report->entries[i].url);
    CHECK(report->entries[i].outcome == Outcome::failed);
    CHECK(report->entries[i].path.empty());
    REQUIRE(report->entries[i].error);
    CHECK((report->entries[i].error->code == make_error_code(errc::unsafe_path) ||
           report->entries[i].error->code == make_error_code(errc::outside_source)));
  }
  CHECK(report->entries[2].error->code == make_error_code(errc::outside_source));
  CHECK(report->entries[4].outcome == Outcome::extracted);
  CHECK(f.dest_files() ==
        std::map<std::string, std::string>{{"fine.txt", x}, {"good.txt", "old good bytes"}});
  f.check_nothing_outside();
}

// Runs a package whose one manifest entry targets good.txt and must fail: the existing file
// stays, no temp file is left, nothing outside changes. Returns the entry's error.
Error refused_entry(DumpFixture& f) {
  auto report = f.unpack();
  REQUIRE(report);
  REQUIRE(report->entries.size() == 1);
  const UnpackedEntry& e = report->entries[0];
  CHECK(e.outcome == Outcome::failed);
  REQUIRE(e.error);
  INFO(e.error->describe());
  CHECK(f.dest_files() == std::map<std::string, std::string>{{"good.txt", "old good bytes"}});
  f.check_nothing_outside();
  return *e.error;
}

bool refused_as(DumpFixture& f, errc code, const std::string& words) {
  const Error error = refused_entry(f);
  INFO(error.describe());
  return error.code == make_error_code(code) && error.detail.find(words) != std::string::npos;
}

TEST_CASE("non-regular and missing entries are refused per entry", "[client][dump][hostile]") {
  DumpFixture f;
  SECTION("a symlink entry") {
    write_zip(f.package(), {{"manifest.xml", manifest_xml({{"good.txt", "/link", 19, ""}}), false},
                            {"link", "../outside/sentinel", false, S_IFLNK | 0777}});
    CHECK(refused_as(f, errc::bad_package, "a symbolic link"));
  }
  SECTION("a directory entry where a file is expected") {
    write_zip(f.package(), {{"manifest.xml", manifest_xml({{"good.txt", "/d/", 0, ""}}), false},
                            {"d/", "", true, std::nullopt, true}});
    CHECK(refused_as(f, errc::bad_package, "is a directory"));
  }
  SECTION("a directory mode on a plain name") {
    write_zip(f.package(), {{"manifest.xml", manifest_xml({{"good.txt", "/d", 0, ""}}), false},
                            {"d", "", false, S_IFDIR | 0755}});
    CHECK(refused_as(f, errc::bad_package, "is a directory"));
  }
  SECTION("a path absent from the ZIP") {
    write_zip(f.package(),
              {{"manifest.xml", manifest_xml({good("good.txt", "/absent", "x")}), false},
               {"present", "x"}});
    CHECK(refused_as(f, errc::bad_package, "not in the package"));
  }
  SECTION("the manifest itself as a resource") {
    write_zip(
        f.package(),
        {{"manifest.xml", manifest_xml({{"good.txt", "/manifest.xml", std::nullopt, ""}}), false}});
    CHECK(refused_as(f, errc::bad_package, "not in the package"));
  }
  SECTION("a hash mismatch") {
    write_zip(f.package(),
              {{"manifest.xml", manifest_xml({{"good.txt", "/g", 4, "sha-256:" + sha256("good")}}),
                false},
               {"g", "evil"}});
    CHECK(refused_as(f, errc::hash_mismatch, "sha-256"));
  }
}

TEST_CASE("length lies and bombs stop at the declared length", "[client][dump][hostile]") {
  DumpFixture f;
  const std::string big(10 << 20, '\0');
  SECTION("the manifest says 10, the entry holds 10 MB") {
    write_zip(f.package(), {{"manifest.xml", manifest_xml({{"good.txt", "/big", 10, ""}}), false},
                            {"big", big}});
    CHECK(refused_as(f, errc::length_mismatch, "10485760 bytes in the ZIP, 10 in the manifest"));
  }
  SECTION("a deflate bomb: both headers and the manifest say 10, it inflates to 10 MB") {
    write_zip(f.package(), {{"manifest.xml", manifest_xml({{"good.txt", "/big", 10, ""}}), false},
                            {"big", big}});
    patch_zip(f.package(), "big", 10, 10);
    std::uint64_t inflated = 0;
    UnpackHooks hooks;
    hooks.on_bytes = [&](std::uint64_t n) { inflated += n; };
    auto report = f.unpack({}, hooks);
    REQUIRE(report);
    REQUIRE(report->entries.size() == 1);
    CHECK(report->entries[0].outcome == Outcome::failed);
    REQUIRE(report->entries[0].error);
    CHECK(report->entries[0].error->code == make_error_code(errc::length_mismatch));
    CHECK_THAT(report->entries[0].error->detail, Catch::Contains("inflates to more than"));
    CHECK(inflated <= 10);
    CHECK(f.dest_files() == std::map<std::string, std::string>{{"good.txt", "old good bytes"}});
    f.check_nothing_outside();
  }
  SECTION("the central directory says 10, the local header 10 MB: the package is refused") {
    write_zip(f.package(), {{"manifest.xml", manifest_xml({{"good.txt", "/big", 10, ""}}), false},
                            {"big", big}});
    patch_zip(f.package(), "big", std::nullopt, 10);
    auto report = f.unpack();
    REQUIRE_FALSE(report);
    CHECK(report.error().code == make_error_code(errc::bad_package));
    CHECK(f.dest_files() == std::map<std::string, std::string>{{"good.txt", "old good bytes"}});
    f.check_nothing_outside();
  }
}

TEST_CASE("packages that are refused whole change nothing", "[client][dump][hostile]") {
  DumpFixture f;
  UnpackOptions options;
  SECTION("a duplicate entry name") {
    write_zip(f.package(), {{"manifest.xml", manifest_xml({good("good.txt", "/aa", "1")}), false},
                            {"aa", "1"},
                            {"bb", "2"}});
    patch_zip(f.package(), "bb", std::nullopt, std::nullopt, "aa");
  }
  SECTION("no manifest") { write_zip(f.package(), {{"good.txt", "evil"}}); }
  SECTION("the manifest below the top level") {
    write_zip(f.package(), {{"sub/manifest.xml", manifest_xml({good("good.txt", "/g", "evil")})},
                            {"g", "evil"}});
  }
  SECTION("a manifest of the wrong capability") {
    write_zip(f.package(),
              {{"manifest.xml", manifest_xml({good("good.txt", "/g", "evil")}, "resourcelist")},
               {"g", "evil"}});
  }
  SECTION("a manifest unlike the advertised copy") {
    write_zip(f.package(),
              {{"manifest.xml", manifest_xml({good("good.txt", "/g", "evil")})}, {"g", "evil"}});
    options.manifest_copy = manifest_xml({good("other.txt", "/g", "evil")});
  }
  SECTION("a manifest over the cap") {
    write_zip(f.package(),
              {{"manifest.xml", manifest_xml({good("good.txt", "/g", "evil")})}, {"g", "evil"}});
    options.max_manifest_bytes = 100;
  }
  SECTION("not a ZIP") { write_file(f.package(), "this is not a zip file at all"); }
  auto report = f.unpack(options);
  REQUIRE_FALSE(report);
  INFO(report.error().describe());
  CHECK(report.error().code == make_error_code(errc::bad_package));
  CHECK(f.dest_files() == std::map<std::string, std::string>{{"good.txt", "old good bytes"}});
  f.check_nothing_outside();
}

TEST_CASE("an advertised manifest copy that matches is accepted", "[client][dump]") {
  DumpFixture f;
  const std::string manifest = manifest_xml({good("new.txt", "/n", "new")});
  write_zip(f.package(), {{"manifest.xml", manifest}, {"n", "new"}});
  UnpackOptions options;
  options.manifest_copy = manifest;
  auto report = f.unpack(options);
  REQUIRE(report);
  CHECK(report->entries.at(0).outcome == Outcome::extracted);
  CHECK(read_file(f.dest() / "new.txt") == "new");
}

std::string change_manifest(const std::string& capability, const std::string& entries) {
  return "<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\" "
         "xmlns:rs=\"http://www.openarchives.org/rs/terms/\">\n<rs:md capability=\"" +
         capability + "\" from=\"2026-01-01T00:00:00Z\" at=\"2026-01-01T00:00:00Z\"/>\n" + entries +
         "</urlset>\n";
}
std::string change(const std::string& loc, const std::string& type, const std::string& when,
                   const std::string& path = {}) {
  return std::string("<url><loc>") + kBase + loc + "</loc><rs:md change=\"" + type +
         "\" datetime=\"" + when + "\"" + (path.empty() ? "" : " path=\"" + path + "\"") +
         "/></url>\n";
}

TEST_CASE("a change dump package applies the last change per path and reports deletions",
          "[client][dump]") {
  DumpFixture f;
  const std::string entries = change("a.txt", "created", "2026-01-01T01:00:00Z", "/c1") +
                              change("good.txt", "deleted", "2026-01-01T02:00:00Z") +
                              change("a.txt", "updated", "2026-01-01T03:00:00Z", "/c2");
  write_zip(f.package(), {{"manifest.xml", change_manifest("changedump-manifest", entries)},
                          {"c1", "first"},
                          {"c2", "second"}});
  UnpackOptions options;
  options.manifest_capability = sitemap::Capability::changedump_manifest;
  auto report = f.unpack(options);
  REQUIRE(report);
  REQUIRE(report->entries.size() == 2);
  CHECK(report->entries[0].path == "good.txt");
  CHECK(report->entries[0].outcome == Outcome::deleted_change);
  CHECK(report->entries[1].path == "a.txt");
  CHECK(report->entries[1].index == 2);
  CHECK(report->entries[1].outcome == Outcome::extracted);
  // The unpacker itself never deletes: the engine does, with --delete.
  CHECK(f.dest_files() ==
        std::map<std::string, std::string>{{"a.txt", "second"}, {"good.txt", "old good bytes"}});
  f.check_nothing_outside();
}

TEST_CASE("a deleted change in a resource dump manifest deletes nothing", "[client][dump]") {
  DumpFixture f;
  write_zip(
      f.package(),
      {{"manifest.xml", change_manifest("resourcedump-manifest",
                                        change("good.txt", "deleted", "2026-01-01T02:00:00Z"))}});
  auto report = f.unpack();
  REQUIRE(report);
  REQUIRE(report->entries.size() == 1);
  CHECK(report->entries[0].outcome == Outcome::failed);
  CHECK(f.dest_files() == std::map<std::string, std::string>{{"good.txt", "old good bytes"}});
}

TEST_CASE("bad_package has its own message", "[client][dump]") {
  CHECK(make_error_code(errc::bad_package).message() == "bad dump package");
  CHECK(make_error_code(errc::bad_package).category().name() == std::string("shardsync.client"));
}

}  // namespace
}  // namespace shardsync::client
