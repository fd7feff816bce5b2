#include "http_handler.hpp"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <tuple>

#include "http_test_site.hpp"

using namespace shardsync::server;
using namespace shardsync::server::detail;
using shardsync::test::TestSite;

namespace {

std::string header(const ResponsePlan& plan, std::string_view name) {
  std::string found;
  for (const auto& [n, v] : plan.headers) {
    if (n == name) found = v;
  }
  return found;
}

bool has_header(const ResponsePlan& plan, std::string_view name) {
  for (const auto& h : plan.headers) {
    if (h.first == name) return true;
  }
  return false;
}

std::string body_of(const ResponsePlan& plan) {
  switch (plan.source) {
    case BodySource::text:
      return plan.text;
    case BodySource::document:
      return std::string(plan.document_bytes);
    case BodySource::file: {
      std::string out(plan.content_length, '\0');
      const ssize_t n =
          ::pread(plan.file.get(), out.data(), out.size(), static_cast<off_t>(plan.file_offset));
      REQUIRE(n == static_cast<ssize_t>(out.size()));
      return out;
    }
    case BodySource::none:
      break;
  }
  return {};
}

struct Handler {
  TestSite test_site;
  HttpOptions options;
  Metrics metrics;
  std::shared_ptr<const Site> site;
  bool use_openat2 = true;

  void refresh() { site = test_site.snapshot(); }

  ResponsePlan get(std::string target, HttpRequest request = {}) {
    if (!site) refresh();
    if (request.method.empty()) request.method = "GET";
    request.target = target;
    HandlerContext context;
    context.options = &options;
    context.metrics = &metrics;
    context.now_s = 1'750'000'000;
    context.use_openat2 = use_openat2;
    return handle_request(request, site.get(), context);
  }
};

}  // namespace

TEST_CASE("target paths are decoded once and every segment is checked", "[http][handler]") {
  using Row = std::tuple<std::string, std::optional<std::string>>;
  const auto [target, expected] = GENERATE(table<std::string, std::optional<std::string>>({
      Row{"/ckpt/a/b.bin", "/ckpt/a/b.bin"},
      Row{"/ckpt/a%20b/c%23.bin", "/ckpt/a b/c#.bin"},
      Row{"/ckpt/x.bin?cache=1", "/ckpt/x.bin"},
      Row{"/.well-known/resourcesync", "/.well-known/resourcesync"},
      Row{"/ckpt/%252e%252e/x", "/ckpt/%2e%2e/x"},  // decoded once: a literal name
      Row{"http://example.org/ckpt/a", "/ckpt/a"},
      Row{"/", "/"},
      Row{"/..", std::nullopt},
      Row{"/ckpt/../etc/passwd", std::nullopt},
      Row{"/%2e%2e/etc/passwd", std::nullopt},
      Row{"/ckpt/%2E%2e/x", std::nullopt},
      Row{"/ckpt/a/..%2f..%2fetc", std::nullopt},
      Row{"/ckpt/a%2fb", std::nullopt},
      Row{"/ckpt/a%2Fb", std::nullopt},
      Row{"/ckpt/./a", std::nullopt},
      Row{"/ckpt/%2e/a", std::nullopt},
      Row{"/ckpt//a", std::nullopt},
      Row{"/ckpt/a/", std::nullopt},
      Row{"/ckpt/a%00b", std::nullopt},
      Row{"/ckpt/a%5cb", std::nullopt},
      Row{"/ckpt/a\\b", std::nullopt},
      Row{"/ckpt/a%0d%0aSet-Cookie:x", std::nullopt},
      Row{"/ckpt/a%7f", std::nullopt},
      Row{"/ckpt/foo%", std::nullopt},
      Row{"/ckpt/foo%zz", std::nullopt},
      Row{"ckpt/a", std::nullopt},
      Row{"*", std::nullopt},
  }));
  CAPTURE(target);
  CHECK(decode_target_path(target) == expected);
}

TEST_CASE("message framing that Beast 1.81 lets through is refused", "[http][handler]") {
  Framing ok;
  ok.host_fields = 1;
  CHECK_FALSE(check_framing(ok));

  Framing f = ok;
  SECTION("Transfer-Encoding not ending in chunked") {
    f.has_transfer_encoding = true;
    f.transfer_encoding = "gzip";
    CHECK(check_framing(f) == 400u);
    f.transfer_encoding = "chunked, identity";
    CHECK(check_framing(f) == 400u);
  }
  SECTION("chunked alone is fine, other codings before it are not implemented") {
    f.has_transfer_encoding = true;
    f.transfer_encoding = "Chunked";
    CHECK_FALSE(check_framing(f));
    f.transfer_encoding = "gzip, chunked";
    CHECK(check_framing(f) == 501u);
  }
  SECTION("Transfer-Encoding with Content-Length") {
    f.has_transfer_encoding = true;
    f.transfer_encoding = "chunked";
    f.has_content_length = true;
    CHECK(check_framing(f) == 400u);
  }
  SECTION("chunked in HTTP/1.0") {
    f.version = 10;
    f.has_transfer_encoding = true;
    f.transfer_encoding = "chunked";
    CHECK(check_framing(f) == 400u);
  }
  SECTION("Host missing in HTTP/1.1, optional in 1.0, never twice") {
    f.host_fields = 0;
    CHECK(check_framing(f) == 400u);
    f.version = 10;
    CHECK_FALSE(check_framing(f));
    f.host_fields = 2;
    CHECK(check_framing(f) == 400u);
  }
}

TEST_CASE("obs-fold in the raw header section is detected", "[http][handler]") {
  CHECK_FALSE(has_obs_fold("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
  CHECK(has_obs_fold("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"));
  CHECK(has_obs_fold("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n"));
}

TEST_CASE("single byte ranges are parsed with 64-bit care", "[http][handler]") {
  using K = RangeKind;
  struct Row {
    const char* header;
    std::uint64_t size;
    RangeKind kind;
    std::uint64_t first, length;
  };
  const Row row = GENERATE(values<Row>({
      {"bytes=0-9", 100, K::satisfiable, 0, 10},
      {"bytes=10-", 100, K::satisfiable, 10, 90},
      {"bytes=-10", 100, K::satisfiable, 90, 10},
      {"bytes=-1000", 100, K::satisfiable, 0, 100},
      {"bytes=90-1000", 100, K::satisfiable, 90, 10},
      {"bytes=18-18446744073709551615", 100, K::satisfiable, 18, 82},
      {"bytes=18-99999999999999999999999", 100, K::satisfiable, 18, 82},
      {"BYTES = 5-5", 100, K::satisfiable, 5, 1},
      {"bytes=4294967296-", 5'000'000'000, K::satisfiable, 4294967296, 705032704},
      {"bytes=100-", 100, K::unsatisfiable, 0, 0},
      {"bytes=99999999999999999999999-", 100, K::unsatisfiable, 0, 0},
      {"bytes=-0", 100, K::unsatisfiable, 0, 0},
      {"bytes=5-1", 100, K::none, 0, 0},
      {"bytes=alpha", 100, K::none, 0, 0},
      {"bytes=1-a", 100, K::none, 0, 0},
      {"bytes=+1-2", 100, K::none, 0, 0},
      {"bytes=0-1,5-6", 100, K::none, 0, 0},
      {"bytes=0-,0-,0-,0-", 100, K::none, 0, 0},
      {"items=0-1", 100, K::none, 0, 0},
      {"bytes=0-", 0, K::none, 0, 0},
  }));
  CAPTURE(row.header, row.size);
  const RangeResult r = parse_range(row.header, row.size);
  CHECK(r.kind == row.kind);
  if (row.kind == K::satisfiable) {
    CHECK(r.range.first == row.first);
    CHECK(r.range.length == row.length);
  }
}

TEST_CASE("HTTP dates are written as IMF-fixdate and read in all three forms", "[http][handler]") {
  CHECK(http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT");
  CHECK(http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT");
  CHECK(http_date(2147483648) == "Tue, 19 Jan 2038 03:14:08 GMT");
  CHECK(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777);
  CHECK(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == 784111777);
  CHECK(parse_http_date("Sun Nov  6 08:49:37 1994") == 784111777);
  CHECK(parse_http_date("Tue, 19 Jan 2038 03:14:08 GMT") == 2147483648);
  CHECK(parse_http_date("Fri, 01 Jan 2100 00:00:00 GMT") == 4102444800);
  CHECK_FALSE(parse_http_date("yesterday"));
  CHECK_FALSE(parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"));
  CHECK_FALSE(parse_http_date("Sun, 06 Nov 1994 25:49:37 GMT"));
  for (std::int64_t t : {0LL, 951782400LL, 1700000000LL, 4102444799LL}) {
    CHECK(parse_http_date(http_date(t)) == t);
  }
}

TEST_CASE("documents are compressed with zstd before gzip, by q-value", "[http][handler]") {
  CHECK(negotiate_coding("", true, true) == Coding::identity);
  CHECK(negotiate_coding("gzip", true, true) == Coding::gzip);
  CHECK(negotiate_coding("gzip, zstd", true, true) == Coding::zstd);
  CHECK(negotiate_coding("zstd;q=0.5, gzip", true, true) == Coding::gzip);
  CHECK(negotiate_coding("zstd;q=0, gzip;q=0", true, true) == Coding::identity);
  CHECK(negotiate_coding("*", true, true) == Coding::zstd);
  CHECK(negotiate_coding("*;q=0.5, zstd;q=0", true, true) == Coding::gzip);
  CHECK(negotiate_coding("zstd", true, false) == Coding::identity);
  CHECK(negotiate_coding("x-gzip", true, true) == Coding::gzip);
  CHECK(negotiate_coding("gzip;q=0.5, identity", true, true) == Coding::identity);
  CHECK(negotiate_coding("gzip;q=bad", true, true) == Coding::identity);
}

TEST_CASE("entity tags compare strongly or weakly", "[http][handler]") {
  CHECK(etag_list_matches("\"a\"", "\"a\"", false));
  CHECK(etag_list_matches("\"x\", \"a\"", "\"a\"", false));
  CHECK(etag_list_matches("*", "\"a\"", false));
  CHECK_FALSE(etag_list_matches("W/\"a\"", "\"a\"", false));
  CHECK(etag_list_matches("W/\"a\"", "\"a\"", true));
  CHECK_FALSE(etag_list_matches("\"b\"", "\"a\"", true));
  CHECK_FALSE(etag_list_matches("garbage", "\"a\"", true));
}

TEST_CASE("secrets are compared in constant time whatever their length", "[http][handler]") {
  CHECK(secrets_equal("s3cret", "s3cret"));
  CHECK_FALSE(secrets_equal("s3cret", "s3cre"));
  CHECK_FALSE(secrets_equal("s3cret", "s3creT"));
  CHECK_FALSE(secrets_equal("", "x"));
}

TEST_CASE("documents carry validators, caching and encoding headers", "[http][handler]") {
  Handler h;
  h.test_site.add_standard_documents();
  const auto& doc = *h.test_site.site().documents.at("/ckpt/.resourcesync/resourcelist.xml");

  SECTION("identity") {
    const ResponsePlan plan = h.get("/ckpt/.resourcesync/resourcelist.xml");
    CHECK(plan.status == 200);
    CHECK(body_of(plan) == doc.body);
    CHECK(plan.content_length == doc.body.size());
    CHECK(header(plan, "Content-Type") == "application/xml");
    CHECK(header(plan, "ETag") == doc.etag);
    CHECK(header(plan, "Last-Modified") == http_date(doc.last_modified_s));
    CHECK(header(plan, "Cache-Control") == "no-cache");
    CHECK(header(plan, "Vary") == "Accept-Encoding");
    CHECK_FALSE(has_header(plan, "Content-Encoding"));
    CHECK(header(plan, "Date") == http_date(1'750'000'000));
  }
  SECTION("zstd and gzip are separate representations with their own ETags") {
    HttpRequest r;
    r.accept_encoding = "gzip, zstd";
    const ResponsePlan z = h.get("/ckpt/.resourcesync/resourcelist.xml", r);
    CHECK(header(z, "Content-Encoding") == "zstd");
    CHECK(body_of(z) == doc.zstd);
    r.accept_encoding = "gzip";
    const ResponsePlan g = h.get("/ckpt/.resourcesync/resourcelist.xml", r);
    CHECK(header(g, "Content-Encoding") == "gzip");
    CHECK(body_of(g) == doc.gzip);
    CHECK(header(g, "ETag") != header(z, "ETag"));
    CHECK(header(g, "ETag") != doc.etag);
    CHECK(header(g, "Vary") == "Accept-Encoding");
  }
  SECTION("a closed change list is immutable") {
    const ResponsePlan plan = h.get("/ckpt/.resourcesync/changelist-00001.xml");
    CHECK(header(plan, "Cache-Control") == "max-age=31536000, immutable");
    const ResponsePlan open = h.get("/ckpt/.resourcesync/changelist-00002.xml");
    CHECK(header(open, "Cache-Control") == "no-cache");
  }
  SECTION("If-None-Match and If-Modified-Since give 304 without a body") {
    HttpRequest r;
    r.if_none_match = doc.etag;
    ResponsePlan plan = h.get("/ckpt/.resourcesync/resourcelist.xml", r);
    CHECK(plan.status == 304);
    CHECK_FALSE(plan.send_body);
    CHECK(header(plan, "ETag") == doc.etag);
    CHECK(header(plan, "Vary") == "Accept-Encoding");
    CHECK(serialize_head(plan, true, 11).find("Content-Length") == std::string::npos);
    r = {};
    // HttpRequest holds views: the strings must outlive the call.
    const std::string same = http_date(doc.last_modified_s);
    const std::string before = http_date(doc.last_modified_s - 1);
    r.if_modified_since = same;
    CHECK(h.get("/ckpt/.resourcesync/resourcelist.xml", r).status == 304);
    r.if_modified_since = before;
    CHECK(h.get("/ckpt/.resourcesync/resourcelist.xml", r).status == 200);
    // If-None-Match wins over If-Modified-Since.
    r.if_none_match = "\"other\"";
    r.if_modified_since = same;
    CHECK(h.get("/ckpt/.resourcesync/resourcelist.xml", r).status == 200);
  }
  SECTION("the gzip ETag does not validate the identity representation") {
    HttpRequest r;
    r.accept_encoding = "gzip";
    const std::string gzip_tag = header(h.get("/ckpt/.resourcesync/resourcelist.xml", r), "ETag");
    HttpRequest plain;
    plain.if_none_match = gzip_tag;
    CHECK(h.get("/ckpt/.resourcesync/resourcelist.xml", plain).status == 200);
  }
  SECTION("HEAD: the same headers, no body") {
    HttpRequest r;
    r.method = "HEAD";
    const ResponsePlan plan = h.get("/ckpt/.resourcesync/resourcelist.xml", r);
    CHECK(plan.status == 200);
    CHECK_FALSE(plan.send_body);
    CHECK(plan.content_length == doc.body.size());
    CHECK(
        serialize_head(plan, true, 11).find("Content-Length: " + std::to_string(doc.body.size())) !=
        std::string::npos);
  }
  SECTION("a range of a document") {
    HttpRequest r;
    r.range = "bytes=0-4";
    const ResponsePlan plan = h.get("/ckpt/.resourcesync/resourcelist.xml", r);
    CHECK(plan.status == 206);
    CHECK(body_of(plan) == "<?xml");
    CHECK(header(plan, "Content-Range") == "bytes 0-4/" + std::to_string(doc.body.size()));
  }
  SECTION("the Source Description") { CHECK(h.get("/.well-known/resourcesync").status == 200); }
}

TEST_CASE("resources are served from the collection with ranges and validators",
          "[http][handler]") {
  Handler h;
  h.test_site.add_standard_documents();
  const std::string bytes = "0123456789abcdefghij";
  const ServedResource& res = h.test_site.add_file("shards/a b.bin", bytes, "application/x-test");
  const std::string target = "/ckpt/shards/a%20b.bin";
  const std::int64_t lm = res.state.mtime_ns / 1'000'000'000;

  SECTION("200 with every header") {
    const ResponsePlan plan = h.get(target);
    REQUIRE(plan.status == 200);
    CHECK(body_of(plan) == bytes);
    CHECK(plan.source == BodySource::file);
    CHECK(plan.content_length == bytes.size());
    CHECK(header(plan, "Content-Type") == "application/x-test");
    CHECK(header(plan, "ETag") == res.etag);
    CHECK(header(plan, "Last-Modified") == http_date(lm));
    CHECK(header(plan, "Cache-Control") == "no-cache");
    CHECK(header(plan, "Accept-Ranges") == "bytes");
    CHECK(header(plan, "Link") ==
          "<http://127.0.0.1:8080/ckpt/capabilitylist.xml>; rel=\"resourcesync\"");
    CHECK_FALSE(has_header(plan, "Vary"));
    CHECK_FALSE(has_header(plan, "Content-Encoding"));
  }
  SECTION("resources are never re-encoded") {
    HttpRequest r;
    r.accept_encoding = "zstd, gzip";
    const ResponsePlan plan = h.get(target, r);
    CHECK(body_of(plan) == bytes);
    CHECK_FALSE(has_header(plan, "Content-Encoding"));
  }
  SECTION("ranges") {
    HttpRequest r;
    r.range = "bytes=2-5";
    ResponsePlan plan = h.get(target, r);
    CHECK(plan.status == 206);
    CHECK(body_of(plan) == "2345");
    CHECK(header(plan, "Content-Range") == "bytes 2-5/20");
    r.range = "bytes=-3";
    CHECK(body_of(h.get(target, r)) == "hij");
    r.range = "bytes=15-";
    CHECK(body_of(h.get(target, r)) == "fghij");
    r.range = "bytes=0-1,4-5";
    plan = h.get(target, r);
    CHECK(plan.status == 200);
    CHECK(body_of(plan) == bytes);
    r.range = "bytes=20-";
    plan = h.get(target, r);
    CHECK(plan.status == 416);
    CHECK(header(plan, "Content-Range") == "bytes */20");
  }
  SECTION("If-Range: a strong ETag or the exact date, else the whole file") {
    HttpRequest r;
    r.range = "bytes=2-5";
    r.if_range = res.etag;
    CHECK(h.get(target, r).status == 206);
    r.if_range = "\"something-else\"";
    CHECK(h.get(target, r).status == 200);
    const std::string weak = "W/" + res.etag;
    r.if_range = weak;
    CHECK(h.get(target, r).status == 200);
    const std::string date = http_date(lm);
    r.if_range = date;
    CHECK(h.get(target, r).status == 206);
    const std::string earlier = http_date(lm - 10);
    r.if_range = earlier;
    CHECK(h.get(target, r).status == 200);
  }
  SECTION("conditional requests") {
    HttpRequest r;
    const std::string weak = "W/" + res.etag;
    r.if_none_match = weak;
    CHECK(h.get(target, r).status == 304);
    r = {};
    const std::string date = http_date(lm);
    r.if_modified_since = date;
    CHECK(h.get(target, r).status == 304);
    r = {};
    r.if_match = "\"nope\"";
    CHECK(h.get(target, r).status == 412);
    r.if_match = res.etag;
    CHECK(h.get(target, r).status == 200);
  }
  SECTION("HEAD opens nothing to send but answers like GET") {
    HttpRequest r;
    r.method = "HEAD";
    const ResponsePlan plan = h.get(target, r);
    CHECK(plan.status == 200);
    CHECK_FALSE(plan.file.valid());
    CHECK(plan.content_length == bytes.size());
  }
  SECTION("a file changed after it was logged is not served") {
    shardsync::test::write_file(h.test_site.collection_dir() / "shards/a b.bin", "changed!");
    const ResponsePlan plan = h.get(target);
    CHECK(plan.status == 503);
    CHECK(header(plan, "Retry-After") == "1");
    CHECK(header(plan, "Cache-Control") == "no-store");
  }
  SECTION("a file deleted after it was logged is not served") {
    std::filesystem::remove(h.test_site.collection_dir() / "shards/a b.bin");
    CHECK(h.get(target).status == 503);
  }
  SECTION("unknown paths, methods and targets") {
    CHECK(h.get("/ckpt/nothing.bin").status == 404);
    CHECK(h.get("/").status == 404);
    CHECK(h.get("/other/capabilitylist.xml").status == 404);
    CHECK(h.get("/ckpt/%2e%2e/x").status == 400);
    HttpRequest r;
    r.method = "POST";
    ResponsePlan plan = h.get(target, r);
    CHECK(plan.status == 405);
    CHECK(header(plan, "Allow") == "GET, HEAD");
    r.method = "get";
    CHECK(h.get(target, r).status == 501);
    r.method = "PUT";
    CHECK(h.get(target, r).status == 405);
    r.method = "DELETE";
    CHECK(h.get(target, r).status == 405);
  }
  SECTION("error bodies never echo the target") {
    const ResponsePlan plan = h.get("/ckpt/%3Cscript%3E");
    CHECK(plan.status == 404);
    CHECK(body_of(plan).find("script") == std::string::npos);
    CHECK(header(plan, "Content-Type") == "text/plain; charset=utf-8");
  }
}

TEST_CASE("symlinks never lead out of the collection", "[http][handler]") {
  Handler h;
  h.use_openat2 = GENERATE(true, false);
  CAPTURE(h.use_openat2);
  shardsync::test::write_file(h.test_site.root() / "secret.txt", "top secret");
  std::filesystem::create_directories(h.test_site.root() / "outside");
  shardsync::test::write_file(h.test_site.root() / "outside/x.bin", "outside");
  const auto dir = h.test_site.collection_dir();
  std::filesystem::create_symlink(h.test_site.root() / "secret.txt", dir / "leak.txt");
  std::filesystem::create_symlink("../secret.txt", dir / "rel.txt");
  std::filesystem::create_symlink(h.test_site.root() / "outside", dir / "linked");
  h.test_site.add_file("inside.bin", "inside");
  std::filesystem::create_symlink("inside.bin", dir / "alias.bin");
  // The snapshot lists them as if they were files (as a swapped-in link would look).
  h.test_site.publish("leak.txt");
  h.test_site.publish("rel.txt");
  h.test_site.publish("linked/x.bin");
  h.test_site.publish("alias.bin");
  std::filesystem::create_directories(dir / "subdir");
  h.test_site.publish("subdir");
  ::mkfifo((dir / "fifo").c_str(), 0600);
  h.test_site.publish("fifo");

  CHECK(h.get("/ckpt/inside.bin").status == 200);
  for (const char* target : {"/ckpt/leak.txt", "/ckpt/rel.txt", "/ckpt/linked/x.bin",
                             "/ckpt/alias.bin", "/ckpt/subdir", "/ckpt/fifo"}) {
    CAPTURE(target);
    const ResponsePlan plan = h.get(target);
    CHECK(plan.status == 404);
    CHECK_FALSE(plan.file.valid());
  }
}

TEST_CASE("read tokens guard a collection; write hooks are refused when absent",
          "[http][handler]") {
  Handler h;
  h.test_site.add_standard_documents();
  h.test_site.add_file("a.bin", "data");
  h.options.read_tokens["ckpt"] = "reader-token";

  SECTION("reads") {
    ResponsePlan plan = h.get("/ckpt/a.bin");
    CHECK(plan.status == 401);
    CHECK(header(plan, "WWW-Authenticate") == "Bearer realm=\"shardsync\"");
    HttpRequest r;
    r.authorization = "Bearer wrong";
    CHECK(h.get("/ckpt/a.bin", r).status == 403);
    // 401 before 404: what exists is not revealed.
    CHECK(h.get("/ckpt/missing.bin", r).status == 403);
    r.authorization = "Basic cmVhZGVyLXRva2Vu";
    CHECK(h.get("/ckpt/a.bin", r).status == 401);
    r.authorization = "bearer  reader-token";
    plan = h.get("/ckpt/a.bin", r);
    CHECK(plan.status == 200);
    CHECK(header(plan, "Cache-Control") == "private, no-cache");
    CHECK(h.get("/ckpt/capabilitylist.xml", r).status == 200);
    // The Source Description and /metrics stay public.
    CHECK(h.get("/.well-known/resourcesync").status == 200);
    CHECK(h.get("/metrics").status == 200);
  }
  SECTION("writes") {
    HttpRequest r;
    r.method = "PUT";
    CHECK(h.get("/ckpt/new.bin", r).status == 405);
    h.options.publish.put =
        [](const PublishRequest&) -> shardsync::Result<std::unique_ptr<Upload>> { return nullptr; };
    h.options.publish.remove = [](const PublishRequest&) -> shardsync::Result<PublishReply> {
      return PublishReply{};
    };
    CHECK(h.get("/ckpt/new.bin", r).status == 403);  // no write token configured
    h.options.write_token = "writer";
    ResponsePlan plan = h.get("/ckpt/new.bin", r);
    CHECK(plan.status == 401);
    CHECK(has_header(plan, "WWW-Authenticate"));
    r.authorization = "Bearer reader-token";
    CHECK(h.get("/ckpt/new.bin", r).status == 403);
    r.authorization = "Bearer writer";
    CHECK(h.get("/ckpt/capabilitylist.xml", r).status == 403);
    CHECK(h.get("/ckpt/.resourcesync/x.xml", r).status == 403);
    CHECK(h.get("/nowhere/x.bin", r).status == 404);
    CHECK(h.get("/ckpt/%2e%2e/x.bin", r).status == 400);
    plan = h.get("/ckpt/dir/new.bin", r);
    REQUIRE(plan.publish);
    CHECK(plan.publish->collection == "ckpt");
    CHECK(plan.publish->path == "dir/new.bin");
    CHECK_FALSE(plan.publish_remove);
    r.method = "DELETE";
    plan = h.get("/ckpt/a.bin", r);
    REQUIRE(plan.publish);
    CHECK(plan.publish_remove);
  }
}

TEST_CASE("/metrics is Prometheus text", "[http][handler]") {
  Handler h;
  h.metrics.requests = 7;
  h.metrics.responses_2xx = 5;
  h.metrics.responses_4xx = 2;
  h.metrics.bytes_sent = 12345;
  h.metrics.changes = 3;
  h.metrics.hash_cache_hits = 4;
  h.metrics.connections_refused = 1;
  const ResponsePlan plan = h.get("/metrics");
  CHECK(plan.status == 200);
  CHECK(header(plan, "Content-Type") == "text/plain; version=0.0.4; charset=utf-8");
  const std::string text = body_of(plan);
  CHECK(text.find(
            "# TYPE shardsync_http_requests_total counter\nshardsync_http_requests_total 7\n") !=
        std::string::npos);
  CHECK(text.find("shardsync_http_responses_total{code=\"2xx\"} 5\n") != std::string::npos);
  CHECK(text.find("shardsync_http_responses_total{code=\"4xx\"} 2\n") != std::string::npos);
  CHECK(text.find("shardsync_http_sent_bytes_total 12345\n") != std::string::npos);
  CHECK(text.find("shardsync_changes_total 3\n") != std::string::npos);
  CHECK(text.find("shardsync_hash_cache_hits_total 4\n") != std::string::npos);
  CHECK(text.find("shardsync_http_connections_refused_total 1\n") != std::string::npos);
  CHECK(text.find("# TYPE shardsync_http_connections_open gauge") != std::string::npos);
}

TEST_CASE("no snapshot yet: 503 until the site is built", "[http][handler]") {
  HttpOptions options;
  HttpRequest r;
  r.method = "GET";
  r.target = "/.well-known/resourcesync";
  HandlerContext context;
  context.options = &options;
  const ResponsePlan plan = handle_request(r, nullptr, context);
  CHECK(plan.status == 503);
  CHECK(header(plan, "Retry-After") == "1");
}

TEST_CASE("response heads carry Content-Length and Connection as needed", "[http][handler]") {
  ResponsePlan plan = text_response(404, "not found", 0);
  const std::string head = serialize_head(plan, true, 11);
  CHECK(head.starts_with("HTTP/1.1 404 Not Found\r\n"));
  CHECK(head.find("Content-Length: 10\r\n") != std::string::npos);
  CHECK(head.find("Connection") == std::string::npos);
  CHECK(head.ends_with("\r\n\r\n"));
  CHECK(serialize_head(plan, false, 11).find("Connection: close\r\n") != std::string::npos);
  CHECK(serialize_head(plan, true, 10).find("Connection: keep-alive\r\n") != std::string::npos);
  const ResponsePlan empty = text_response(204, "ignored", 0);
  CHECK(empty.source == BodySource::none);
  CHECK_FALSE(empty.send_body);
  CHECK(serialize_head(empty, true, 11).find("Content-Length") == std::string::npos);
  plan.headers.emplace_back("Content-Type", "evil\r\nSet-Cookie: x");
  CHECK(serialize_head(plan, true, 11).find("\r\nSet-Cookie") == std::string::npos);
}
