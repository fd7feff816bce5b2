#include "shardsync/server/site.hpp"

#include <zlib.h>

#include <catch2/catch.hpp>

#include "shardsync/sitemap/parser.hpp"
#include "shardsync/sitemap/validator.hpp"
#include "test_paths.hpp"

using namespace shardsync::server;
using namespace shardsync::sitemap;

namespace {

constexpr const char* kBase = "http://127.0.0.1:8080/";

ResourceState state(const std::string& path, int version) {
  ResourceState s;
  s.path = path;
  s.length = static_cast<std::uint64_t>(100 + version);
  s.sha256 = std::string(63, 'a') + std::to_string(version % 10);
  s.md5 = std::string(31, 'b') + std::to_string(version % 10);
  s.mtime_ns = 1'700'000'000'000'000'000 + version;
  s.type = "application/octet-stream";
  return s;
}

struct Fixture {
  shardsync::test::TempDir dir;
  std::unique_ptr<ChangeLog> log;
  SiteOptions options;

  Fixture() {
    auto opened = ChangeLog::open(dir.path().string());
    REQUIRE(opened);
    log = std::move(*opened);
    REQUIRE(log->ensure_collection("ckpt"));
    options.base_url = kBase;
    options.collections = {{"ckpt", (dir / "data").string()}};
  }

  void record(ChangeType change, const std::string& path, int version) {
    auto r = log->record("ckpt", change, state(path, version));
    REQUIRE(r);
  }

  std::shared_ptr<const Site> build(const Site* previous = nullptr) {
    auto site = build_site(*log, options, previous);
    REQUIRE(site);
    return *site;
  }
};

Document parse(const Site& site, const std::string& key) {
  const auto it = site.documents.find(key);
  REQUIRE(it != site.documents.end());
  auto doc = parse_document(it->second->body);
  REQUIRE(doc);
  for (const Finding& f : validate(*doc)) {
    if (f.severity == Severity::error) FAIL(key + ": " + f.format());
  }
  return *doc;
}

std::string gunzip(const std::string& data) {
  z_stream z{};
  inflateInit2(&z, 16 + MAX_WBITS);
  std::string out(data.size() * 50 + 1024, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  inflate(&z, Z_FINISH);
  out.resize(z.total_out);
  inflateEnd(&z);
  return out;
}

}  // namespace

TEST_CASE("a site describes each collection with linked, valid documents", "[server][site]") {
  Fixture f;
  f.record(ChangeType::created, "step-1/model-00001.safetensors", 1);
  f.record(ChangeType::created, "step-1/config with space.json", 2);
  f.record(ChangeType::updated, "step-1/model-00001.safetensors", 3);
  f.record(ChangeType::deleted, "step-1/config with space.json", 0);
  const auto site = f.build();

  const Document sd = parse(*site, "/.well-known/resourcesync");
  CHECK(sd.type() == DocumentType::source_description);
  REQUIRE(sd.entries.size() == 1);
  CHECK(sd.entries[0].loc == std::string(kBase) + "ckpt/capabilitylist.xml");

  const Document cl = parse(*site, "/ckpt/capabilitylist.xml");
  CHECK(cl.type() == DocumentType::capability_list);
  CHECK(cl.header.find_link("up")->href == std::string(kBase) + ".well-known/resourcesync");
  REQUIRE(cl.entries.size() == 2);
  CHECK(cl.entries[0].loc == std::string(kBase) + "ckpt/.resourcesync/resourcelist.xml");
  CHECK(cl.entries[1].loc == std::string(kBase) + "ckpt/.resourcesync/changelist.xml");

  const Document rl = parse(*site, "/ckpt/.resourcesync/resourcelist.xml");
  CHECK(rl.type() == DocumentType::resource_list);
  REQUIRE(rl.entries.size() == 1);
  const Entry& e = rl.entries[0];
  CHECK(e.loc == std::string(kBase) + "ckpt/step-1/model-00001.safetensors");
  CHECK(e.md->length == 103u);
  CHECK(e.md->hash.get(HashAlgorithm::sha256) == state("", 3).sha256);
  CHECK(e.md->hash.get(HashAlgorithm::md5) == state("", 3).md5);
  CHECK(e.lastmod);

  // One list so far: changelist.xml is that list itself (no index yet).
  CHECK(site->documents.at("/ckpt/.resourcesync/changelist.xml") ==
        site->documents.at("/ckpt/.resourcesync/changelist-00001.xml"));
  const Document changes = parse(*site, "/ckpt/.resourcesync/changelist-00001.xml");
  CHECK_FALSE(changes.header.find_link("index"));
  CHECK(changes.type() == DocumentType::change_list);
  CHECK_FALSE(changes.header.md.until);  // the open list
  REQUIRE(changes.entries.size() == 4);
  CHECK(changes.entries[1].loc == std::string(kBase) + "ckpt/step-1/config%20with%20space.json");
  CHECK(changes.entries[3].md->change == ChangeType::deleted);
  CHECK_FALSE(changes.entries[3].lastmod);
  for (const Entry& c : changes.entries) {
    CHECK(c.md->datetime);
    if (c.md->change != ChangeType::deleted) CHECK((c.md->length && !c.md->hash.empty()));
  }
  // The Resource List's `at` covers every change.
  CHECK(*rl.header.md.at == *changes.entries.back().md->datetime);

  REQUIRE(site->resources.count("ckpt/step-1/model-00001.safetensors") == 1);
  CHECK(site->resources.count("ckpt/step-1/config with space.json") == 0);
  const ServedResource& r = site->resources.at("ckpt/step-1/model-00001.safetensors");
  CHECK(r.etag == "\"" + state("", 3).sha256 + "\"");
  CHECK(r.absolute_path == (f.dir / "data").string() + "/step-1/model-00001.safetensors");

  const auto& doc = site->documents.at("/ckpt/.resourcesync/resourcelist.xml");
  CHECK(gunzip(doc->gzip) == doc->body);
  CHECK_FALSE(doc->zstd.empty());
  CHECK(doc->etag.size() == 34);
}

TEST_CASE("long histories become closed change lists under an index", "[server][site]") {
  Fixture f;
  f.options.list_entries = 3;
  for (int i = 0; i < 7; ++i) f.record(ChangeType::created, "f" + std::to_string(i), i);
  const auto site = f.build();

  const Document rl_index = parse(*site, "/ckpt/.resourcesync/resourcelist.xml");
  CHECK(rl_index.type() == DocumentType::resource_list_index);
  REQUIRE(rl_index.entries.size() == 3);
  const Document part = parse(*site, "/ckpt/.resourcesync/resourcelist-00003.xml");
  CHECK(part.entries.size() == 1);
  CHECK(part.header.find_link("index"));

  const Document index = parse(*site, "/ckpt/.resourcesync/changelist.xml");
  REQUIRE(index.entries.size() == 3);
  std::optional<Timestamp> previous_until;
  for (int k = 1; k <= 3; ++k) {
    const Document list =
        parse(*site, "/ckpt/.resourcesync/changelist-0000" + std::to_string(k) + ".xml");
    const Entry& in_index = index.entries[static_cast<std::size_t>(k - 1)];
    CHECK(in_index.md->from == list.header.md.from);
    CHECK(in_index.md->until == list.header.md.until);
    if (previous_until) CHECK(*list.header.md.from == *previous_until);
    if (k < 3) {
      REQUIRE(list.header.md.until);
      CHECK(list.entries.size() == 3);
      CHECK(*list.header.md.until == *list.entries.back().md->datetime);
      CHECK(site->documents.at("/ckpt/.resourcesync/changelist-0000" + std::to_string(k) + ".xml")
                ->immutable);
    } else {
      CHECK_FALSE(list.header.md.until);
      CHECK(list.entries.size() == 1);
    }
    previous_until = list.header.md.until;
  }

  SECTION("a rebuild reuses closed lists and untouched collections") {
    const auto same = f.build(site.get());
    CHECK(same->documents.at("/ckpt/.resourcesync/resourcelist.xml") ==
          site->documents.at("/ckpt/.resourcesync/resourcelist.xml"));
    f.record(ChangeType::updated, "f1", 11);
    const auto next = f.build(site.get());
    CHECK(next->documents.at("/ckpt/.resourcesync/changelist-00001.xml") ==
          site->documents.at("/ckpt/.resourcesync/changelist-00001.xml"));
    CHECK(next->documents.at("/ckpt/.resourcesync/changelist-00003.xml") !=
          site->documents.at("/ckpt/.resourcesync/changelist-00003.xml"));
    const Document open = parse(*next, "/ckpt/.resourcesync/changelist-00003.xml");
    CHECK(open.entries.size() == 2);
  }

  SECTION("pruned history moves the index's from forward") {
    REQUIRE(f.log->prune("ckpt", std::numeric_limits<std::int64_t>::max(), 3));
    const auto pruned = f.build(site.get());
    // Only the open list is left: changelist.xml is that list, and its `from` is the earliest
    // point a destination can resume from.
    const Document only = parse(*pruned, "/ckpt/.resourcesync/changelist.xml");
    CHECK(only.type() == DocumentType::change_list);
    CHECK(only.entries.size() == 1);
    CHECK(*only.header.md.from == *index.entries[2].md->from);
    CHECK(pruned->documents.count("/ckpt/.resourcesync/changelist-00001.xml") == 0);
  }
}

TEST_CASE("a bad base URL is a configuration error", "[server][site]") {
  Fixture f;
  f.options.base_url = "http://127.0.0.1:8080";
  CHECK_FALSE(build_site(*f.log, f.options));
}
