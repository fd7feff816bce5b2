#include "shardsync/sitemap/split_writer.hpp"

#include <catch2/catch.hpp>
#include <filesystem>

#include "shardsync/sitemap/parser.hpp"
#include "shardsync/sitemap/validator.hpp"
#include "test_paths.hpp"

using namespace shardsync::sitemap;
namespace fs = std::filesystem;

namespace {

constexpr const char* kBase = "http://example.com/lists/";
constexpr const char* kCapabilityList = "http://example.com/lists/capabilitylist.xml";

Entry resource(int i) {
  Entry e;
  e.loc = "http://example.com/data/file-" + std::to_string(i) + ".bin";
  e.lastmod = Timestamp::from_unix(1'700'000'000 + i);
  e.md.emplace();
  e.md->length = static_cast<std::uint64_t>(i);
  e.md->hash.set(HashAlgorithm::sha256, std::string(64, 'a'));
  return e;
}

void expect_valid(const std::string& path) {
  auto doc = parse_file(path);
  REQUIRE(doc);
  for (const Finding& f : validate(*doc)) FAIL(path + ": " + f.format());
}

std::size_t count_files(const fs::path& dir) {
  return static_cast<std::size_t>(
      std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

}  // namespace

TEST_CASE("a list that fits is one document", "[sitemap][split]") {
  shardsync::test::TempDir dir;
  SplitWriter writer({dir.path().string(), "resourcelist", kBase, 10, 52'428'800});
  REQUIRE(writer.begin(make_snapshot_header(Capability::resourcelist,
                                            Timestamp::from_unix(1'700'000'000), kCapabilityList)));
  for (int i = 0; i < 10; ++i) REQUIRE(writer.add(resource(i)));
  auto result = writer.finish();
  REQUIRE(result);
  CHECK_FALSE(result->indexed);
  CHECK(result->entries == 10);
  CHECK(count_files(dir.path()) == 1);
  expect_valid(result->document_path);
  auto doc = parse_file(result->document_path);
  CHECK(doc->header.find_link("index") == nullptr);
  CHECK(doc->entries.size() == 10);
}

TEST_CASE("a long resource list becomes an index plus linked parts", "[sitemap][split]") {
  shardsync::test::TempDir dir;
  // An earlier, longer list left more parts behind.
  shardsync::test::write_file(dir / "resourcelist-00004.xml", "stale");
  shardsync::test::write_file(dir / "resourcelist-00005.xml", "stale");

  SplitWriter writer({dir.path().string(), "resourcelist", kBase, 10, 52'428'800});
  const Timestamp snapshot = Timestamp::from_unix(1'700'000'000, 5);
  REQUIRE(writer.begin(make_snapshot_header(Capability::resourcelist, snapshot, kCapabilityList)));
  for (int i = 0; i < 25; ++i) REQUIRE(writer.add(resource(i)));
  auto result = writer.finish();
  REQUIRE(result);
  CHECK(result->indexed);
  REQUIRE(result->parts.size() == 3);
  CHECK(count_files(dir.path()) == 4);
  CHECK_FALSE(fs::exists(dir / "resourcelist-00004.xml"));

  auto index = parse_file(result->document_path);
  REQUIRE(index);
  CHECK(index->type() == DocumentType::resource_list_index);
  CHECK(index->header.md.at == snapshot);
  CHECK(index->header.find_link("up")->href == kCapabilityList);
  REQUIRE(index->entries.size() == 3);
  expect_valid(result->document_path);

  int seen = 0;
  for (std::size_t p = 0; p < 3; ++p) {
    CHECK(index->entries[p].loc ==
          std::string(kBase) + "resourcelist-0000" + std::to_string(p + 1) + ".xml");
    CHECK(index->entries[p].md->at == snapshot);
    expect_valid(result->parts[p]);
    auto part = parse_file(result->parts[p]);
    REQUIRE(part);
    CHECK(part->header.md.at == snapshot);
    REQUIRE(part->header.find_link("index"));
    CHECK(part->header.find_link("index")->href == std::string(kBase) + "resourcelist.xml");
    CHECK(part->header.find_link("up")->href == kCapabilityList);
    for (const Entry& e : part->entries) CHECK(e == resource(seen++));
  }
  CHECK(seen == 25);
}

TEST_CASE("a long change list is split into closed parts and an open one", "[sitemap][split]") {
  shardsync::test::TempDir dir;
  SplitWriter writer({dir.path().string(), "changelist", kBase, 4, 52'428'800});
  const Timestamp from = Timestamp::from_unix(1'600'000'000);
  REQUIRE(writer.begin(
      make_change_header(Capability::changelist, from, std::nullopt, kCapabilityList)));
  for (int i = 0; i < 10; ++i) {
    Entry e = resource(i / 2);  // two changes share each datetime
    e.md->change = ChangeType::updated;
    e.md->datetime = Timestamp::from_unix(1'600'000'100 + i / 2);
    REQUIRE(writer.add(e));
  }
  auto result = writer.finish();
  REQUIRE(result);
  REQUIRE(result->parts.size() == 3);
  auto index = parse_file(result->document_path);
  REQUIRE(index);
  CHECK(index->type() == DocumentType::change_list_index);
  CHECK_FALSE(index->header.md.until);
  expect_valid(result->document_path);

  std::optional<Timestamp> previous_until = from;
  for (std::size_t p = 0; p < 3; ++p) {
    expect_valid(result->parts[p]);
    auto part = parse_file(result->parts[p]);
    REQUIRE(part);
    CHECK(part->header.md.from == previous_until);
    CHECK(index->entries[p].md->from == part->header.md.from);
    CHECK(index->entries[p].md->until == part->header.md.until);
    if (p < 2) {
      REQUIRE(part->header.md.until);
      CHECK(*part->header.md.until == *part->entries.back().md->datetime);
    } else {
      CHECK_FALSE(part->header.md.until);  // the last part stays open
    }
    previous_until = part->header.md.until;
  }

  SECTION("entries going back in time are refused") {
    shardsync::test::TempDir other;
    SplitWriter w({other.path().string(), "changelist", kBase, 4, 52'428'800});
    REQUIRE(
        w.begin(make_change_header(Capability::changelist, from, std::nullopt, kCapabilityList)));
    Entry e = resource(1);
    e.md->change = ChangeType::created;
    e.md->datetime = Timestamp::from_unix(1'600'000'200);
    REQUIRE(w.add(e));
    e.md->datetime = Timestamp::from_unix(1'600'000'100);
    CHECK_FALSE(w.add(e));
    CHECK_FALSE(w.finish());
  }
}

TEST_CASE("parts are split by size as well as by count", "[sitemap][split]") {
  shardsync::test::TempDir dir;
  SplitWriter writer({dir.path().string(), "resourcelist", kBase, 50'000, 4096});
  REQUIRE(writer.begin(
      make_snapshot_header(Capability::resourcelist, Timestamp::from_unix(1), kCapabilityList)));
  for (int i = 0; i < 100; ++i) REQUIRE(writer.add(resource(i)));
  auto result = writer.finish();
  REQUIRE(result);
  REQUIRE(result->indexed);
  for (const std::string& part : result->parts) {
    CHECK(fs::file_size(part) <= 4096);
    expect_valid(part);
  }
}

TEST_CASE("nothing is published when the writer fails or is abandoned", "[sitemap][split]") {
  shardsync::test::TempDir dir;
  {
    SplitWriter writer({dir.path().string(), "resourcelist", kBase, 3, 52'428'800});
    REQUIRE(writer.begin(
        make_snapshot_header(Capability::resourcelist, Timestamp::from_unix(1), kCapabilityList)));
    for (int i = 0; i < 10; ++i) REQUIRE(writer.add(resource(i)));
  }
  CHECK(count_files(dir.path()) == 0);

  SplitWriter no_base({dir.path().string(), "resourcelist", "http://example.com/no-slash", 3, 1});
  CHECK_FALSE(
      no_base.begin(make_snapshot_header(Capability::resourcelist, Timestamp::from_unix(1), "")));
}
