#include <fcntl.h>
#include <sys/stat.h>
#include <zip.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <set>
#include <thread>

#include "dump_builder.hpp"
#include "dump_documents.hpp"
#include "shardsync/server/errc.hpp"
#include "shardsync/server/site.hpp"
#include "shardsync/sitemap/digest.hpp"
#include "shardsync/sitemap/parser.hpp"
#include "shardsync/sitemap/url.hpp"
#include "shardsync/sitemap/validator.hpp"
#include "test_paths.hpp"

using namespace shardsync::server;
using namespace shardsync::sitemap;
using shardsync::test::read_file;
using shardsync::test::TempDir;
using shardsync::test::write_file;
namespace fs = std::filesystem;

namespace {

constexpr const char* kBase = "http://127.0.0.1:8080/";

std::string sha256_of(std::string_view bytes) {
  Hasher hasher({HashAlgorithm::sha256});
  hasher.update(bytes);
  return std::string(hasher.finish().get(HashAlgorithm::sha256));
}

std::int64_t mtime_of(const fs::path& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

// Writes `bytes` to <root>/<path> and returns the state the log would hold for it.
ResourceState put(const fs::path& root, const std::string& path, const std::string& bytes) {
  fs::create_directories((root / path).parent_path());
  write_file(root / path, bytes);
  ResourceState s;
  s.path = path;
  s.length = bytes.size();
  s.sha256 = sha256_of(bytes);
  s.mtime_ns = mtime_of(root / path);
  s.type = media_type_of(path);
  return s;
}

Document parse_valid(const std::string& bytes) {
  auto doc = parse_document(bytes);
  REQUIRE(doc);
  for (const Finding& f : validate(*doc)) {
    if (f.severity == Severity::error) FAIL(f.format());
  }
  return *doc;
}

struct ZipEntry {
  std::string name;
  std::string bytes;
  std::uint16_t method = 0;
};

// Every entry of a package, in order, opened with consistency checks.
std::vector<ZipEntry> read_zip(const fs::path& path) {
  int error = 0;
  zip_t* zip = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &error);
  REQUIRE(zip != nullptr);
  std::vector<ZipEntry> entries;
  const zip_int64_t n = zip_get_num_entries(zip, 0);
  for (zip_int64_t i = 0; i < n; ++i) {
    zip_stat_t st;
    REQUIRE(zip_stat_index(zip, static_cast<zip_uint64_t>(i), 0, &st) == 0);
    ZipEntry e;
    e.name = st.name;
    e.method = st.comp_method;
    e.bytes.resize(st.size);
    zip_file_t* f = zip_fopen_index(zip, static_cast<zip_uint64_t>(i), 0);
    REQUIRE(f != nullptr);
    if (st.size > 0) {
      REQUIRE(zip_fread(f, e.bytes.data(), st.size) == static_cast<zip_int64_t>(st.size));
    }
    zip_fclose(f);
    entries.push_back(std::move(e));
  }
  zip_discard(zip);
  return entries;
}

// Checks one package against its manifest, the collection's files and the manifest copy;
// returns the paths it holds.
std::set<std::string> check_package(const fs::path& dump_dir, const DumpPackage& package,
                                    const fs::path& collection, Capability capability) {
  const std::vector<ZipEntry> entries = read_zip(dump_dir / package.zip.name);
  REQUIRE(!entries.empty());
  CHECK(entries.front().name == "manifest.xml");
  CHECK(read_file(dump_dir / package.manifest.name) == entries.front().bytes);
  CHECK(fs::file_size(dump_dir / package.zip.name) == package.zip.length);
  CHECK(sha256_of(read_file(dump_dir / package.zip.name)) == package.zip.sha256);
  const Document manifest = parse_valid(entries.front().bytes);
  CHECK(manifest.header.capability() == capability);
  REQUIRE(manifest.header.find_link("up") != nullptr);
  CHECK(manifest.header.find_link("up")->href == std::string(kBase) + "c/capabilitylist.xml");

  std::map<std::string, const ZipEntry*> by_name;
  for (const ZipEntry& e : entries) {
    CHECK(e.method == ZIP_CM_STORE);
    by_name[e.name] = &e;
  }
  std::set<std::string> paths;
  for (const Entry& e : manifest.entries) {
    REQUIRE(e.md);
    if (e.md->change == ChangeType::deleted) continue;
    REQUIRE(e.md->path.starts_with("/"));
    const auto it = by_name.find(e.md->path.substr(1));
    REQUIRE(it != by_name.end());
    const std::string& bytes = it->second->bytes;
    CHECK(e.md->length == bytes.size());
    CHECK(e.md->hash.get(HashAlgorithm::sha256) == sha256_of(bytes));
    CHECK(e.loc.starts_with(std::string(kBase) + "c/"));
    if (capability == Capability::resourcedump_manifest) {
      const std::string relative = e.md->path.substr(1);
      CHECK(read_file(collection / relative) == bytes);
      CHECK(e.loc == std::string(kBase) + "c/" + encode_path(relative));
    }
    paths.insert(e.md->path);
  }
  CHECK(by_name.size() ==
        manifest.entries.size() + 1 -
            static_cast<std::size_t>(
                std::count_if(manifest.entries.begin(), manifest.entries.end(),
                              [](const Entry& e) { return e.md->change == ChangeType::deleted; })));
  return paths;
}

struct DumpFixture {
  TempDir dir;
  fs::path data = dir / "data";
  fs::path dumps = dir / "dumps";
  detail::DumpTarget target;
  ChangeLog::Snapshot snapshot;

  DumpFixture() {
    fs::create_directories(data);
    fs::create_directories(dumps);
    target = detail::DumpTarget{{"c", data.string()}, kBase, dumps.string()};
    snapshot.info.last_datetime_ns = 1'800'000'000'123'456'789;
  }
  void add(const std::string& path, const std::string& bytes) {
    snapshot.resources.push_back(put(data, path, bytes));
  }
  std::size_t files_in_dumps() const {
    return static_cast<std::size_t>(std::distance(fs::directory_iterator(dumps), {}));
  }
};

}  // namespace

TEST_CASE("a resource dump stores every file behind manifest.xml, as the manifest says",
          "[server][dump]") {
  DumpFixture f;
  f.add("a.bin", std::string(5000, 'a'));
  f.add("dir/b c.txt", "hello dump");
  f.add("dir/empty", "");
  f.add("z/y/x.json", "{\"k\": 1}");

  auto dump = detail::build_resource_dump(f.target, f.snapshot, DumpOptions{});
  REQUIRE(dump);
  REQUIRE(dump->packages.size() == 1);
  CHECK(dump->at_ns == f.snapshot.info.last_datetime_ns);
  CHECK(dump->completed_ns > 0);
  CHECK(dump->packages[0].zip.name == dump->stem + "-00001.zip");
  CHECK(dump->packages[0].manifest.name == dump->stem + "-00001-manifest.xml");
  const auto paths =
      check_package(f.dumps, dump->packages[0], f.data, Capability::resourcedump_manifest);
  CHECK(paths == std::set<std::string>{"/a.bin", "/dir/b c.txt", "/dir/empty", "/z/y/x.json"});

  // The manifest's `at` is the snapshot's; the Resource List at that `at` is kept beside it.
  const Document manifest = parse_valid(read_file(f.dumps / dump->packages[0].manifest.name));
  CHECK(manifest.header.md.at == Timestamp::from_unix(1'800'000'000, 123'456'789));
  REQUIRE(dump->resource_list);
  const Document list = parse_valid(read_file(f.dumps / dump->resource_list->name));
  CHECK(list.header.capability() == Capability::resourcelist);
  CHECK(list.header.md.at == manifest.header.md.at);
  CHECK(list.entries.size() == 4);
  // The same snapshot packs to the same bytes (a restart keeps URLs and ETags valid).
  const std::string first_zip = read_file(f.dumps / dump->packages[0].zip.name);
  auto again = detail::build_resource_dump(f.target, f.snapshot, DumpOptions{});
  REQUIRE(again);
  CHECK(again->packages[0].zip.sha256 == dump->packages[0].zip.sha256);
  CHECK(read_file(f.dumps / again->packages[0].zip.name) == first_zip);
  // Nothing temporary is left.
  for (const auto& e : fs::directory_iterator(f.dumps)) {
    CHECK_FALSE(e.path().filename().string().starts_with(".tmp"));
  }
}

TEST_CASE("a package size bound splits a dump into several packages", "[server][dump]") {
  DumpFixture f;
  for (int i = 0; i < 6; ++i) f.add("f" + std::to_string(i), std::string(10'000, char('a' + i)));
  DumpOptions options;
  options.package_size = 25'000;
  auto dump = detail::build_resource_dump(f.target, f.snapshot, options);
  REQUIRE(dump);
  CHECK(dump->packages.size() == 3);
  std::multiset<std::string> all;
  for (const DumpPackage& p : dump->packages) {
    CHECK(p.zip.length <= options.package_size);
    for (const std::string& path :
         check_package(f.dumps, p, f.data, Capability::resourcedump_manifest)) {
      all.insert(path);
    }
  }
  CHECK(all == std::multiset<std::string>{"/f0", "/f1", "/f2", "/f3", "/f4", "/f5"});

  SECTION("a file larger than the bound goes alone") {
    f.add("huge", std::string(60'000, 'h'));
    auto again = detail::build_resource_dump(f.target, f.snapshot, options);
    REQUIRE(again);
    const auto last =
        check_package(f.dumps, again->packages.back(), f.data, Capability::resourcedump_manifest);
    CHECK(last == std::set<std::string>{"/huge"});
  }
}

TEST_CASE("a file changed during packing abandons the dump and leaves nothing behind",
          "[server][dump]") {
  DumpFixture f;
  f.add("a", "first file");
  f.add("b", "second file");
  f.add("c", "third file!");
  detail::PackHook hook;

  SECTION("same length and mtime, other bytes: only the hash can tell") {
    hook = [&](const detail::PackItem& item) {
      if (item.expected.path == "b") {
        write_file(f.data / "b", "SECOND FILE");
        const std::int64_t ns = item.expected.mtime_ns;
        const timespec times[2] = {{ns / 1'000'000'000, ns % 1'000'000'000},
                                   {ns / 1'000'000'000, ns % 1'000'000'000}};
        REQUIRE(::utimensat(AT_FDCWD, (f.data / "b").c_str(), times, 0) == 0);
      }
      return true;
    };
  }
  SECTION("rewritten between the snapshot and packing") {
    write_file(f.data / "c", "third file, longer now");
  }
  SECTION("removed between the snapshot and packing") { fs::remove(f.data / "a"); }

  DumpOptions options;
  options.package_size = 2000;  // a package per file: the ones already written must go too
  auto dump = detail::build_resource_dump(f.target, f.snapshot, options, hook);
  REQUIRE_FALSE(dump);
  CHECK(dump.error().code == make_error_code(errc::changed_while_read));
  CHECK(f.files_in_dumps() == 0);
}

TEST_CASE("a package of more than 65,535 entries is ZIP64 and lists every entry",
          "[server][dump]") {
  // One small file packed under 70,000 names: creating 70,000 files takes half a minute on
  // this disk, and the packer reads each entry from its own open() anyway.
  DumpFixture f;
  const ResourceState tiny = put(f.data, "tiny", "0123456789");
  constexpr int kEntries = 70'000;
  std::vector<detail::PackItem> items;
  items.reserve(kEntries);
  for (int i = 0; i < kEntries; ++i) {
    items.push_back(
        {"d" + std::to_string(i / 1000) + "/" + std::to_string(i), f.data.string(), tiny});
  }
  int opened = 0;
  auto package = detail::write_package(f.dumps.string(), "big.zip", "<manifest/>", 0, items,
                                       [&](const detail::PackItem&) { return ++opened > 0; });
  REQUIRE(package);
  CHECK(opened == kEntries);

  int error = 0;
  zip_t* zip = zip_open((f.dumps / "big.zip").c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &error);
  REQUIRE(zip != nullptr);
  CHECK(zip_get_num_entries(zip, 0) == kEntries + 1);
  CHECK(std::string(zip_get_name(zip, 0, 0)) == "manifest.xml");
  const zip_int64_t last = zip_name_locate(zip, "d69/69999", 0);
  CHECK(last == kEntries);
  zip_file_t* file = zip_fopen_index(zip, static_cast<zip_uint64_t>(last), 0);
  REQUIRE(file != nullptr);
  char buffer[16] = {};
  CHECK(zip_fread(file, buffer, sizeof buffer) == 10);
  CHECK(std::string(buffer) == "0123456789");
  zip_fclose(file);
  zip_stat_t st;
  REQUIRE(zip_stat_index(zip, static_cast<zip_uint64_t>(last), 0, &st) == 0);
  CHECK(st.comp_method == ZIP_CM_STORE);
  zip_discard(zip);
  // The ZIP64 end of central directory record (PK\6\6) is there.
  CHECK(read_file(f.dumps / "big.zip").find(std::string("PK\x06\x06", 4)) != std::string::npos);
}

TEST_CASE("a package holds at most package_entries files", "[server][dump]") {
  DumpFixture f;
  for (int i = 0; i < 5; ++i) f.add("f" + std::to_string(i), "x");
  DumpOptions options;
  options.package_entries = 2;
  auto dump = detail::build_resource_dump(f.target, f.snapshot, options);
  REQUIRE(dump);
  REQUIRE(dump->packages.size() == 3);
  CHECK(check_package(f.dumps, dump->packages[2], f.data, Capability::resourcedump_manifest) ==
        std::set<std::string>{"/f4"});
}

namespace {

struct BuilderFixture {
  TempDir dir;
  fs::path data = dir / "data";
  fs::path state = dir / "state";
  std::unique_ptr<ChangeLog> log;
  std::unique_ptr<detail::DumpBuilder> builder;
  int published = 0;

  detail::PackHook hook;  // settable before each run_once()

  std::uint64_t list_entries;
  std::chrono::milliseconds delay;

  explicit BuilderFixture(std::uint64_t list_entries_,
                          std::chrono::milliseconds delay_ = std::chrono::seconds(10))
      : list_entries(list_entries_), delay(delay_) {
    fs::create_directories(data);
    auto opened = ChangeLog::open(state.string());
    REQUIRE(opened);
    log = std::move(*opened);
    REQUIRE(log->ensure_collection("c"));
    open_builder();
  }
  // A server restart, as far as dumps go.
  void open_builder() {
    builder.reset();
    detail::DumpBuilderOptions o;
    o.dumps.enabled = true;
    o.state_dir = state.string();
    o.collections = {{"c", data.string()}};
    o.base_url = kBase;
    o.list_entries = list_entries;
    o.dumps.delay = delay;
    o.on_publish = [this] { ++published; };
    o.hook = [this](const detail::PackItem& item) { return !hook || hook(item); };
    auto b = detail::DumpBuilder::open(std::move(o));
    REQUIRE(b);
    builder = std::move(*b);
  }
  fs::path dump_dir() const { return state / "dumps" / "c"; }
  void change(const std::string& path, const std::string& bytes) {
    REQUIRE(log->record("c", ChangeType::created, put(data, path, bytes)));
  }
  void remove(const std::string& path) {
    fs::remove(data / path);
    ResourceState s;
    s.path = path;
    REQUIRE(log->record("c", ChangeType::deleted, s));
  }
  const CollectionDumps& dumps() const { return *builder->catalog()->at("c"); }
};

}  // namespace

TEST_CASE("change dumps pack each closed change list; a list with stale bytes gets none",
          "[server][dump]") {
  BuilderFixture f(3);
  f.change("a", "a1");
  f.change("b", "b1");
  f.remove("b");  // list 1 closes: a created, b created (bytes gone), b deleted
  f.change("c", "c1");
  f.change("a", "a2");
  f.change("d", "d1");  // list 2 closes: c created, a updated, d created
  f.change("e", "e1");
  REQUIRE(f.builder->run_once(true));

  // List 1 holds b's first bytes, which are gone: it cannot be packed truthfully.
  const CollectionDumps& dumps = f.dumps();
  REQUIRE(dumps.change_dumps.size() == 1);
  const ChangeDump& cd = dumps.change_dumps[0];
  CHECK(cd.list == 2);
  CHECK(cd.from_ns < cd.until_ns);
  const fs::path dir = dumps.directory;
  const auto paths = check_package(dir, cd.package, f.data, Capability::changedump_manifest);
  CHECK(paths == std::set<std::string>{"/changes/4/c", "/changes/5/a", "/changes/6/d"});
  const Document manifest = parse_valid(read_file(dir / cd.package.manifest.name));
  CHECK(manifest.header.md.from ==
        Timestamp::from_unix(cd.from_ns / 1'000'000'000,
                             static_cast<std::uint32_t>(cd.from_ns % 1'000'000'000)));
  REQUIRE(manifest.header.md.until);
  REQUIRE(manifest.entries.size() == 3);
  CHECK(manifest.entries[1].md->change == ChangeType::updated);
  CHECK(manifest.entries[1].loc == std::string(kBase) + "c/a");
  CHECK(read_zip(dir / cd.package.zip.name)[2].bytes == "a2");
  // A resource dump was built too, and published once.
  CHECK(dumps.resource_dumps.size() == 1);
  CHECK(f.published == 1);

  SECTION("the next list is packed when it closes; deletes have no bitstream") {
    f.remove("c");
    f.remove("d");  // list 3 closes: e created, c deleted, d deleted
    REQUIRE(f.builder->run_once(true));
    REQUIRE(f.dumps().change_dumps.size() == 2);
    const auto more = check_package(dir, f.dumps().change_dumps[1].package, f.data,
                                    Capability::changedump_manifest);
    CHECK(more == std::set<std::string>{"/changes/7/e"});
  }
}

TEST_CASE("a new resource dump replaces the old one once the site serves it", "[server][dump]") {
  BuilderFixture f(100);
  f.change("a", "one");
  REQUIRE(f.builder->run_once(true));
  const ResourceDump first = f.dumps().resource_dumps.at(0);
  const fs::path dir = f.dumps().directory;
  CHECK(fs::exists(dir / first.packages[0].zip.name));

  SECTION("nothing new: no new dump") {
    auto again = f.builder->run_once(true);
    REQUIRE(again);
    CHECK_FALSE(*again);
  }
  SECTION("a change: the old files go after the new dump is published") {
    f.change("b", "two");
    REQUIRE(f.builder->run_once(true));
    REQUIRE(f.dumps().resource_dumps.size() == 1);
    CHECK(f.dumps().resource_dumps[0].at_ns > first.at_ns);
    CHECK_FALSE(fs::exists(dir / first.packages[0].zip.name));
    CHECK_FALSE(fs::exists(dir / first.packages[0].manifest.name));
    CHECK(f.published == 2);
  }
  SECTION("the quiet period holds a dump back") {
    f.change("b", "two");
    auto held = f.builder->run_once(false);  // the default delay is 10 s
    REQUIRE(held);
    CHECK_FALSE(*held);
  }
}

TEST_CASE("a dump abandoned for a changed file publishes nothing and is retried later",
          "[server][dump]") {
  BuilderFixture f(100, std::chrono::milliseconds(200));
  f.change("a", "one");
  f.change("b", "two");
  const ResourceState logged = *f.log->resource("c", "b").value();
  // The file changes while it is packed, behind the log's back (same size and mtime).
  const auto rewrite = [&](const std::string& bytes) {
    write_file(f.data / "b", bytes);
    const timespec times[2] = {{logged.mtime_ns / 1'000'000'000, logged.mtime_ns % 1'000'000'000},
                               {logged.mtime_ns / 1'000'000'000, logged.mtime_ns % 1'000'000'000}};
    REQUIRE(::utimensat(AT_FDCWD, (f.data / "b").c_str(), times, 0) == 0);
  };
  f.hook = [&](const detail::PackItem& item) {
    if (item.expected.path == "b") rewrite("TWO");
    return true;
  };
  auto first = f.builder->run_once(true);
  REQUIRE(first);
  CHECK_FALSE(*first);
  CHECK(f.dumps().resource_dumps.empty());
  CHECK(f.published == 0);
  CHECK(std::distance(fs::directory_iterator(f.dumps().directory), {}) == 0);

  // Back as logged: the next try, once the delay has passed, succeeds.
  f.hook = {};
  rewrite("two");
  auto early = f.builder->run_once(true);
  REQUIRE(early);
  CHECK_FALSE(*early);  // not before the delay
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  auto retried = f.builder->run_once(true);
  REQUIRE(retried);
  CHECK(*retried);
  REQUIRE(f.dumps().resource_dumps.size() == 1);
  check_package(f.dumps().directory, f.dumps().resource_dumps[0].packages[0], f.data,
                Capability::resourcedump_manifest);
}

TEST_CASE("dumps survive a restart; leftovers and damaged dumps do not", "[server][dump]") {
  BuilderFixture f(2);
  f.change("a", "one");
  f.change("b", "two");
  f.change("c", "three");  // list 1 is closed
  REQUIRE(f.builder->run_once(true));
  const CollectionDumps before = f.dumps();
  REQUIRE(before.resource_dumps.size() == 1);
  REQUIRE(before.change_dumps.size() == 1);
  const std::string zip = before.resource_dumps[0].packages[0].zip.name;
  write_file(f.dump_dir() / ".tmp-x.zip", "half written");
  write_file(f.dump_dir() / "orphan.zip", "from a dump never saved");

  SECTION("served again as they were, nothing repacked") {
    // List 1 could not be packed again now: a's bytes are no longer the logged ones.
    write_file(f.data / "a", "ONE");
    f.open_builder();
    const CollectionDumps& after = f.dumps();
    REQUIRE(after.resource_dumps.size() == 1);
    CHECK(after.resource_dumps[0].stem == before.resource_dumps[0].stem);
    CHECK(after.resource_dumps[0].packages[0].zip.sha256 ==
          before.resource_dumps[0].packages[0].zip.sha256);
    REQUIRE(after.change_dumps.size() == 1);
    CHECK(after.change_dumps[0].list == 1);
    CHECK_FALSE(fs::exists(f.dump_dir() / ".tmp-x.zip"));
    CHECK_FALSE(fs::exists(f.dump_dir() / "orphan.zip"));
    auto again = f.builder->run_once(true);
    REQUIRE(again);
    CHECK_FALSE(*again);
  }
  SECTION("a package gone: that dump is dropped and built again") {
    fs::remove(f.dump_dir() / zip);
    fs::remove(f.dump_dir() / before.change_dumps[0].package.manifest.name);
    f.open_builder();
    CHECK(f.dumps().resource_dumps.empty());
    CHECK(f.dumps().change_dumps.empty());
    CHECK_FALSE(fs::exists(f.dump_dir() / before.change_dumps[0].package.zip.name));
    REQUIRE(f.builder->run_once(true));
    CHECK(f.dumps().resource_dumps.size() == 1);
    CHECK(f.dumps().change_dumps.size() == 1);  // its files still hold the logged bytes
  }
  SECTION("an unreadable catalog is set aside and dumps are built afresh") {
    write_file(f.dump_dir() / "catalog.json", "{not json");
    f.open_builder();
    CHECK(f.dumps().resource_dumps.empty());
    CHECK(f.dumps().change_dumps.empty());
    CHECK(fs::exists(f.dump_dir() / "catalog.json.bad"));
    CHECK_FALSE(fs::exists(f.dump_dir() / zip));
    REQUIRE(f.builder->run_once(true));
    CHECK(f.dumps().resource_dumps.size() == 1);
    CHECK(f.dumps().change_dumps.size() == 1);
  }
}

TEST_CASE("the site publishes dumps and archives that validate", "[server][dump]") {
  BuilderFixture f(2);
  f.change("a", "one");
  f.change("b", "two");
  f.change("c", "three");  // list 1 is closed
  REQUIRE(f.builder->run_once(true));

  SiteOptions options;
  options.base_url = kBase;
  options.collections = {{"c", f.data.string()}};
  options.list_entries = 2;
  options.archives = true;
  options.dumps = f.builder->catalog();
  auto site = build_site(*f.log, options);
  REQUIRE(site);
  const Site& s = **site;
  const auto doc = [&](const std::string& name) {
    const auto it = s.documents.find("/c/.resourcesync/" + name);
    REQUIRE(it != s.documents.end());
    return parse_valid(it->second->body);
  };
  const Document caps = [&] {
    const auto it = s.documents.find("/c/capabilitylist.xml");
    REQUIRE(it != s.documents.end());
    return parse_valid(it->second->body);
  }();
  std::set<std::string> advertised;
  for (const Entry& e : caps.entries) advertised.insert(e.md->capability);
  CHECK(advertised == std::set<std::string>{"resourcelist", "changelist", "resourcedump",
                                            "changedump", "resourcelist-archive",
                                            "resourcedump-archive", "changelist-archive"});

  const Document rd = doc("resourcedump.xml");
  CHECK(rd.header.capability() == Capability::resourcedump);
  CHECK(rd.header.md.completed);
  REQUIRE(rd.header.find_link("archives"));
  REQUIRE(rd.entries.size() == 1);
  const Entry& package = rd.entries[0];
  CHECK(package.md->type == "application/zip");
  const Link* contents = package.find_link("contents");
  REQUIRE(contents);
  CHECK(contents->type == "application/xml");
  // The package and the manifest copy are served as files from the dump directory.
  const std::string prefix = std::string(kBase);
  const auto zip = s.resources.find(package.loc.substr(prefix.size()));
  REQUIRE(zip != s.resources.end());
  CHECK(zip->second.state.length == package.md->length);
  CHECK(zip->second.root == f.dumps().directory);
  REQUIRE(s.resources.contains(contents->href.substr(prefix.size())));

  const Document cd = doc("changedump.xml");
  CHECK(cd.header.capability() == Capability::changedump);
  REQUIRE(cd.entries.size() == 1);
  CHECK(cd.entries[0].md->from);
  CHECK(cd.entries[0].md->until);

  const Document cla = doc("changelist-archive.xml");
  CHECK(cla.header.capability() == Capability::changelist_archive);
  REQUIRE(cla.entries.size() == 1);
  CHECK(cla.entries[0].loc == prefix + "c/.resourcesync/changelist-00001.xml");
  const Document rda = doc("resourcedump-archive.xml");
  REQUIRE(rda.entries.size() == 1);
  CHECK(rda.entries[0].md->at == rd.header.md.at);
  CHECK(s.documents.contains("/c/.resourcesync/dump/" +
                             rda.entries[0].loc.substr(rda.entries[0].loc.rfind('/') + 1)));
  const Document rla = doc("resourcelist-archive.xml");
  REQUIRE(rla.entries.size() == 1);
  CHECK(rla.entries[0].md->at == rd.header.md.at);

  const Document rl = doc("resourcelist.xml");
  REQUIRE(rl.header.find_link("archives"));
  CHECK(rl.header.find_link("archives")->href ==
        prefix + "c/.resourcesync/resourcelist-archive.xml");
  const Document cl = doc("changelist.xml");
  REQUIRE(cl.header.find_link("archives"));

  SECTION("a rebuild with the same catalog reuses everything; a new dump rebuilds") {
    auto same = build_site(*f.log, options, &s);
    REQUIRE(same);
    CHECK((*same)->documents.at("/c/capabilitylist.xml") ==
          s.documents.at("/c/capabilitylist.xml"));
    f.change("d", "four");
    REQUIRE(f.builder->run_once(true));
    options.dumps = f.builder->catalog();
    auto next = build_site(*f.log, options, &s);
    REQUIRE(next);
    CHECK((*next)->documents.at("/c/.resourcesync/resourcedump.xml") !=
          s.documents.at("/c/.resourcesync/resourcedump.xml"));
  }
}
