#include "shardsync/sitemap/validator.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "shardsync/sitemap/byte_source.hpp"
#include "test_paths.hpp"

namespace fs = std::filesystem;
using namespace shardsync::sitemap;
using shardsync::test::data_dir;

namespace {

const std::string kUrlset =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\"\n"
    "        xmlns:rs=\"http://www.openarchives.org/rs/terms/\">\n";
const std::string kSitemapindex =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<sitemapindex xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\"\n"
    "              xmlns:rs=\"http://www.openarchives.org/rs/terms/\">\n";
const std::string kUp =
    "  <rs:ln rel=\"up\" href=\"http://example.com/dataset1/capabilitylist.xml\"/>\n";
const std::string kCapabilityListUrl = "http://example.com/dataset1/capabilitylist.xml";

// Every error (MUST) rule the validator has, and whether a hand-written fixture can show it.
// too-many-entries and document-too-large need 50,000 entries or 50 MB: tested in code below.
const std::vector<std::string> kFixtureRules{"at-required",
                                             "from-required",
                                             "up-required",
                                             "md-required",
                                             "capability-required",
                                             "index-not-allowed",
                                             "completed-before-at",
                                             "until-before-from",
                                             "loc-required",
                                             "loc-absolute",
                                             "change-required",
                                             "datetime-range",
                                             "chronological-order",
                                             "hash-not-hex",
                                             "hash-syntax",
                                             "pri-range",
                                             "ln-rel-required",
                                             "ln-href-required",
                                             "patch-type-required",
                                             "patch-path-required",
                                             "path-required",
                                             "path-unsafe",
                                             "path-duplicate",
                                             "capability-duplicate",
                                             "entry-capability-required",
                                             "entry-capability-value",
                                             "loc-too-long",
                                             "attribute-prefixed"};

std::vector<fs::path> xml_files(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& item : fs::directory_iterator(dir)) {
    if (item.is_regular_file() && item.path().extension() == ".xml") files.push_back(item.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// All findings, one per line, for failure messages.
std::string describe(const std::vector<Finding>& findings) {
  std::string text;
  for (const Finding& f : findings) text += f.format() + "\n";
  return text.empty() ? "(no findings)" : text;
}

std::vector<Finding> of_severity(const std::vector<Finding>& findings, Severity severity) {
  std::vector<Finding> out;
  std::copy_if(findings.begin(), findings.end(), std::back_inserter(out),
               [&](const Finding& f) { return f.severity == severity; });
  return out;
}

std::vector<Finding> errors_of(const std::vector<Finding>& findings) {
  return of_severity(findings, Severity::error);
}

std::vector<Finding> warnings_of(const std::vector<Finding>& findings) {
  return of_severity(findings, Severity::warning);
}

std::vector<std::string> rules_of(const std::vector<Finding>& findings) {
  std::vector<std::string> rules;
  for (const Finding& f : findings) rules.push_back(f.rule);
  return rules;
}

// Parses `xml` (which must be well formed) and validates it in memory.
std::vector<Finding> check_xml(const std::string& xml) {
  auto doc = parse_document(xml);
  INFO(xml);
  REQUIRE(doc);
  return validate(*doc);
}

Timestamp t(std::string_view text) {
  const auto parsed = parse_w3c_datetime(text);
  REQUIRE(parsed);
  return *parsed;
}

Entry change_entry(std::string loc, ChangeType change, std::optional<Timestamp> datetime) {
  Entry entry;
  entry.loc = std::move(loc);
  entry.md.emplace();
  entry.md->change = change;
  entry.md->datetime = datetime;
  return entry;
}

Entry resource_entry(std::string loc) {
  Entry entry;
  entry.loc = std::move(loc);
  return entry;
}

// A Resource List of `count` entries as XML text.
std::string resource_list_xml(std::size_t count) {
  std::string xml =
      kUrlset + kUp + "  <rs:md capability=\"resourcelist\" at=\"2013-01-03T09:00:00Z\"/>\n";
  xml.reserve(xml.size() + count * 48);
  for (std::size_t i = 0; i < count; ++i) {
    xml += "  <url><loc>http://example.com/r/" + std::to_string(i) + "</loc></url>\n";
  }
  return xml + "</urlset>\n";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Golden files

TEST_CASE("every invalid fixture breaks exactly the rule it is named after",
          "[sitemap][validator]") {
  const auto files = xml_files(data_dir() / "invalid");
  REQUIRE(files.size() == kFixtureRules.size());
  for (const fs::path& path : files) {
    const std::string rule = path.stem().string();
    INFO(path.filename().string());
    auto doc = parse_file(path.string());
    REQUIRE(doc);
    const auto findings = validate(*doc);
    INFO(describe(findings));
    const auto errors = errors_of(findings);
    REQUIRE(errors.size() == 1);
    CHECK(errors.front().rule == rule);
    CHECK(errors.front().line > 0);                                // points into the document
    CHECK(errors.front().message.find("§") != std::string::npos);  // cites the spec
    // The fixture is otherwise clean: nothing else, not even a warning, distracts from the
    // one violation it demonstrates.
    CHECK(warnings_of(findings).empty());
  }
}

TEST_CASE("every error rule the validator has is demonstrated by a fixture",
          "[sitemap][validator]") {
  for (const std::string& rule : kFixtureRules) {
    const fs::path path = data_dir() / "invalid" / (rule + ".xml");
    INFO(path.string());
    REQUIRE(fs::is_regular_file(path));
    // Each fixture says which part of the spec it breaks, at the top.
    const std::string text = shardsync::test::read_file(path);
    const auto comment = text.find("<!--");
    const auto root = std::min(text.find("<urlset"), text.find("<sitemapindex"));
    CHECK(comment < root);
    CHECK(text.find("Breaks §") != std::string::npos);
  }
}

TEST_CASE("every valid fixture validates without errors or warnings", "[sitemap][validator]") {
  const auto files = xml_files(data_dir() / "valid");
  REQUIRE_FALSE(files.empty());
  std::set<DocumentType> types;
  for (const fs::path& path : files) {
    INFO(path.filename().string());
    auto doc = parse_file(path.string());
    REQUIRE(doc);
    REQUIRE_FALSE(doc->entries.empty());
    types.insert(doc->type());
    const auto findings = validate(*doc);
    INFO(describe(findings));
    CHECK(errors_of(findings).empty());
    CHECK(warnings_of(findings).empty());
  }
  // One of each document the spec (and the Archives and Notification documents) defines.
  for (DocumentType type :
       {DocumentType::source_description, DocumentType::capability_list,
        DocumentType::resource_list, DocumentType::resource_list_index, DocumentType::change_list,
        DocumentType::change_list_index, DocumentType::resource_dump,
        DocumentType::resource_dump_manifest, DocumentType::change_dump,
        DocumentType::change_dump_manifest, DocumentType::changelist_notification,
        DocumentType::resourcelist_archive}) {
    INFO(std::string(document_type_name(type)));
    CHECK(types.count(type) == 1);
  }
}

TEST_CASE("the streaming validator agrees with validate() on every fixture",
          "[sitemap][validator]") {
  for (const char* folder : {"valid", "invalid"}) {
    for (const fs::path& path : xml_files(data_dir() / folder)) {
      INFO(path.filename().string());
      auto doc = parse_file(path.string());
      REQUIRE(doc);
      const auto in_memory = validate(*doc);

      auto source = file_source(path.string());
      REQUIRE(source);
      Validator validator;
      auto stats = parse_stream(**source, validator);
      REQUIRE(stats);
      validator.finish(*stats);
      CHECK(stats->bytes == fs::file_size(path));

      REQUIRE(validator.findings().size() == in_memory.size());
      for (std::size_t i = 0; i < in_memory.size(); ++i) {
        CHECK(validator.findings()[i].format() == in_memory[i].format());
      }
      CHECK(validator.errors() == errors_of(in_memory).size());
      CHECK(validator.warnings() == warnings_of(in_memory).size());
    }
  }
}

TEST_CASE("foreign-namespace attributes and elements are kept and are not errors",
          "[sitemap][validator]") {
  auto doc = parse_file((data_dir() / "valid" / "foreign-namespaces.xml").string());
  REQUIRE(doc);
  const auto findings = validate(*doc);
  INFO(describe(findings));
  CHECK(findings.empty());

  const std::string ex = "http://example.org/ns/extension#";
  const auto& header = doc->header;
  CHECK(header.capability() == Capability::resourcelist);
  REQUIRE(header.extra_attributes.size() == 2);  // ex:generator and xml:lang
  CHECK(header.extra_attributes[0].namespace_uri == ex);
  CHECK(header.extra_attributes[0].name == "generator");
  REQUIRE(header.extra_elements.size() == 1);
  CHECK(header.extra_elements[0].name == "provenance");
  CHECK(header.extra_elements[0].children.size() == 2);
  REQUIRE(header.md.extra.size() == 2);
  CHECK(header.md.extra[0].namespace_uri == ex);
  CHECK(header.md.extra[0].name == "batch");
  CHECK(header.md.extra[0].value == "42");
  REQUIRE(header.links.size() == 1);
  CHECK(header.links[0].extra.size() == 1);

  REQUIRE(doc->entries.size() == 2);
  CHECK(doc->entries[0].md->extra.size() == 1);
  CHECK(doc->entries[0].links[0].extra.size() == 1);
  CHECK(doc->entries[0].extra_elements.size() == 1);  // dc:title
  REQUIRE(doc->entries[1].extra_elements.size() == 2);
  CHECK(doc->entries[1].extra_elements[0].namespace_uri ==
        "http://www.google.com/schemas/sitemap-image/1.1");
  CHECK(doc->entries[1].extra_elements[0].name == "image");
}

TEST_CASE("an unprefixed attribute ResourceSync does not define is a warning",
          "[sitemap][validator]") {
  SECTION("an unknown attribute on <rs:md> needs a namespace") {
    const auto findings = check_xml(
        kUrlset + kUp +
        "  <rs:md capability=\"resourcelist\" at=\"2013-01-03T09:00:00Z\" batch=\"42\"/>\n"
        "  <url><loc>http://example.com/res1</loc></url>\n</urlset>\n");
    INFO(describe(findings));
    CHECK(errors_of(findings).empty());
    CHECK(rules_of(findings) == std::vector<std::string>{"unknown-attribute"});
  }
  SECTION("the pre-1.0 `modified` on an entry's <rs:md> is flagged as legacy") {
    const auto findings =
        check_xml(kUrlset + kUp +
                  "  <rs:md capability=\"resourcelist\" at=\"2013-01-03T09:00:00Z\"/>\n"
                  "  <url><loc>http://example.com/res1</loc>\n"
                  "    <rs:md modified=\"2013-01-02T13:00:00Z\"/></url>\n</urlset>\n");
    INFO(describe(findings));
    CHECK(errors_of(findings).empty());
    CHECK(rules_of(findings) == std::vector<std::string>{"legacy-attribute"});
  }
}

// ---------------------------------------------------------------------------------------------
// Targeted rules

TEST_CASE("change list entries out of forward chronological order are an error",
          "[sitemap][validator]") {
  const std::string head =
      kUrlset + kUp + "  <rs:md capability=\"changelist\" from=\"2013-01-03T00:00:00Z\"/>\n";

  SECTION("a change dated before the one listed above it") {
    const auto findings =
        check_xml(head +
                  "  <url><loc>http://example.com/a</loc>\n"  // 6
                  "    <rs:md change=\"updated\" datetime=\"2013-01-03T13:00:00Z\"/>\n"
                  "  </url>\n"
                  "  <url><loc>http://example.com/b</loc>\n"  // 9
                  "    <rs:md change=\"created\" datetime=\"2013-01-03T12:59:59.5Z\"/>\n"
                  "  </url>\n"
                  "</urlset>\n");
    INFO(describe(findings));
    const auto errors = errors_of(findings);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].rule == "chronological-order");
    CHECK(errors[0].line == 9);
    CHECK(errors[0].message.find("line 6") != std::string::npos);
    CHECK(errors[0].message.find("§12") != std::string::npos);
  }
  SECTION("changes at the same instant are in order") {
    const auto findings =
        check_xml(head +
                  "  <url><loc>http://example.com/a</loc>\n"
                  "    <rs:md change=\"updated\" datetime=\"2013-01-03T13:00:00Z\"/>\n"
                  "  </url>\n"
                  "  <url><loc>http://example.com/b</loc>\n"
                  "    <rs:md change=\"created\" datetime=\"2013-01-03T14:00:00+01:00\"/>\n"
                  "  </url>\n"
                  "</urlset>\n");
    INFO(describe(findings));
    CHECK(errors_of(findings).empty());
  }
  SECTION("each out-of-order change is reported, against the change just before it") {
    Document doc;
    doc.header = make_change_header(Capability::changelist, t("2013-01-03T00:00:00Z"), std::nullopt,
                                    kCapabilityListUrl);
    for (const char* when : {"2013-01-03T10:00:00Z", "2013-01-03T09:00:00Z", "2013-01-03T11:00:00Z",
                             "2013-01-03T08:00:00Z"}) {
      doc.entries.push_back(change_entry("http://example.com/x", ChangeType::updated, t(when)));
    }
    const auto errors = errors_of(validate(doc));
    CHECK(rules_of(errors) ==
          std::vector<std::string>{"chronological-order", "chronological-order"});
  }
  SECTION("the order of a Change Dump Manifest's changes is checked too") {
    Document doc;
    doc.header = make_change_header(Capability::changedump_manifest, t("2013-01-03T00:00:00Z"),
                                    t("2013-01-04T00:00:00Z"), kCapabilityListUrl);
    doc.entries.push_back(
        change_entry("http://example.com/a", ChangeType::deleted, t("2013-01-03T18:00:00Z")));
    doc.entries.push_back(
        change_entry("http://example.com/b", ChangeType::deleted, t("2013-01-03T17:00:00Z")));
    CHECK(rules_of(errors_of(validate(doc))) == std::vector<std::string>{"chronological-order"});
  }
  SECTION("<lastmod> is not the time of the change, so it does not decide the order") {
    // §7: in 1.1 <lastmod> "may not correspond with the datetime of the last ResourceSync
    // change event" (Example 19 lists a created resource whose <lastmod> is from 2000). An
    // entry without datetime but with an old <lastmod> breaks no ordering rule.
    const auto findings =
        check_xml(head +
                  "  <url><loc>http://example.com/a</loc>\n"
                  "    <rs:md change=\"updated\" datetime=\"2013-01-03T13:00:00Z\"/>\n"
                  "  </url>\n"
                  "  <url><loc>http://example.com/b</loc>\n"
                  "    <lastmod>2000-01-01T01:01:00Z</lastmod>\n"
                  "    <rs:md change=\"updated\"/>\n"
                  "  </url>\n"
                  "</urlset>\n");
    INFO(describe(findings));
    CHECK(errors_of(findings).empty());
  }
}

TEST_CASE("change list index entries out of forward chronological order are an error",
          "[sitemap][validator]") {
  const std::string head =
      kSitemapindex + kUp + "  <rs:md capability=\"changelist\" from=\"2013-01-01T00:00:00Z\"/>\n";
  SECTION("a Change List starting before the one listed above it") {
    const auto findings = check_xml(
        head +
        "  <sitemap><loc>http://example.com/20130102-changelist.xml</loc>\n"  // 6
        "    <rs:md from=\"2013-01-02T00:00:00Z\" until=\"2013-01-03T00:00:00Z\"/></sitemap>\n"
        "  <sitemap><loc>http://example.com/20130101-changelist.xml</loc>\n"  // 8
        "    <rs:md from=\"2013-01-01T00:00:00Z\" until=\"2013-01-02T00:00:00Z\"/></sitemap>\n"
        "</sitemapindex>\n");
    INFO(describe(findings));
    const auto errors = errors_of(findings);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].rule == "chronological-order");
    CHECK(errors[0].line == 8);
    CHECK(errors[0].message.find("§12") != std::string::npos);
  }
  SECTION("an index entry whose until is before its from") {
    const auto findings = check_xml(
        head +
        "  <sitemap><loc>http://example.com/20130101-changelist.xml</loc>\n"
        "    <rs:md from=\"2013-01-02T00:00:00Z\" until=\"2013-01-01T00:00:00Z\"/></sitemap>\n"
        "</sitemapindex>\n");
    INFO(describe(findings));
    CHECK(rules_of(errors_of(findings)) == std::vector<std::string>{"until-before-from"});
  }
  SECTION("lists in order, the last one open") {
    const auto findings = check_xml(
        head +
        "  <sitemap><loc>http://example.com/20130101-changelist.xml</loc>\n"
        "    <rs:md from=\"2013-01-01T00:00:00Z\" until=\"2013-01-02T00:00:00Z\"/></sitemap>\n"
        "  <sitemap><loc>http://example.com/20130102-changelist.xml</loc>\n"
        "    <rs:md from=\"2013-01-02T00:00:00Z\"/></sitemap>\n"
        "</sitemapindex>\n");
    INFO(describe(findings));
    CHECK(findings.empty());
  }
}

TEST_CASE("change dump packages out of order are a warning, not an error", "[sitemap][validator]") {
  // §13.1: "All entries in a Change Dump *should* be provided in forward chronological order"
  // (a SHOULD, unlike the MUST of §12.1, §12.2 and §13.2).
  Document doc;
  doc.header = make_change_header(Capability::changedump, t("2013-01-01T00:00:00Z"), std::nullopt,
                                  kCapabilityListUrl);
  for (const auto& [from, until] : {std::pair{"2013-01-02T00:00:00Z", "2013-01-03T00:00:00Z"},
                                    std::pair{"2013-01-01T00:00:00Z", "2013-01-02T00:00:00Z"}}) {
    Entry entry = resource_entry("http://example.com/" + std::string(from) + ".zip");
    entry.md.emplace();
    entry.md->type = "application/zip";
    entry.md->length = 4765;
    entry.md->from = t(from);
    entry.md->until = t(until);
    doc.entries.push_back(std::move(entry));
  }
  const auto findings = validate(doc);
  INFO(describe(findings));
  CHECK(errors_of(findings).empty());
  CHECK(warnings_of(findings).size() == 1);
}

TEST_CASE("a change dated outside the document's [from, until] is an error",
          "[sitemap][validator]") {
  const Timestamp from = t("2013-01-03T00:00:00Z");
  const Timestamp until = t("2013-01-04T00:00:00Z");
  Document doc;
  doc.header = make_change_header(Capability::changelist, from, until, kCapabilityListUrl);

  SECTION("before from") {
    doc.entries.push_back(
        change_entry("http://example.com/a", ChangeType::created, t("2013-01-02T23:59:59.999Z")));
    const auto errors = errors_of(validate(doc));
    REQUIRE(rules_of(errors) == std::vector<std::string>{"datetime-range"});
    CHECK(errors[0].message.find("before") != std::string::npos);
  }
  SECTION("after until") {
    doc.entries.push_back(
        change_entry("http://example.com/a", ChangeType::created, t("2013-01-04T00:00:01Z")));
    const auto errors = errors_of(validate(doc));
    REQUIRE(rules_of(errors) == std::vector<std::string>{"datetime-range"});
    CHECK(errors[0].message.find("after") != std::string::npos);
  }
  SECTION("the bounds themselves are inside") {
    doc.entries.push_back(change_entry("http://example.com/a", ChangeType::created, from));
    doc.entries.push_back(change_entry("http://example.com/a", ChangeType::deleted, until));
    const auto findings = validate(doc);
    INFO(describe(findings));
    CHECK(findings.empty());
  }
  SECTION("an open Change List has no upper bound") {
    doc.header.md.until.reset();
    doc.entries.push_back(
        change_entry("http://example.com/a", ChangeType::updated, t("2031-06-01T00:00:00Z")));
    CHECK(errors_of(validate(doc)).empty());
  }
  SECTION("a Change Dump Manifest's changes are bounded the same way") {
    doc.header =
        make_change_header(Capability::changedump_manifest, from, until, kCapabilityListUrl);
    Entry entry =
        change_entry("http://example.com/a", ChangeType::updated, t("2013-01-05T00:00:00Z"));
    entry.md->path = "/changes/a";
    entry.md->type = "text/plain";
    doc.entries.push_back(std::move(entry));
    CHECK(rules_of(errors_of(validate(doc))) == std::vector<std::string>{"datetime-range"});
  }
}

TEST_CASE("a capability listed twice in a capability list is an error", "[sitemap][validator]") {
  Document doc;
  doc.header = make_capability_list("http://example.com/resourcesync_description.xml");
  doc.header.links.push_back(make_link("describedby", "http://example.com/about-set1.xml"));
  const auto add = [&](const char* loc, const char* capability, std::uint32_t line) {
    Entry entry = resource_entry(loc);
    entry.md.emplace();
    entry.md->capability = capability;
    entry.line = line;
    doc.entries.push_back(std::move(entry));
  };
  add("http://example.com/dataset1/resourcelist.xml", "resourcelist", 7);
  add("http://example.com/dataset1/changelist.xml", "changelist", 10);

  SECTION("distinct capabilities are fine") {
    const auto findings = validate(doc);
    INFO(describe(findings));
    CHECK(findings.empty());
  }
  SECTION("a second changelist entry") {
    add("http://example.com/dataset1/changelist-2.xml", "changelist", 13);
    const auto errors = errors_of(validate(doc));
    REQUIRE(rules_of(errors) == std::vector<std::string>{"capability-duplicate"});
    CHECK(errors[0].line == 13);
    CHECK(errors[0].message.find("changelist") != std::string::npos);
  }
  SECTION("each further duplicate is reported") {
    add("http://example.com/dataset1/resourcelist-2.xml", "resourcelist", 13);
    add("http://example.com/dataset1/resourcelist-3.xml", "resourcelist", 16);
    CHECK(rules_of(errors_of(validate(doc))) ==
          std::vector<std::string>{"capability-duplicate", "capability-duplicate"});
  }
}

TEST_CASE("a document with more than 50,000 entries is an error", "[sitemap][validator]") {
  Validator validator;
  validator.on_header(make_snapshot_header(Capability::resourcelist, t("2013-01-03T09:00:00Z"),
                                           kCapabilityListUrl));
  validator.on_entry(resource_entry("http://example.com/res1"));
  ParseStats stats;

  SECTION("50,000 is the limit") {
    stats.entries = 50'000;
    validator.finish(stats);
    CHECK(validator.errors() == 0);
  }
  SECTION("50,001 is one too many") {
    stats.entries = 50'001;
    validator.finish(stats);
    REQUIRE(validator.errors() == 1);
    const Finding& f = validator.findings().back();
    CHECK(f.rule == "too-many-entries");
    CHECK(f.line == 0);  // the document as a whole
    CHECK(f.message.find("50001") != std::string::npos);
    CHECK(f.message.find("sitemapindex") != std::string::npos);
  }
  SECTION("an index is limited to 50,000 sitemaps too") {
    Validator index;
    index.on_header(make_snapshot_header(Capability::resourcelist, t("2013-01-03T09:00:00Z"),
                                         kCapabilityListUrl, RootKind::sitemapindex));
    stats.entries = 50'001;
    index.finish(stats);
    REQUIRE(index.errors() == 1);
    CHECK(index.findings().back().rule == "too-many-entries");
  }
}

TEST_CASE("validate() and the streaming parser both count entries against the limit",
          "[sitemap][validator]") {
  const std::string xml = resource_list_xml(50'001);

  SECTION("in memory") {
    auto doc = parse_document(xml);
    REQUIRE(doc);
    CHECK(rules_of(errors_of(validate(*doc))) == std::vector<std::string>{"too-many-entries"});
  }
  SECTION("streamed from a file") {
    shardsync::test::TempDir dir;
    const fs::path path = dir / "resourcelist.xml";
    shardsync::test::write_file(path, xml);
    auto source = file_source(path.string());
    REQUIRE(source);
    Validator validator;
    auto stats = parse_stream(**source, validator);
    REQUIRE(stats);
    CHECK(stats->entries == 50'001);
    validator.finish(*stats);
    CHECK(rules_of(validator.findings()) == std::vector<std::string>{"too-many-entries"});
  }
}

TEST_CASE("a document larger than 50 MB is an error", "[sitemap][validator]") {
  Validator validator;
  validator.on_header(make_snapshot_header(Capability::resourcelist, t("2013-01-03T09:00:00Z"),
                                           kCapabilityListUrl));
  ParseStats stats;
  stats.entries = 1;

  SECTION("52,428,800 bytes is the limit") {
    stats.bytes = 52'428'800;
    validator.finish(stats);
    CHECK(validator.findings().empty());
  }
  SECTION("one byte more is too large") {
    stats.bytes = 52'428'801;
    validator.finish(stats);
    REQUIRE(validator.errors() == 1);
    const Finding& f = validator.findings().back();
    CHECK(f.rule == "document-too-large");
    CHECK(f.line == 0);
    CHECK(f.message.find("52428801") != std::string::npos);
  }
  SECTION("both limits broken gives both errors") {
    stats.entries = 60'000;
    stats.bytes = 60'000'000;
    validator.finish(stats);
    CHECK(rules_of(validator.findings()) ==
          std::vector<std::string>{"too-many-entries", "document-too-large"});
  }
}

TEST_CASE("non-hex sha-256 values as in the spec's Example 27 are errors", "[sitemap][validator]") {
  // Example 27 (§14.4) shows base64url-like sha-256 values; §7 says digests are hex-encoded
  // and resync issue #25 settled on lower-case hex.
  const std::string xml =
      kUrlset + kUp +
      "  <rs:md capability=\"changelist\" from=\"2013-01-03T00:00:00Z\"/>\n"
      "  <url>\n"
      "      <loc>http://example.com/res4</loc>\n"
      "      <rs:md change=\"updated\"\n"  // 8
      "             hash=\"sha-256:f4OxZX_x_DFGFDgghgdfb6rtSx-iosjf6735432nklj\"\n"
      "             length=\"56778\" type=\"application/json\"/>\n"
      "      <rs:ln rel=\"http://www.openarchives.org/rs/terms/patch\"\n"  // 11
      "             href=\"http://example.com/res4-json-patch\"\n"
      "             hash=\"sha-256:y66dER_t_HWEIKpesdkeb7rtSc-ippjf9823742opld\"\n"
      "             length=\"73\" type=\"application/json-patch\"/>\n"
      "  </url>\n"
      "  <url>\n"
      "      <loc>http://example.com/res5-full.tiff</loc>\n"
      "      <rs:md change=\"updated\"\n"  // 18
      "             hash=\"sha-256:f4OxZX_x_FO5LcGBSKHWXfwtSx-j1ncoSt3SABJtkGk\"\n"
      "             length=\"9788456778\" type=\"image/tiff\"/>\n"
      "      <rs:ln rel=\"http://www.openarchives.org/rs/terms/patch\"\n"  // 21
      "             href=\"http://example.com/res5-diff\"\n"
      "             hash=\"sha-256:h986gT_t_87HTkjHYE76G558hY-jdfgy76t55sadJUYT\"\n"
      "             length=\"4533\" type=\"application/x-tiff-diff\"/>\n"
      "  </url>\n"
      "</urlset>\n";
  const auto findings = check_xml(xml);
  INFO(describe(findings));
  const auto errors = errors_of(findings);
  REQUIRE(rules_of(errors) ==
          std::vector<std::string>{"hash-not-hex", "hash-not-hex", "hash-not-hex", "hash-not-hex"});
  std::vector<std::uint32_t> lines;
  for (const Finding& f : errors) {
    lines.push_back(f.line);
    CHECK(f.message.find("64 lower-case hex digits") != std::string::npos);
  }
  // One per digest, at the element that carries it (findings need not come in line order).
  std::sort(lines.begin(), lines.end());
  CHECK(lines == std::vector<std::uint32_t>{8, 11, 18, 21});
}

TEST_CASE("hash digests must be lower-case hex of the algorithm's length", "[sitemap][validator]") {
  Document doc;
  doc.header =
      make_snapshot_header(Capability::resourcelist, t("2013-01-03T09:00:00Z"), kCapabilityListUrl);
  Entry entry = resource_entry("http://example.com/res1");
  entry.md.emplace();
  const auto errors_for = [&](std::string_view hash) {
    entry.md->hash = HashList::from_attribute(hash);
    doc.entries = {entry};
    return rules_of(errors_of(validate(doc)));
  };
  using Rules = std::vector<std::string>;
  CHECK(errors_for("md5:1584abdf8ebdc9802ac0c6a7402c03b6").empty());
  CHECK(errors_for("sha-1:da39a3ee5e6b4b0d3255bfef95601890afd80709").empty());
  CHECK(errors_for("sha-256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
            .empty());
  CHECK(errors_for("md5:1584abdf8ebdc9802ac0c6a7402c03b6\n\t sha-1:"
                   "da39a3ee5e6b4b0d3255bfef95601890afd80709")
            .empty());
  CHECK(errors_for("md5:1584ABDF8EBDC9802AC0C6A7402C03B6") == Rules{"hash-not-hex"});
  CHECK(errors_for("md5:1584abdf8ebdc9802ac0c6a7402c03b") == Rules{"hash-not-hex"});
  CHECK(errors_for("sha-256:1584abdf8ebdc9802ac0c6a7402c03b6") == Rules{"hash-not-hex"});
  CHECK(errors_for("sha-1:") == Rules{"hash-not-hex"});
  CHECK(errors_for("1584abdf8ebdc9802ac0c6a7402c03b6") == Rules{"hash-syntax"});
  CHECK(errors_for("md5:1584abdf8ebdc9802ac0c6a7402c03b6 md5:xyz") == Rules{"hash-not-hex"});
}

TEST_CASE("an unknown hash algorithm is a warning, not an error", "[sitemap][validator]") {
  const auto findings = check_xml(
      kUrlset + kUp +
      "  <rs:md capability=\"resourcelist\" at=\"2013-01-03T09:00:00Z\"/>\n"
      "  <url>\n"
      "    <loc>http://example.com/res1</loc>\n"
      "    <rs:md hash=\"md5:1584abdf8ebdc9802ac0c6a7402c03b6 sha-512:cf83e1357eefb8bdf1542850d6"
      "6d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a8"
      "1a538327af927da3e\"/>\n"
      "    <rs:ln rel=\"duplicate\" href=\"http://mirror.example.com/res1\" "
      "hash=\"crc32:414fa339\"/>\n"
      "  </url>\n"
      "</urlset>\n");
  INFO(describe(findings));
  CHECK(errors_of(findings).empty());
  CHECK(rules_of(findings) ==
        std::vector<std::string>{"hash-algorithm-unknown", "hash-algorithm-unknown"});
  for (const Finding& f : findings) CHECK(f.severity == Severity::warning);
}

TEST_CASE("a link pri outside 1..999,999 is an error", "[sitemap][validator]") {
  Document doc;
  doc.header =
      make_snapshot_header(Capability::resourcelist, t("2013-01-03T09:00:00Z"), kCapabilityListUrl);
  Entry entry = resource_entry("http://example.com/res1");
  entry.links.push_back(make_link("duplicate", "http://mirror.example.com/res1"));
  const auto errors_for = [&](std::uint32_t pri) {
    entry.links[0].pri = pri;
    doc.entries = {entry};
    return rules_of(errors_of(validate(doc)));
  };
  using Rules = std::vector<std::string>;
  CHECK(errors_for(1).empty());
  CHECK(errors_for(999'999).empty());
  CHECK(errors_for(0) == Rules{"pri-range"});
  CHECK(errors_for(1'000'000) == Rules{"pri-range"});
  CHECK(errors_for(4'294'967'295u) == Rules{"pri-range"});

  SECTION("on a root link as well, read from XML") {
    const auto findings = check_xml(
        kUrlset +
        "  <rs:ln rel=\"up\" pri=\"1000000\" href=\"http://example.com/capabilitylist.xml\"/>\n"
        "  <rs:md capability=\"resourcelist\" at=\"2013-01-03T09:00:00Z\"/>\n"
        "  <url><loc>http://example.com/res1</loc></url>\n"
        "</urlset>\n");
    INFO(describe(findings));
    const auto errors = errors_of(findings);
    REQUIRE(rules_of(errors) == Rules{"pri-range"});
    CHECK(errors[0].line == 4);
    CHECK(errors[0].message.find("1000000") != std::string::npos);
  }
}

TEST_CASE("a <loc> must be an absolute URI with a host", "[sitemap][validator]") {
  Document doc;
  doc.header =
      make_snapshot_header(Capability::resourcelist, t("2013-01-03T09:00:00Z"), kCapabilityListUrl);
  const auto errors_for = [&](std::string loc) {
    doc.entries = {resource_entry(std::move(loc))};
    return rules_of(errors_of(validate(doc)));
  };
  using Rules = std::vector<std::string>;
  CHECK(errors_for("http://example.com/res1").empty());
  CHECK(errors_for("https://example.com:8443/a/b?c=d&e=f#g").empty());
  CHECK(errors_for("ftp://user@example.com/file.zip").empty());
  CHECK(errors_for("res2.pdf") == Rules{"loc-absolute"});
  CHECK(errors_for("/res2.pdf") == Rules{"loc-absolute"});
  CHECK(errors_for("//example.com/res2.pdf") == Rules{"loc-absolute"});
  CHECK(errors_for("http://") == Rules{"loc-absolute"});
  CHECK(errors_for("http://example.com/a b") == Rules{"loc-absolute"});
  CHECK(errors_for("1http://example.com/") == Rules{"loc-absolute"});
  // The "://" must follow the scheme, and an authority must follow it.
  CHECK(errors_for("res2.pdf?from=http://example.com/") == Rules{"loc-absolute"});
  CHECK(errors_for("urn:x?u=http://example.com/") == Rules{"loc-absolute"});
  CHECK(errors_for("http:///res2.pdf") == Rules{"loc-absolute"});
  CHECK(errors_for("") == Rules{"loc-required"});
}

TEST_CASE("a Source Description entry's <rs:md>, when present, must give the capability",
          "[sitemap][validator]") {
  // §8: "An optional <rs:md> child element must have a capability attribute with a value of
  // capabilitylist".
  const std::string head =
      kUrlset +
      "  <rs:ln rel=\"describedby\" href=\"http://example.com/info_about_source.xml\"/>\n"
      "  <rs:md capability=\"description\"/>\n"
      "  <url>\n"
      "    <loc>http://example.com/dataset1/capabilitylist.xml</loc>\n";
  const std::string tail =
      "    <rs:ln rel=\"describedby\" href=\"http://example.com/info_about_set1.xml\"/>\n"
      "  </url>\n"
      "</urlset>\n";
  SECTION("an <rs:md> without capability breaks the MUST") {
    const auto findings = check_xml(head + "    <rs:md type=\"application/xml\"/>\n" + tail);
    INFO(describe(findings));
    const auto errors = errors_of(findings);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].line == 8);
  }
  SECTION("leaving out the optional <rs:md> is no error") {
    const auto findings = check_xml(head + tail);
    INFO(describe(findings));
    CHECK(errors_of(findings).empty());
  }
}

TEST_CASE("an entry's time interval that ends before it starts is an error",
          "[sitemap][validator]") {
  using Rules = std::vector<std::string>;
  SECTION("a Change List Index entry with until before from") {
    Document doc;
    doc.header = make_change_header(Capability::changelist, t("2013-01-01T00:00:00Z"), std::nullopt,
                                    kCapabilityListUrl, RootKind::sitemapindex);
    Entry entry = resource_entry("http://example.com/changelist1.xml");
    entry.md.emplace();
    entry.md->from = t("2013-01-02T00:00:00Z");
    entry.md->until = t("2013-01-01T00:00:00Z");
    doc.entries.push_back(entry);
    CHECK(rules_of(errors_of(validate(doc))) == Rules{"until-before-from"});
  }
  SECTION("a Change Dump package with until before from") {
    Document doc;
    doc.header = make_change_header(Capability::changedump, t("2013-01-01T00:00:00Z"), std::nullopt,
                                    kCapabilityListUrl);
    Entry entry = resource_entry("http://example.com/changedump1.zip");
    entry.md.emplace();
    entry.md->type = "application/zip";
    entry.md->length = 4765;
    entry.md->from = t("2013-01-02T00:00:00Z");
    entry.md->until = t("2013-01-01T00:00:00Z");
    doc.entries.push_back(entry);
    CHECK(rules_of(errors_of(validate(doc))) == Rules{"until-before-from"});
  }
  SECTION("a Resource List Index entry with completed before at") {
    Document doc;
    doc.header = make_snapshot_header(Capability::resourcelist, t("2013-01-03T09:00:00Z"),
                                      kCapabilityListUrl, RootKind::sitemapindex);
    Entry entry = resource_entry("http://example.com/resourcelist1.xml");
    entry.md.emplace();
    entry.md->at = t("2013-01-03T09:00:00Z");
    entry.md->completed = t("2013-01-03T08:00:00Z");
    doc.entries.push_back(entry);
    CHECK(rules_of(errors_of(validate(doc))) == Rules{"completed-before-at"});
  }
  SECTION("a Resource Dump package with completed before at") {
    Document doc;
    doc.header = make_snapshot_header(Capability::resourcedump, t("2013-01-03T09:00:00Z"),
                                      kCapabilityListUrl);
    Entry entry = resource_entry("http://example.com/resourcedump1.zip");
    entry.md.emplace();
    entry.md->type = "application/zip";
    entry.md->length = 4765;
    entry.md->at = t("2013-01-03T09:00:00Z");
    entry.md->completed = t("2013-01-03T08:00:00Z");
    doc.entries.push_back(entry);
    CHECK(rules_of(errors_of(validate(doc))) == Rules{"completed-before-at"});
  }
}

TEST_CASE("ResourceSync attributes with a namespace prefix are an error", "[sitemap][validator]") {
  // §7: the attributes ResourceSync defines "must not have an XML Namespace prefix", and
  // community attributes "must use an XML Namespace other than that of ResourceSync".
  const auto findings =
      check_xml(kUrlset + kUp +
                "  <rs:md capability=\"resourcelist\" at=\"2013-01-03T09:00:00Z\"/>\n"
                "  <url>\n"
                "    <loc>http://example.com/res1</loc>\n"
                "    <rs:md rs:hash=\"md5:not-a-digest\"/>\n"  // 8
                "  </url>\n"
                "</urlset>\n");
  INFO(describe(findings));
  const auto errors = errors_of(findings);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].line == 8);
}

TEST_CASE("a finding formats as SEVERITY line N: rule: message", "[sitemap][validator]") {
  SECTION("an error") {
    const Finding f{Severity::error, 12, "at-required", "a Resource List must give `at`"};
    CHECK(f.format() == "ERROR line 12: at-required: a Resource List must give `at`");
  }
  SECTION("a warning") {
    const Finding f{Severity::warning, 3, "datetime-recommended", "give datetime"};
    CHECK(f.format() == "WARNING line 3: datetime-recommended: give datetime");
  }
  SECTION("a document-wide finding has line 0") {
    const Finding f{Severity::error, 0, "too-many-entries", "split it"};
    CHECK(f.format() == "ERROR line 0: too-many-entries: split it");
  }
  SECTION("as read from a fixture") {
    auto doc = parse_file((data_dir() / "invalid" / "at-required.xml").string());
    REQUIRE(doc);
    const auto findings = validate(*doc);
    REQUIRE(findings.size() == 1);
    CHECK(findings[0].line == 7);  // the root <rs:md>
    CHECK(findings[0].format() == "ERROR line 7: at-required: " + findings[0].message);
    CHECK(findings[0].format().rfind("ERROR line 7: at-required: a Resource List must give `at`",
                                     0) == 0);
  }
}

TEST_CASE("dump manifest paths must name a file inside the package", "[sitemap][validator]") {
  const auto [path, ok] = GENERATE(table<std::string, bool>({
      {"/a/b.bin", true},
      {"/changes/7/a b.txt", true},
      {"relative/ok", true},  // only a warning: path-leading-slash
      {"/", false},
      {"/a//b", false},
      {"/./a", false},
      {"/a/../../b", false},
      {"/a/..", false},
      {"/a\\..\\b", false},
      {"/a&#9;b", false},  // a tab, as a character reference survives normalisation
  }));
  INFO(path);
  std::string xml = kUrlset + kUp +
                    "  <rs:md capability=\"resourcedump-manifest\" at=\"2013-01-03T09:00:00Z\"/>\n"
                    "  <url><loc>http://example.com/r</loc><rs:md type=\"text/plain\" path=\"" +
                    path + "\"/></url>\n</urlset>\n";
  const auto rules = rules_of(errors_of(check_xml(xml)));
  CHECK((std::find(rules.begin(), rules.end(), "path-unsafe") == rules.end()) == ok);
}
