#include "shardsync/sitemap/parser.hpp"

#include <zlib.h>

#include <catch2/catch.hpp>
#include <set>

#include "shardsync/sitemap/errc.hpp"

using namespace shardsync::sitemap;

namespace {

const std::string kHead =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\"\n"
    "        xmlns:rs=\"http://www.openarchives.org/rs/terms/\">\n";

std::string gzip(const std::string& data) {
  z_stream z{};
  deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, data.size()) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

errc code_of(const shardsync::Error& e) { return static_cast<errc>(e.code.value()); }

}  // namespace

TEST_CASE("a resource list parses into header and entries", "[sitemap][parse]") {
  const std::string xml =
      kHead +
      "  <rs:ln rel=\"up\" href=\"http://example.com/capabilitylist.xml\"/>\n"
      "  <rs:md capability=\"resourcelist\" at=\"2013-01-03T09:00:00Z\"\n"
      "         completed=\"2013-01-03T09:01:00Z\"/>\n"
      "  <url>\n"
      "    <loc>http://example.com/res1?a=1&amp;b=2</loc>\n"
      "    <lastmod>2013-01-02T13:00:00Z</lastmod>\n"
      "    <changefreq>daily</changefreq>\n"
      "    <rs:md hash=\"md5:1584abdf8ebdc9802ac0c6a7402c03b6\" length=\"8876\"\n"
      "           type=\"text/html\" encoding=\"gzip\"/>\n"
      "    <rs:ln rel=\"duplicate\" href=\"gsiftp://mirror/res1\" pri=\"2\"\n"
      "           modified=\"2013-01-02T13:00:00Z\" length=\"1\" hash=\"md5:x\"\n"
      "           type=\"a/b\" path=\"/p\" encoding=\"e\"/>\n"
      "  </url>\n"
      "</urlset>\n";
  auto doc = parse_document(xml);
  REQUIRE(doc);
  CHECK(doc->type() == DocumentType::resource_list);
  CHECK(doc->header.line == 2);
  CHECK(doc->header.md.line == 5);
  CHECK(format_w3c_datetime(*doc->header.md.completed) == "2013-01-03T09:01:00Z");
  REQUIRE(doc->header.find_link("up"));
  CHECK(doc->header.find_link("up")->href == "http://example.com/capabilitylist.xml");
  REQUIRE(doc->entries.size() == 1);
  const Entry& e = doc->entries[0];
  CHECK(e.line == 7);
  CHECK(e.loc == "http://example.com/res1?a=1&b=2");
  CHECK(e.changefreq == ChangeFrequency::daily);
  REQUIRE(e.md);
  CHECK(e.md->line == 11);
  CHECK(e.md->length == 8876u);
  CHECK(e.md->type == "text/html");
  CHECK(e.md->encoding == "gzip");
  CHECK(e.md->hash.get(HashAlgorithm::md5) == "1584abdf8ebdc9802ac0c6a7402c03b6");
  REQUIRE(e.links.size() == 1);
  const Link& l = e.links[0];
  CHECK(l.rel == "duplicate");
  CHECK(l.href == "gsiftp://mirror/res1");
  CHECK(l.pri == 2u);
  CHECK(l.length == 1u);
  CHECK(l.path == "/p");
  CHECK(l.encoding == "e");
  CHECK(l.modified);
  CHECK(l.line == 13);
}

TEST_CASE("namespaces are resolved by URI, whatever the prefixes", "[sitemap][parse]") {
  SECTION("sitemap namespace under a prefix, ResourceSync as default") {
    auto doc = parse_document(
        "<sm:urlset xmlns:sm=\"http://www.sitemaps.org/schemas/sitemap/0.9\" "
        "xmlns=\"http://www.openarchives.org/rs/terms/\">"
        "<md capability=\"changelist\" from=\"2013-01-03T00:00:00Z\"/>"
        "<sm:url><sm:loc>http://e/x</sm:loc><md change=\"deleted\"/></sm:url></sm:urlset>");
    REQUIRE(doc);
    CHECK(doc->type() == DocumentType::change_list);
    REQUIRE(doc->entries.size() == 1);
    CHECK(doc->entries[0].md->change == ChangeType::deleted);
  }
  SECTION("another prefix for ResourceSync, declared on the entry") {
    auto doc = parse_document(
        "<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">"
        "<x:md xmlns:x=\"http://www.openarchives.org/rs/terms/\" capability=\"resourcelist\" "
        "at=\"2013-01-03\"/>"
        "<url xmlns:y=\"http://www.openarchives.org/rs/terms/\"><loc>http://e/x</loc>"
        "<y:md length=\"5\"/></url></urlset>");
    REQUIRE(doc);
    CHECK(doc->header.has_md);
    REQUIRE(doc->entries.size() == 1);
    CHECK(doc->entries[0].md->length == 5u);
  }
  SECTION("an rs prefix bound to another namespace is a foreign element") {
    auto doc = parse_document(
        "<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\" "
        "xmlns:rs=\"http://example.org/not-rs\"><rs:md capability=\"resourcelist\"/></urlset>");
    REQUIRE(doc);
    CHECK_FALSE(doc->header.has_md);
    REQUIRE(doc->header.extra_elements.size() == 1);
    CHECK(doc->header.extra_elements[0].namespace_uri == "http://example.org/not-rs");
  }
  SECTION("an undeclared prefix is an error naming the line") {
    auto doc = parse_document(kHead + "<url>\n<loc>http://e/x</loc><zz:thing/></url></urlset>");
    REQUIRE_FALSE(doc);
    CHECK(code_of(doc.error()) == errc::malformed_xml);
    CHECK(doc.error().detail.starts_with("line 5: "));
  }
}

TEST_CASE("list and index are told apart by the root element", "[sitemap][parse]") {
  auto index = parse_document(
      "<sitemapindex xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\" "
      "xmlns:rs=\"http://www.openarchives.org/rs/terms/\">"
      "<rs:md capability=\"resourcelist\" at=\"2013-01-03T09:00:00Z\"/>"
      "<sitemap><loc>http://e/part1.xml</loc><rs:md at=\"2013-01-03T09:00:00Z\"/></sitemap>"
      "</sitemapindex>");
  REQUIRE(index);
  CHECK(index->header.is_index());
  CHECK(index->type() == DocumentType::resource_list_index);

  auto mixed = parse_document(
      "<sitemapindex xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">"
      "<url><loc>http://e/x</loc></url></sitemapindex>");
  REQUIRE_FALSE(mixed);
  CHECK(code_of(mixed.error()) == errc::structure);

  auto wrong_root = parse_document("<rss xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\"/>");
  REQUIRE_FALSE(wrong_root);
  CHECK(code_of(wrong_root.error()) == errc::not_a_sitemap);

  auto no_namespace = parse_document("<urlset><url><loc>http://e/x</loc></url></urlset>");
  REQUIRE_FALSE(no_namespace);
  CHECK(code_of(no_namespace.error()) == errc::not_a_sitemap);
}

TEST_CASE("foreign attributes and elements are kept, never fatal", "[sitemap][parse]") {
  auto doc = parse_document(
      "<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\" "
      "xmlns:rs=\"http://www.openarchives.org/rs/terms/\" xmlns:ex=\"http://example.org/ext\" "
      "ex:flavour=\"root\">"
      "<rs:md capability=\"resourcelist\" at=\"2013-01-03\" ex:batch=\"7\" modified=\"2013\"/>"
      "<ex:provenance kind=\"site\"><ex:host>a</ex:host></ex:provenance>"
      "<url ex:note=\"n\"><loc>http://e/x</loc><rs:ln rel=\"describedby\" href=\"http://e/m\" "
      "ex:lang=\"en\"/><ex:image><ex:loc>http://e/i.png</ex:loc></ex:image></url></urlset>");
  REQUIRE(doc);
  REQUIRE(doc->header.extra_attributes.size() == 1);
  CHECK(doc->header.extra_attributes[0].name == "flavour");
  REQUIRE(doc->header.md.extra.size() == 2);
  CHECK(doc->header.md.extra[0].namespace_uri == "http://example.org/ext");
  CHECK(doc->header.md.extra[1].name == "modified");  // legacy no-namespace attribute
  REQUIRE(doc->header.extra_elements.size() == 1);
  CHECK(doc->header.extra_elements[0].children.at(0).text == "a");
  const Entry& e = doc->entries.at(0);
  REQUIRE(e.extra_attributes.size() == 1);
  CHECK(e.extra_attributes[0].name == "note");
  CHECK(e.links.at(0).extra.at(0).name == "lang");
  REQUIRE(e.extra_elements.size() == 1);
  CHECK(e.extra_elements[0].name == "image");
  CHECK(e.extra_elements[0].children.at(0).text == "http://e/i.png");
}

TEST_CASE("typed values are parsed strictly", "[sitemap][parse]") {
  const std::string attr = GENERATE(
      std::string("length=\"-1\""), std::string("length=\"+5\""), std::string("length=\"1e9\""),
      std::string("length=\"0x10\""), std::string("length=\"18446744073709551616\""),
      std::string("length=\"\""), std::string("length=\" 5\""), std::string("change=\"modified\""),
      std::string("datetime=\"2013-01-01T10:00:00\""), std::string("at=\"yesterday\""));
  CAPTURE(attr);
  auto doc =
      parse_document(kHead + "<url><loc>http://e/x</loc>\n<rs:md " + attr + "/></url></urlset>");
  REQUIRE_FALSE(doc);
  CHECK(code_of(doc.error()) == errc::invalid_value);
  CHECK(doc.error().detail.starts_with("line 5: "));
}

TEST_CASE("entry structure errors name their line", "[sitemap][parse]") {
  const auto [body, expected] = GENERATE(table<std::string, errc>({
      {"<url><loc>http://e/a</loc><loc>http://e/b</loc></url>", errc::structure},
      {"<url><loc>http://e/a</loc><rs:md/><rs:md/></url>", errc::structure},
      {"<url><loc>http://e/a<b/></loc></url>", errc::structure},
      {"<url><loc>http://e/a</loc><lastmod>soon</lastmod></url>", errc::invalid_value},
      {"<url><loc>http://e/a</loc><changefreq>sometimes</changefreq></url>", errc::invalid_value},
      {"<url><loc>http://e/a</loc><bogus/></url>", errc::structure},
      {"<url><loc>http://e/a</loc><rs:thing/></url>", errc::structure},
      {"<url><loc>http://e/a</loc></url>junk", errc::structure},
      {"<url><loc>http://e/a</loc></url><rs:md capability=\"resourcelist\"/>", errc::structure},
      {"<url><loc>http://e/a</loc></url><url><loc>x</loc></urlx>", errc::malformed_xml},
  }));
  CAPTURE(body);
  auto doc = parse_document(kHead + "\n" + body + "\n</urlset>\n");
  REQUIRE_FALSE(doc);
  CHECK(code_of(doc.error()) == expected);
  CHECK(doc.error().detail.starts_with("line 5: "));
}

TEST_CASE("a second rs:md on the root is refused", "[sitemap][parse]") {
  auto doc = parse_document(kHead +
                            "<rs:md capability=\"resourcelist\" at=\"2013\"/>\n"
                            "<rs:md capability=\"changelist\" from=\"2013\"/></urlset>");
  REQUIRE_FALSE(doc);
  CHECK(code_of(doc.error()) == errc::structure);
}

TEST_CASE("gzip-compressed documents are read transparently", "[sitemap][parse]") {
  std::string xml = kHead + "<rs:md capability=\"resourcelist\" at=\"2013-01-03T09:00:00Z\"/>\n";
  for (int i = 0; i < 2000; ++i) {
    xml += "<url><loc>http://example.com/r" + std::to_string(i) + "</loc></url>\n";
  }
  xml += "</urlset>\n";
  const std::string compressed = gzip(xml);
  auto source = memory_source(compressed);
  struct Count final : ParseHandler {
    std::size_t entries = 0;
    void on_header(const DocumentHeader&) override {}
    void on_entry(Entry&&) override { ++entries; }
  } count;
  auto stats = parse_stream(*source, count);
  REQUIRE(stats);
  CHECK(stats->gzip);
  CHECK(stats->entries == 2000);
  CHECK(count.entries == 2000);
  CHECK(stats->bytes == xml.size());

  SECTION("a truncated gzip stream is an error, not a short document") {
    const std::string cut = compressed.substr(0, compressed.size() / 2);
    auto doc = parse_document(cut);
    REQUIRE_FALSE(doc);
    CHECK(code_of(doc.error()) == errc::truncated);
  }
  SECTION("data after the gzip stream is refused") {
    auto doc = parse_document(compressed + "garbage");
    REQUIRE_FALSE(doc);
    CHECK(code_of(doc.error()) == errc::decompression_failed);
  }
  SECTION("a corrupted gzip stream is refused") {
    std::string bad = compressed;
    bad[bad.size() - 6] = static_cast<char>(bad[bad.size() - 6] ^ 0x55);  // CRC-32
    auto doc = parse_document(bad);
    REQUIRE_FALSE(doc);
    CHECK(code_of(doc.error()) == errc::decompression_failed);
  }
}

TEST_CASE("line numbers stay right across parse batches", "[sitemap][parse]") {
  std::string xml = kHead + "<rs:md capability=\"resourcelist\" at=\"2013-01-03T09:00:00Z\"/>\n";
  const int n = 20000;  // about 1.5 MB: many batches and buffer compactions
  for (int i = 0; i < n; ++i) {
    xml += "<url>\n  <loc>http://example.com/resource/" + std::to_string(i) +
           "</loc>\n  <rs:md length=\"" + std::to_string(i) + "\"/>\n</url>\n";
  }
  xml += "</urlset>\n";
  auto doc = parse_document(xml);
  REQUIRE(doc);
  REQUIRE(doc->entries.size() == static_cast<std::size_t>(n));
  for (int i : {0, 1, 4095, 9999, n - 1}) {
    const Entry& e = doc->entries[static_cast<std::size_t>(i)];
    CHECK(e.line == static_cast<std::uint32_t>(5 + 4 * i));
    CHECK(e.md->line == e.line + 2);
    CHECK(e.md->length == static_cast<std::uint64_t>(i));
  }

  // An error deep in the document still names its line.
  const std::string needle = "<loc>http://example.com/resource/15000</loc>";
  std::string broken = xml;
  broken.replace(broken.find(needle), needle.size(), "<loc>http://example.com/&bogus;</loc>");
  auto bad = parse_document(broken);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().detail.starts_with("line " + std::to_string(5 + 4 * 15000 + 1) + ": "));
}

TEST_CASE("the XML declaration, BOM, comments and PIs are handled", "[sitemap][parse]") {
  SECTION("UTF-8 BOM and lower-case encoding name") {
    auto doc = parse_document(
        "\xEF\xBB\xBF<?xml version='1.0' encoding='utf-8'?><!-- c --><?pi x?>\n"
        "<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\"><!-- inside -->"
        "<url><!-- in entry --><loc><![CDATA[http://e/a&b]]></loc></url></urlset><!-- after -->\n");
    REQUIRE(doc);
    CHECK(doc->entries.at(0).loc == "http://e/a&b");
  }
  SECTION("another encoding is refused") {
    auto doc = parse_document(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>"
        "<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\"/>");
    REQUIRE_FALSE(doc);
    CHECK(code_of(doc.error()) == errc::unsupported_encoding);
  }
  SECTION("UTF-16 is refused") {
    auto doc = parse_document(std::string("\xFF\xFE<\0u\0", 6));
    REQUIRE_FALSE(doc);
    CHECK(code_of(doc.error()) == errc::unsupported_encoding);
  }
  SECTION("an empty document is truncated") {
    auto doc = parse_document("");
    REQUIRE_FALSE(doc);
    CHECK(code_of(doc.error()) == errc::truncated);
  }
  SECTION("a self-closing root is an empty document") {
    auto doc = parse_document(
        "<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\" "
        "xmlns:rs=\"http://www.openarchives.org/rs/terms/\"/>");
    REQUIRE(doc);
    CHECK(doc->entries.empty());
  }
}

TEST_CASE("a batch cut that splits an entry falls back to exact framing", "[sitemap][parse]") {
  // An extension element holding a Sitemap-namespace <url> makes "</url>" appear inside an
  // entry: the fast path's cut there leaves an element open, and exact framing takes over.
  std::string xml = kHead;
  for (int i = 0; i < 3; ++i) {
    xml += "<url><loc>http://e/" + std::to_string(i) +
           "</loc><ex:wrap xmlns:ex=\"http://example.org/ext\"><url>nested</url></ex:wrap>"
           "\n<rs:md length=\"1\"/></url>\n";
  }
  xml += "</urlset>\n";
  auto doc = parse_document(xml);
  REQUIRE(doc);
  REQUIRE(doc->entries.size() == 3);
  CHECK(doc->entries[2].md->length == 1u);
  CHECK(doc->entries[2].extra_elements.at(0).children.at(0).text == "nested");
  CHECK(doc->entries[1].line == 6);
}

TEST_CASE("every sitemap error code has its own message", "[sitemap][errc]") {
  CHECK(std::string(sitemap_category().name()) == "shardsync.sitemap");
  std::set<std::string> messages;
  for (int value = static_cast<int>(errc::malformed_xml); value <= static_cast<int>(errc::io_error);
       ++value) {
    const std::error_code code = make_error_code(static_cast<errc>(value));
    CAPTURE(value);
    CHECK(code.message() != "unknown shardsync.sitemap error");
    messages.insert(code.message());
  }
  CHECK(messages.size() == static_cast<std::size_t>(errc::io_error));
}
