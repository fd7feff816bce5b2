// Hostile inputs from RELIABILITY.md §1.2–1.3: each must fail with a clear, specific error
// in bounded time and memory.

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <functional>

#include "shardsync/sitemap/errc.hpp"
#include "shardsync/sitemap/parser.hpp"

using namespace shardsync::sitemap;

namespace {

const std::string kRoot =
    "<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\" "
    "xmlns:rs=\"http://www.openarchives.org/rs/terms/\">\n";

errc code_of(const shardsync::Error& e) { return static_cast<errc>(e.code.value()); }

// Parses `bytes` and returns the error; fails the test if parsing succeeded.
shardsync::Error parse_error(const std::string& bytes, const ParseOptions& options = {}) {
  auto doc = parse_document(bytes, options);
  REQUIRE_FALSE(doc);
  return doc.error();
}

// Runs `work` in a forked child and returns how much the child's peak RSS grew beyond the
// parent's RSS at fork time, in MiB (ru_maxrss of the child starts at the inherited RSS).
double child_peak_growth_mib(const std::function<bool()>& work) {
  struct rusage self {};
  getrusage(RUSAGE_SELF, &self);
  const pid_t pid = fork();
  if (pid == 0) _exit(work() ? 0 : 1);
  int status = 0;
  struct rusage child {};
  REQUIRE(wait4(pid, &status, 0, &child) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  // The child's maxrss counts pages it touched; a fork shares the parent's, so subtract them.
  const long baseline = self.ru_maxrss;
  return static_cast<double>(std::max(0L, child.ru_maxrss - baseline)) / 1024.0;
}

std::string gzip_of_spaces(std::size_t n, const std::string& prefix) {
  z_stream z{};
  deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY);
  std::string out(1 << 20, '\0');
  std::string in = prefix;
  const std::string spaces(1 << 20, ' ');
  std::size_t produced = 0;
  auto pump = [&](const std::string& chunk, int flush) {
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(chunk.data()));
    z.avail_in = static_cast<uInt>(chunk.size());
    do {
      if (out.size() - produced < (1 << 16)) out.resize(out.size() * 2);
      z.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
      z.avail_out = static_cast<uInt>(out.size() - produced);
      deflate(&z, flush);
      produced = out.size() - z.avail_out;
    } while (z.avail_in > 0 || (flush == Z_FINISH && z.avail_out == 0));
  };
  pump(in, Z_NO_FLUSH);
  for (std::size_t done = 0; done < n; done += spaces.size()) pump(spaces, Z_NO_FLUSH);
  pump(std::string(), Z_FINISH);
  deflateEnd(&z);
  out.resize(produced);
  return out;
}

}  // namespace

TEST_CASE("DOCTYPE, entity bombs and external entities are refused up front",
          "[sitemap][hostile]") {
  const std::string laughs =
      "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n <!ENTITY lol \"lol\">\n"
      " <!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
      " <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n]>\n" +
      kRoot + "<url><loc>&lol3;</loc></url></urlset>";
  const auto start = std::chrono::steady_clock::now();
  auto e = parse_error(laughs);
  CHECK(code_of(e) == errc::doctype_refused);
  CHECK(e.detail.starts_with("line 2: "));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(100));

  auto xxe = parse_error("<!DOCTYPE x SYSTEM \"http://127.0.0.1:9/evil.dtd\">" + kRoot +
                         "<url><loc>&ext;</loc></url></urlset>");
  CHECK(code_of(xxe) == errc::doctype_refused);

  // Without a DOCTYPE an entity reference is simply undefined.
  auto undefined = parse_error(kRoot + "<url><loc>http://e/&lol;</loc></url></urlset>");
  CHECK(code_of(undefined) == errc::malformed_xml);
  CHECK(undefined.detail.find("&lol;") != std::string::npos);

  auto inner = parse_error(kRoot + "<url><!DOCTYPE x><loc>http://e/</loc></url></urlset>");
  CHECK(code_of(inner) == errc::doctype_refused);
}

TEST_CASE("character references to forbidden characters are refused", "[sitemap][hostile]") {
  const std::string ref = GENERATE("&#0;", "&#x0;", "&#x1F;", "&#xD800;", "&#xFFFE;", "&#x110000;",
                                   "&#;", "&#xZZ;", "& ", "&amp");
  CAPTURE(ref);
  auto e = parse_error(kRoot + "<url><loc>http://e/" + ref + "</loc></url></urlset>");
  CHECK(code_of(e) == errc::malformed_xml);
  CHECK(e.detail.starts_with("line 2: "));
  // The same inside an attribute value.
  auto in_attribute =
      parse_error(kRoot + "<url><loc>http://e/</loc><rs:md type=\"" + ref + "\"/></url></urlset>");
  CHECK(code_of(in_attribute) == errc::malformed_xml);
}

TEST_CASE("valid character references are decoded", "[sitemap][hostile]") {
  auto doc = parse_document(
      kRoot + "<url><loc>http://e/&#x41;&#66;&lt;&gt;&apos;&quot;</loc></url></urlset>");
  REQUIRE(doc);
  CHECK(doc->entries.at(0).loc == "http://e/AB<>'\"");
}

TEST_CASE("invalid UTF-8 and forbidden raw characters are refused", "[sitemap][hostile]") {
  const std::string bytes = GENERATE(
      std::string("\xC0\xAE"), std::string("\xE0\x80\xAE"), std::string("\x80"),
      std::string("\xED\xA0\x80"), std::string("\xF4\x90\x80\x80"), std::string("\xEF\xBF\xBE"),
      std::string(1, '\0'), std::string("\x1B"), std::string("\xE2\x82"));
  auto e = parse_error(kRoot + "<url>\n<loc>http://e/" + bytes + "</loc></url></urlset>");
  CHECK(code_of(e) == errc::invalid_utf8);
  CHECK(e.detail.starts_with("line 3: "));
}

TEST_CASE("multi-byte UTF-8 split across read blocks is fine", "[sitemap][hostile]") {
  std::string xml = kRoot;
  while (xml.size() < 300 * 1024)
    xml += "<url><loc>http://e/\xE2\x98\x83\xF0\x9F\x98\x80</loc></url>\n";
  xml += "</urlset>";
  auto doc = parse_document(xml);
  REQUIRE(doc);
  CHECK(doc->entries.back().loc == "http://e/\xE2\x98\x83\xF0\x9F\x98\x80");
}

TEST_CASE("deep nesting stops at the depth limit quickly", "[sitemap][hostile]") {
  std::string xml = kRoot + "<url><loc>http://e/</loc>";
  xml.reserve(xml.size() + 8'000'000);
  for (int i = 0; i < 1'000'000; ++i) xml += "<x:a xmlns:x=\"u\">";
  const auto start = std::chrono::steady_clock::now();
  auto e = parse_error(xml);
  CHECK(code_of(e) == errc::limit_exceeded);
  CHECK(e.detail.find("nested deeper than 32") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
}

TEST_CASE("a 10 MB attribute hits the entry size limit", "[sitemap][hostile]") {
  const std::string huge(10'000'000, 'a');
  auto e =
      parse_error(kRoot + "<url><loc>http://e/</loc><rs:md type=\"" + huge + "\"/></url></urlset>");
  CHECK(code_of(e) == errc::limit_exceeded);
  CHECK(e.detail.starts_with("line 2: "));

  auto on_root = parse_error("<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\" x=\"" +
                             huge + "\"></urlset>");
  CHECK(code_of(on_root) == errc::limit_exceeded);

  auto huge_loc = parse_error(kRoot + "<url><loc>http://e/" + huge + "</loc></url></urlset>");
  CHECK(code_of(huge_loc) == errc::limit_exceeded);
}

TEST_CASE("too many attributes, duplicates and several roots are refused", "[sitemap][hostile]") {
  std::string many = kRoot + "<url><loc>http://e/</loc><rs:md";
  for (int i = 0; i < 100; ++i) many += " a" + std::to_string(i) + "=\"1\"";
  many += "/></url></urlset>";
  CHECK(code_of(parse_error(many)) == errc::limit_exceeded);

  auto dup = parse_error(
      kRoot + "<url><loc>http://e/</loc>\n<rs:md length=\"1\" length=\"2\"/></url></urlset>");
  CHECK(code_of(dup) == errc::duplicate_attribute);
  CHECK(dup.detail.starts_with("line 3: "));

  auto dup_ns = parse_error(kRoot +
                            "<url xmlns:a=\"http://x\" xmlns:b=\"http://x\"><loc>http://e/</loc>"
                            "<rs:md a:k=\"1\" b:k=\"2\"/></url></urlset>");
  CHECK(code_of(dup_ns) == errc::duplicate_attribute);

  auto two_roots = parse_error(kRoot + "</urlset>\n" + kRoot + "</urlset>");
  CHECK(code_of(two_roots) == errc::multiple_roots);
  CHECK(two_roots.detail.starts_with("line 3: "));

  auto text_after = parse_error(kRoot + "</urlset>trailing");
  CHECK(code_of(text_after) == errc::malformed_xml);
}

TEST_CASE("entry count and document size limits hold", "[sitemap][hostile]") {
  std::string xml = kRoot;
  for (int i = 0; i < 20; ++i) xml += "<url><loc>http://e/" + std::to_string(i) + "</loc></url>\n";
  xml += "</urlset>";
  ParseOptions options;
  options.limits.max_entries = 10;
  auto too_many = parse_error(xml, options);
  CHECK(code_of(too_many) == errc::limit_exceeded);
  CHECK(too_many.detail.find("more than 10 entries") != std::string::npos);

  options = {};
  options.limits.max_document_bytes = 200;
  CHECK(code_of(parse_error(xml, options)) == errc::limit_exceeded);
}

TEST_CASE("a truncated document is always an error, wherever it is cut", "[sitemap][hostile]") {
  const std::string xml =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" + kRoot +
      "<rs:md capability=\"resourcelist\" at=\"2013-01-03T09:00:00Z\"/>\n"
      "<!-- a comment -->\n"
      "<url><loc>http://example.com/r1</loc><lastmod>2013-01-02T13:00:00Z</lastmod>"
      "<rs:md hash=\"md5:1584abdf8ebdc9802ac0c6a7402c03b6\" length=\"8876\"/></url>\n"
      "<url><loc><![CDATA[http://example.com/r2]]></loc></url>\n"
      "</urlset>";
  const std::size_t end_tag = xml.rfind("</urlset>");
  for (std::size_t cut = 0; cut < end_tag + 8; ++cut) {
    CAPTURE(cut);
    auto doc = parse_document(xml.substr(0, cut));
    CHECK_FALSE(doc);
  }
  CHECK(parse_document(xml));
}

TEST_CASE("a gzip bomb stops at the size limit in bounded memory and time", "[sitemap][hostile]") {
  // 256 MiB of whitespace inside a valid root: about 250 KiB compressed.
  const std::string bomb = gzip_of_spaces(256u << 20, kRoot);
  REQUIRE(bomb.size() < (1u << 20));
  const auto start = std::chrono::steady_clock::now();
  const double growth = child_peak_growth_mib([&] {
    auto doc = parse_document(bomb);
    return !doc && code_of(doc.error()) == errc::limit_exceeded;
  });
#if defined(__SANITIZE_ADDRESS__)
  // Inflating 256 MiB under ASan on a loaded 2-core CI machine took 10.6 s once.
  const auto time_bound = std::chrono::seconds(30);
  const double bound = 160.0;  // ASan's shadow memory and quarantine
#else
  const auto time_bound = std::chrono::seconds(10);
  const double bound = 32.0;  // far below the 64 MiB the bomb would need without streaming
#endif
  CHECK(std::chrono::steady_clock::now() - start < time_bound);
  CHECK(growth < bound);
}

TEST_CASE("deep nesting inside complete entries is caught on the fast path too",
          "[sitemap][hostile]") {
  std::string xml = kRoot;
  for (int i = 0; i < 50; ++i) xml += "<url><loc>http://e/" + std::to_string(i) + "</loc></url>\n";
  xml += "<url><loc>http://e/deep</loc>";
  for (int i = 0; i < 40; ++i) xml += "<x:a xmlns:x=\"u\">";
  for (int i = 0; i < 40; ++i) xml += "</x:a>";
  xml += "</url>\n</urlset>\n";
  auto e = parse_error(xml);
  CHECK(code_of(e) == errc::limit_exceeded);
  CHECK(e.detail.starts_with("line 52: "));
}
