#include "shardsync/client/local_path.hpp"

#include <catch2/catch.hpp>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "shardsync/client/errc.hpp"

namespace shardsync::client {
namespace {

constexpr std::string_view kBase = "http://example.org/data/";

PathMapper make_mapper(std::vector<PathMapping> mappings) {
  auto mapper = PathMapper::create(std::move(mappings));
  REQUIRE(mapper);
  return std::move(*mapper);
}

PathMapper base_mapper() { return make_mapper({{std::string(kBase), ""}}); }

std::string under_base(std::string_view rest) { return std::string(kBase) + std::string(rest); }

// The errc of a refusal, or a failed check when the URL was accepted.
errc refusal(const PathMapper& mapper, std::string_view url) {
  const auto path = mapper.local_path(url);
  INFO("url: " << url);
  if (path) FAIL_CHECK("accepted as " << *path);
  REQUIRE_FALSE(path);
  REQUIRE(path.error().code.category() == client_category());
  return static_cast<errc>(path.error().code.value());
}

std::string accepted(const PathMapper& mapper, std::string_view url) {
  const auto path = mapper.local_path(url);
  INFO("url: " << url);
  if (!path) FAIL_CHECK("refused: " << path.error().describe());
  REQUIRE(path);
  return *path;
}

}  // namespace

TEST_CASE("URLs under the source prefix map to their decoded relative path", "[client][paths]") {
  const auto mapper = base_mapper();
  const auto [rest, expected] = GENERATE(table<std::string, std::string>({
      {"a.bin", "a.bin"},
      {"a/b/c.bin", "a/b/c.bin"},
      {"a%20b.bin", "a b.bin"},
      {"caf%C3%A9.txt", "caf\xC3\xA9.txt"},
      {"caf\xC3\xA9.txt", "caf\xC3\xA9.txt"},
      {"%F0%9F%98%80", "\xF0\x9F\x98\x80"},
      {"%7e/x", "~/x"},
      {"~/x", "~/x"},
      {"C:", "C:"},
      {"...", "..."},
      {".hidden", ".hidden"},
      {"shardsync", "shardsync"},
      {"x.shardsync", "x.shardsync"},
      {".shardsyn", ".shardsyn"},
      {"a%25b", "a%b"},
  }));
  CHECK(accepted(mapper, under_base(rest)) == expected);
}

TEST_CASE("raw dot-dot and dot segments are refused before any I/O", "[client][paths]") {
  const auto mapper = base_mapper();
  const std::string rest = GENERATE(as<std::string>{}, "../../home/u/.bashrc", "..", "a/../b",
                                    "a/..", "./a", "a/./b", "a/.", ".");
  CHECK(refusal(mapper, under_base(rest)) == errc::unsafe_path);
}

TEST_CASE("a URL leaving the prefix through dot-dot is not normalised back into it",
          "[client][paths]") {
  const auto mapper = base_mapper();
  // A normalising client would read this as /data/x; we take the path as written.
  CHECK(refusal(mapper, "http://example.org/other/../data/x") == errc::outside_source);
  CHECK(refusal(mapper, "http://example.org/data/../data/x") == errc::unsafe_path);
}

TEST_CASE("encoded traversal, separators and malformed escapes are refused", "[client][paths]") {
  const auto mapper = base_mapper();
  const std::string rest =
      GENERATE(as<std::string>{}, "%2e%2e/x", "%2E%2E/x", ".%2e/x", "%2e./x", "%2e", "a/%2e%2e",
               "a%2fb", "a%2F..%2Fb", "%2f", "..%2f..%2fetc%2fpasswd", "%5c", "a%5c..%5cb", "%00",
               "a%00.bin", "%%32%65%%32%65/x", "%", "a%4", "%zz", "a%2");
  CHECK(refusal(mapper, under_base(rest)) == errc::unsafe_path);
}

TEST_CASE("a double-encoded name is decoded once and stays a harmless literal", "[client][paths]") {
  const auto mapper = base_mapper();
  // "%252e%252e" is a file literally named "%2e%2e", never "..": decoding twice is the bug.
  CHECK(accepted(mapper, under_base("%252e%252e/x")) == "%2e%2e/x");
  CHECK(accepted(mapper, under_base("a%252fb")) == "a%2fb");
  CHECK(accepted(mapper, under_base("%255c")) == "%5c");
}

TEST_CASE("absolute and rooted forms are refused", "[client][paths]") {
  const auto mapper = base_mapper();
  SECTION("an empty segment after the prefix (\"//host/x\")") {
    CHECK(refusal(mapper, under_base("/host/x")) == errc::unsafe_path);
    CHECK(refusal(mapper, under_base("/etc/passwd")) == errc::unsafe_path);
  }
  SECTION("the prefix itself, with or without its slash") {
    CHECK(refusal(mapper, "http://example.org/data/") == errc::unsafe_path);
    CHECK(refusal(mapper, "http://example.org/data") == errc::unsafe_path);
  }
  SECTION("URLs that are not absolute http(s) URLs") {
    const std::string url = GENERATE(
        as<std::string>{}, "file:///etc/passwd", "//example.org/data/x", "/data/x", "data/x",
        "C:\\x", "\\\\host\\share", "~/x", "ftp://example.org/data/x", "", "http:/data/x");
    CHECK(refusal(mapper, url) == errc::outside_source);
  }
  SECTION("drive letters and backslashes inside a segment") {
    CHECK(refusal(mapper, under_base("C:%5cx")) == errc::unsafe_path);
    CHECK(refusal(mapper, under_base("C:\\x")) == errc::unsafe_path);
  }
}

TEST_CASE("a raw backslash anywhere in the path is refused", "[client][paths]") {
  const auto mapper = base_mapper();
  const std::string rest = GENERATE(as<std::string>{}, "a\\..\\b", "a\\b", "\\", "x\\");
  CHECK(refusal(mapper, under_base(rest)) == errc::unsafe_path);
}

TEST_CASE("control characters, raw or encoded, are refused", "[client][paths]") {
  const auto mapper = base_mapper();
  const std::string rest = GENERATE(
      std::string("a%00b"), std::string("a%0ab"), std::string("a%0db"), std::string("a%09"),
      std::string("%1f"), std::string("%7f"), std::string("a\rb"), std::string("a\nb"),
      std::string("a\x7f"), std::string("a\x01"), std::string("a\0b", 3),
      std::string("%c2%85"),  // NEL, a C1 control
      std::string("%c2%9b"));
  CHECK(refusal(mapper, under_base(rest)) == errc::unsafe_path);
}

TEST_CASE("error details never echo control characters from the URL", "[client][paths]") {
  const auto mapper = base_mapper();
  for (const char* url : {"http://example.org/data/a%0d%0aX-Injected: 1",
                          "http://exa\r\nmple.org/data/a", "http://example.org/data/a?\r\n"}) {
    const auto path = mapper.local_path(url);
    REQUIRE_FALSE(path);
    CHECK(path.error().detail.find_first_of("\r\n") == std::string::npos);
  }
}

TEST_CASE("invalid and overlong UTF-8 is refused", "[client][paths]") {
  const auto mapper = base_mapper();
  const std::string rest =
      GENERATE(as<std::string>{}, "%c0%ae",  // overlong '.'
               "%c0%ae%c0%ae",               // overlong ".."
               "%c0%af",                     // overlong '/'
               "%c1%bf", "%e0%80%ae", "%f0%80%80%ae",
               "%ed%a0%80",    // surrogate U+D800
               "%ed%bf%bf",    // surrogate U+DFFF
               "%f4%90%80%80"  // above U+10FFFF
               ,
               "%ff", "%fe", "%80", "a%bf", "%c3", "%e2%82", "%f8%88%80%80%80", "\xc0\xae", "\xff");
  CHECK(refusal(mapper, under_base(rest)) == errc::unsafe_path);
}

TEST_CASE("invisible code points that make look-alike names are refused", "[client][paths]") {
  const auto mapper = base_mapper();
  const std::string rest = GENERATE(as<std::string>{}, "a%e2%80%8bb",  // ZERO WIDTH SPACE
                                    "%e2%80%8c.shardsync", "a%e2%80%8d", "%e2%80%ae",
                                    "%ef%bb%bfa",  // BOM
                                    "%e2%81%a0");
  CHECK(refusal(mapper, under_base(rest)) == errc::unsafe_path);
}

TEST_CASE("segment, path and depth limits are enforced", "[client][paths]") {
  const auto mapper = base_mapper();
  SECTION("a segment may have 255 bytes, not 256") {
    CHECK(accepted(mapper, under_base(std::string(255, 'x'))) == std::string(255, 'x'));
    CHECK(refusal(mapper, under_base(std::string(256, 'x'))) == errc::unsafe_path);
  }
  SECTION("the limit counts decoded bytes") {
    std::string encoded;
    for (int i = 0; i < 255; ++i) encoded += "%41";
    CHECK(accepted(mapper, under_base(encoded)) == std::string(255, 'A'));
    CHECK(refusal(mapper, under_base(encoded + "%41")) == errc::unsafe_path);
    // Multi-byte characters count in bytes: 128 × 2 bytes = 256.
    std::string wide;
    for (int i = 0; i < 128; ++i) wide += "%c3%a9";
    CHECK(refusal(mapper, under_base(wide)) == errc::unsafe_path);
  }
  SECTION("a path may have 4,096 bytes, not more") {
    std::string path;
    for (int i = 0; i < 17; ++i) path += (i ? "/" : "") + std::string(240, 'p');
    REQUIRE(path.size() == 4096);
    CHECK(accepted(mapper, under_base(path)) == path);
    CHECK(refusal(mapper, under_base(path + "q")) == errc::unsafe_path);
  }
  SECTION("depth 64 is accepted, 65 refused, counting the local directory") {
    std::string path = "d";
    for (int i = 1; i < 64; ++i) path += "/d";
    CHECK(accepted(mapper, under_base(path)) == path);
    CHECK(refusal(mapper, under_base(path + "/d")) == errc::unsafe_path);
    const auto nested = make_mapper({{std::string(kBase), "local"}});
    CHECK(refusal(nested, under_base(path)) == errc::unsafe_path);
  }
}

TEST_CASE("the client's reserved names are refused in any case or spelling", "[client][paths]") {
  const auto mapper = base_mapper();
  const std::string rest = GENERATE(
      as<std::string>{}, ".shardsync", ".shardsync/state.json", ".shardsync-part-0123456789abcdef",
      "a/.shardsync-part-0123456789abcdef", ".ShardSync", ".SHARDSYNC", ".sHaRdSyNc-x",
      "%2eshardsync", ".%73hardsync", "%2E%53%48%41%52%44%53%59%4E%43",
      ".%c5%bfhardsync",  // U+017F LONG S case-folds to 's'
      "a/b/.shardsync");
  CHECK(refusal(mapper, under_base(rest)) == errc::unsafe_path);
}

TEST_CASE("is_reserved_name folds ASCII case and long s only", "[client][paths]") {
  CHECK(is_reserved_name(".shardsync"));
  CHECK(is_reserved_name(".shardsync-part-1"));
  CHECK(is_reserved_name(".SHARDSYNC.tmp"));
  CHECK(is_reserved_name(".\xC5\xBFhard\xC5\xBFync"));
  CHECK_FALSE(is_reserved_name(""));
  CHECK_FALSE(is_reserved_name(".shardsyn"));
  CHECK_FALSE(is_reserved_name("shardsync"));
  CHECK_FALSE(is_reserved_name("a.shardsync"));
  CHECK_FALSE(is_reserved_name("..shardsync"));
}

TEST_CASE("forms that would map two resources onto one file are refused", "[client][paths]") {
  const auto mapper = base_mapper();
  const std::string rest = GENERATE(as<std::string>{}, "a?x=1", "a?x=2", "a?", "a#frag", "a#",
                                    "a?x#y", "a/", "a//b", "a/./b", "a/b/", "a%3fx=1/..");
  CHECK(refusal(mapper, under_base(rest)) == errc::unsafe_path);
}

TEST_CASE("two URLs map to one path only when they are spellings of one URL", "[client][paths]") {
  // map(a) == map(b) implies canonical(a) == canonical(b): the second field names the
  // canonical URL (scheme and host case, default port and percent-encoding normalised).
  const auto mapper = base_mapper();
  const std::vector<std::pair<std::string, int>> urls = {
      {"http://example.org/data/ab", 1},
      {"http://example.org/data/a%62", 1},
      {"HTTP://EXAMPLE.ORG/data/ab", 1},
      {"http://example.org:80/data/ab", 1},
      {"http://example.org/d%61ta/ab", 1},
      {"http://example.org/data/Ab", 2},
      // Decoding once makes "%2C" and "," one name, although RFC 3986 keeps reserved
      // characters and their escapes apart; a source that served both would collide.
      {"http://example.org/data/a%2Cb", 3},
      {"http://example.org/data/a,b", 3},
      {"http://example.org/data/a/b", 4},
      {"http://example.org/data/a%252fb", 5},
      {"http://example.org/data/a%25252fb", 6},
      {"http://example.org/data/a%20b", 7},
      {"http://example.org/data/a+b", 8},
  };
  for (std::size_t i = 0; i < urls.size(); ++i) {
    for (std::size_t j = i + 1; j < urls.size(); ++j) {
      const auto a = mapper.local_path(urls[i].first);
      const auto b = mapper.local_path(urls[j].first);
      REQUIRE(a);
      REQUIRE(b);
      INFO(urls[i].first << " vs " << urls[j].first);
      CHECK((*a == *b) == (urls[i].second == urls[j].second));
    }
  }
}

TEST_CASE("URLs from another scheme, host, port or path are outside the source",
          "[client][paths]") {
  const auto mapper = base_mapper();
  const std::string url =
      GENERATE(as<std::string>{},
               "https://example.org/data/a",          // other scheme
               "http://example.org:8080/data/a",      // other port
               "http://example.org:443/data/a",       //
               "http://exampleXorg/data/a",           // a regex '.' would match this
               "http://example.org.evil.com/data/a",  //
               "http://evil.com/example.org/data/a",  //
               "http://Example.Org./data/a",          // trailing-dot host spelling
               "http://ex%61mple.org/data/a",         //
               "http://example.org/database/a",       // prefix must end at a segment
               "http://example.org/Data/a",           // paths are case-sensitive
               "http://example.org/a",                //
               "http://example.org:65536/data/a", "http://example.org:-1/data/a",
               "http://example.org:8o/data/a", "http://example.org:0/data/a", "http://:80/data/a",
               "http:///data/a");
  CHECK(refusal(mapper, url) == errc::outside_source);
}

TEST_CASE("userinfo in a URL is refused whatever the host", "[client][paths]") {
  const auto mapper = base_mapper();
  const std::string url = GENERATE(
      as<std::string>{}, "http://user@example.org/data/a", "http://user:pw@example.org/data/a",
      "http://example.org@evil.com/data/a", "http://user;x@example.org/data/a",
      "http://:@example.org/data/a", "http://@example.org/data/a",
      "http://example.org\\@evil.com/data/a", "http://example.org\\.evil.com/data/a");
  CHECK(refusal(mapper, url) == errc::outside_source);
}

TEST_CASE("scheme and host case and default ports are normalised", "[client][paths]") {
  const auto mapper = base_mapper();
  for (const char* url :
       {"HTTP://example.org/data/a", "http://EXAMPLE.org/data/a", "http://example.org:80/data/a",
        "http://example.org:/data/a", "http://example.org:0080/data/a"}) {
    CHECK(accepted(mapper, url) == "a");
  }
  const auto secure = make_mapper({{"HTTPS://Example.ORG:443/Data/", ""}});
  CHECK(accepted(secure, "https://example.org/Data/a") == "a");
  CHECK(refusal(secure, "https://example.org/data/a") == errc::outside_source);
  const auto v6 = make_mapper({{"http://[::1]:8080/d/", ""}});
  CHECK(accepted(v6, "http://[::1]:8080/d/x") == "x");
  CHECK(refusal(v6, "http://[::1]/d/x") == errc::outside_source);
  CHECK(refusal(v6, "http://[::2]:8080/d/x") == errc::outside_source);
}

TEST_CASE("the longest mapped prefix wins whatever the order given", "[client][paths]") {
  std::vector<PathMapping> mappings = {{"http://example.org/data/", ""},
                                       {"http://example.org/data/big/", "bulk"},
                                       {"http://mirror.example.org/", "mirror/all"}};
  const bool reversed = GENERATE(false, true);
  if (reversed) std::reverse(mappings.begin(), mappings.end());
  const auto mapper = make_mapper(mappings);
  CHECK(accepted(mapper, "http://example.org/data/big/x") == "bulk/x");
  CHECK(accepted(mapper, "http://example.org/data/big/y/z") == "bulk/y/z");
  CHECK(accepted(mapper, "http://example.org/data/bigger/x") == "bigger/x");
  CHECK(accepted(mapper, "http://example.org/data/x") == "x");
  CHECK(accepted(mapper, "http://mirror.example.org/y") == "mirror/all/y");
  CHECK(refusal(mapper, "http://example.org/data/big/") == errc::unsafe_path);
}

TEST_CASE("mappings that cannot be used are invalid options", "[client][paths]") {
  const auto [prefix, local_dir] = GENERATE(table<std::string, std::string>({
      {"ftp://example.org/", ""},
      {"http://example.org/data", ""},
      {"http://example.org", ""},
      {"example.org/data/", ""},
      {"", ""},
      {"http://user@example.org/", ""},
      {"http://example.org/a?x/", ""},
      {"http://example.org/#/", ""},
      {"http://example.org/../", ""},
      {"http://example.org/./", ""},
      {"http://example.org//", ""},
      {"http://example.org/a%2fb/", ""},
      {"http://example.org/a%zz/", ""},
      {"http://example.org:99999/", ""},
      {"http://example.org/", "/abs"},
      {"http://example.org/", "../x"},
      {"http://example.org/", "a/../b"},
      {"http://example.org/", ".shardsync"},
      {"http://example.org/", "a/.ShardSync-x"},
      {"http://example.org/", "a//b"},
      {"http://example.org/", "a/"},
      {"http://example.org/", "a\\b"},
  }));
  INFO(prefix << " -> '" << local_dir << "'");
  const auto mapper = PathMapper::create({{prefix, local_dir}});
  REQUIRE_FALSE(mapper);
  CHECK(mapper.error().code == make_error_code(errc::invalid_options));
}

TEST_CASE("an empty mapping list and a prefix mapped twice are invalid options",
          "[client][paths]") {
  CHECK(PathMapper::create({}).error().code == make_error_code(errc::invalid_options));
  const auto twice = PathMapper::create(
      {{"http://example.org/data/", "a"}, {"HTTP://Example.org:80/d%61ta/", "b"}});
  REQUIRE_FALSE(twice);
  CHECK(twice.error().code == make_error_code(errc::invalid_options));
}

TEST_CASE("a mapping's local directory prefixes the mapped path", "[client][paths]") {
  const auto mapper = make_mapper({{"http://example.org/", "sub/dir"}});
  CHECK(accepted(mapper, "http://example.org/x/y.bin") == "sub/dir/x/y.bin");
  CHECK(refusal(mapper, "http://example.org/") == errc::unsafe_path);
}

TEST_CASE("collision keys alias exactly the names a case-insensitive file system would",
          "[client][paths]") {
  CHECK(collision_key("Model.bin") == collision_key("model.bin"));
  CHECK(collision_key("a/B/c") == collision_key("A/b/C"));
  CHECK(collision_key("a/b") != collision_key("a/c"));
  CHECK(collision_key("ab") != collision_key("a/b"));
  // Non-ASCII bytes pass through unchanged (no Unicode folding: see the header).
  CHECK(collision_key("caf\xC3\xA9") == "caf\xC3\xA9");
  for (const char* path : {"Model.BIN", "a/B", "x", ""}) {
    CHECK(collision_key(collision_key(path)) == collision_key(path));
  }
}

}  // namespace shardsync::client
