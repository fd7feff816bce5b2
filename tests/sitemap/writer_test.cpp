#include "shardsync/sitemap/writer.hpp"

#include <catch2/catch.hpp>
#include <filesystem>

#include "shardsync/sitemap/parser.hpp"
#include "shardsync/sitemap/validator.hpp"
#include "test_paths.hpp"

using namespace shardsync::sitemap;

namespace {

Timestamp at(const char* text) { return *parse_w3c_datetime(text); }

Document sample_change_list() {
  Document doc{make_change_header(Capability::changelist, at("2013-01-03T00:00:00Z"), std::nullopt,
                                  "http://example.com/dataset1/capabilitylist.xml"),
               {}};
  const char* times[] = {"2013-01-03T11:00:00Z", "2013-01-03T13:00:00.5Z",
                         "2013-01-03T13:00:00.5Z"};
  const ChangeType changes[] = {ChangeType::created, ChangeType::updated, ChangeType::deleted};
  for (int i = 0; i < 3; ++i) {
    Entry e;
    e.loc = "http://example.com/res" + std::to_string(i) + "?q=a&b=<c>\"d\"";
    e.md.emplace();
    e.md->change = changes[i];
    e.md->datetime = at(times[i]);
    if (changes[i] != ChangeType::deleted) {
      e.lastmod = at(times[i]);
      e.md->hash = HashList::from_attribute("md5:1584abdf8ebdc9802ac0c6a7402c03b6");
      e.md->length = 8876;
      e.md->type = "text/html";
    }
    doc.entries.push_back(std::move(e));
  }
  return doc;
}

}  // namespace

TEST_CASE("a written document parses back to the same values", "[sitemap][write]") {
  Document doc = sample_change_list();
  doc.header.links.push_back(make_link("index", "http://example.com/changelist-index.xml"));
  Link mirror = make_link("duplicate", "gsiftp://mirror.example.com/res1");
  mirror.pri = 2;
  mirror.extra.push_back({"http://example.org/ext", "region", "eu\t\"west\"\n", "ex"});
  doc.entries[0].links.push_back(mirror);
  doc.entries[1].extra_attributes.push_back({"http://example.org/ext", "source", "site-b", "ex"});
  doc.entries[0].extra_elements.push_back(
      {"http://example.org/ext", "note", "ex", {{"", "kind", "a&b", ""}}, "text <&>\r\n", {}});
  doc.header.extra_attributes.push_back(
      {"http://www.w3.org/XML/1998/namespace", "lang", "en", "xml"});
  doc.header.md.extra.push_back({"", "modified", "2013", ""});

  auto xml = write_document(doc);
  REQUIRE(xml);
  auto back = parse_document(*xml);
  REQUIRE(back);
  CHECK(back->header == doc.header);
  CHECK(back->entries == doc.entries);
  CHECK(*back == doc);
  CHECK(xml->find("datetime=\"2013-01-03T13:00:00.5Z\"") != std::string::npos);
  CHECK(xml->find("?q=a&amp;b=&lt;c&gt;\"d\"</loc>") != std::string::npos);
}

TEST_CASE("written documents pass the validator", "[sitemap][write]") {
  auto xml = write_document(sample_change_list());
  REQUIRE(xml);
  auto back = parse_document(*xml);
  REQUIRE(back);
  for (const Finding& f : validate(*back)) FAIL(f.format());
}

TEST_CASE("change documents are written in forward chronological order only", "[sitemap][write]") {
  Document doc = sample_change_list();
  std::swap(doc.entries[0], doc.entries[2]);
  auto xml = write_document(doc);
  REQUIRE_FALSE(xml);
  CHECK(xml.error().detail.find("forward chronological order") != std::string::npos);

  // A Resource List has no order: the same swap is fine there.
  Document list{
      make_snapshot_header(Capability::resourcelist, at("2013-01-03T09:00:00Z"), "http://e/cl"),
      doc.entries};
  for (Entry& e : list.entries) e.md->change.reset();
  CHECK(write_document(list));
}

TEST_CASE("the writer's API is used in order", "[sitemap][write]") {
  std::string out;
  StringSink sink(out);
  DocumentWriter writer(sink);
  CHECK_FALSE(writer.add(Entry{}));
  REQUIRE(writer.begin(make_source_description()));
  CHECK_FALSE(writer.begin(make_source_description()));
  REQUIRE(writer.finish());
  CHECK_FALSE(writer.finish());
}

TEST_CASE("documents are written to disk atomically", "[sitemap][write]") {
  shardsync::test::TempDir dir;
  const auto path = (dir / "changelist.xml").string();
  shardsync::test::write_file(path, "old contents");
  REQUIRE(write_document_file(sample_change_list(), path));
  auto back = parse_file(path);
  REQUIRE(back);
  CHECK(back->entries.size() == 3);
  CHECK((std::filesystem::status(path).permissions() & std::filesystem::perms::others_read) !=
        std::filesystem::perms::none);
  // No temporary is left beside it.
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    (void)entry;
    ++files;
  }
  CHECK(files == 1);

  // A failure leaves the old file as it was.
  Document bad = sample_change_list();
  std::swap(bad.entries[0], bad.entries[2]);
  REQUIRE_FALSE(write_document_file(bad, path));
  CHECK(parse_file(path)->entries.size() == 3);
  REQUIRE_FALSE(write_document_file(bad, (dir / "missing-dir" / "x.xml").string()));
}
