#include "shardsync/client/downloader.hpp"

#include <curl/curl.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "committer.hpp"
#include "shardsync/client/errc.hpp"
#include "shardsync/sitemap/digest.hpp"
#include "shardsync/unique_fd.hpp"
#include "test_paths.hpp"

using namespace shardsync::client;
using shardsync::UniqueFd;
using shardsync::sitemap::HashAlgorithm;
using shardsync::sitemap::HashList;
using shardsync::test::read_file;
using shardsync::test::TempDir;
using shardsync::test::write_file;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

extern char** environ;

namespace {

struct CurlGlobal {
  CurlGlobal() { curl_global_init(CURL_GLOBAL_ALL); }
  ~CurlGlobal() { curl_global_cleanup(); }
};
const CurlGlobal curl_global;

// tests/support/fault_server.py serving `root`, on 127.0.0.1 and a port it picked.
class FaultServer {
 public:
  explicit FaultServer(const fs::path& root) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    const std::string script = SHARDSYNC_FAULT_SERVER;
    const std::string dir = root.string();
    std::vector<char*> argv = {const_cast<char*>("python3"), const_cast<char*>(script.c_str()),
                               const_cast<char*>(dir.c_str()), nullptr};
    const int rc = posix_spawnp(&pid_, "python3", &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);
    UniqueFd reader(out[0]);
    if (rc != 0) throw std::runtime_error("cannot start python3");
    std::string line;
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (line.find('\n') == std::string::npos && Clock::now() < deadline) {
      pollfd p{reader.get(), POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buffer[64];
      const ssize_t n = ::read(reader.get(), buffer, sizeof buffer);
      if (n <= 0) break;
      line.append(buffer, static_cast<std::size_t>(n));
    }
    port_ = std::atoi(line.c_str());
    if (port_ <= 0) {
      stop();
      throw std::runtime_error("fault server did not report a port");
    }
  }
  ~FaultServer() { stop(); }
  FaultServer(const FaultServer&) = delete;
  FaultServer& operator=(const FaultServer&) = delete;

  std::string base(const std::string& host = "127.0.0.1") const {
    return "http://" + host + ":" + std::to_string(port_) + "/";
  }
  // The URL of `name` behaving as `seq` (see fault_server.py); `key` keeps request counts
  // and logs apart.
  std::string url(const std::string& name, const std::string& seq, const std::string& key,
                  const std::string& extra = "") const {
    return base() + name + "?seq=" + seq + "&key=" + key + extra;
  }
  // The requests the server saw for `key`.
  nlohmann::json requests(const std::string& key) const { return get_json("_log?key=" + key); }
  // The most file requests the server answered at once.
  int most_active() const { return get_json("_stats")["most_active"].get<int>(); }

 private:
  nlohmann::json get_json(const std::string& target) const {
    std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> easy(curl_easy_init(), curl_easy_cleanup);
    std::string body;
    const std::string url = base() + target;
    curl_easy_setopt(easy.get(), CURLOPT_URL, url.c_str());
    curl_easy_setopt(
        easy.get(), CURLOPT_WRITEFUNCTION, +[](char* data, std::size_t, std::size_t n, void* user) {
          static_cast<std::string*>(user)->append(data, n);
          return n;
        });
    curl_easy_setopt(easy.get(), CURLOPT_WRITEDATA, &body);
    if (curl_easy_perform(easy.get()) != CURLE_OK) throw std::runtime_error("no log");
    return nlohmann::json::parse(body);
  }

  void stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }
  pid_t pid_ = -1;
  int port_ = 0;
};

std::string content_of(std::size_t size, unsigned seed) {
  std::mt19937 rng(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(rng() & 0xff);
  return bytes;
}

std::string sha(const std::string& bytes, HashAlgorithm algorithm = HashAlgorithm::sha256) {
  shardsync::sitemap::Hasher hasher({algorithm});
  hasher.update(bytes);
  return std::string(hasher.finish().get(algorithm));
}

std::string etag_of(const std::string& bytes) { return "\"" + sha(bytes).substr(0, 16) + "\""; }

HashList sha256_list(const std::string& bytes) {
  HashList list;
  list.set(HashAlgorithm::sha256, sha(bytes));
  return list;
}

// A source directory served by the fault server, and a destination directory.
struct Rig {
  TempDir source;
  TempDir dest;
  FaultServer server{source.path()};
  UniqueFd dir{::open(dest.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};

  // Publishes `name` with `size` random bytes and returns them.
  std::string publish(const std::string& name, std::size_t size, unsigned seed = 1) {
    std::string bytes = content_of(size, seed);
    write_file(source / name, bytes);
    return bytes;
  }

  DownloadJob job(const std::string& leaf, const std::string& bytes, std::string url,
                  std::uint64_t id = 1) const {
    DownloadJob job;
    job.id = id;
    job.urls = {std::move(url)};
    job.dir_fd = dir.get();
    job.leaf = leaf;
    job.length = bytes.size();
    job.hashes = sha256_list(bytes);
    return job;
  }

  std::vector<std::string> partials() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dest.path())) {
      const std::string name = entry.path().filename().string();
      if (name.starts_with(".shardsync-part-")) names.push_back(name);
    }
    return names;
  }
};

DownloaderOptions fast_options() {
  DownloaderOptions options;
  options.initial_backoff_ms = 10;
  options.max_backoff_ms = 50;
  options.connect_timeout_ms = 2000;
  options.low_speed_bytes = 1000;
  options.low_speed_seconds = 1;
  options.max_attempts = 3;
  return options;
}

std::map<std::uint64_t, DownloadResult> run_jobs(DownloaderOptions options,
                                                 std::vector<DownloadJob> jobs,
                                                 std::uint64_t* bytes_seen = nullptr) {
  std::map<std::uint64_t, DownloadResult> results;
  std::size_t next = 0;
  Downloader downloader(std::move(options));
  downloader.run(
      [&]() -> std::optional<DownloadJob> {
        if (next == jobs.size()) return std::nullopt;
        return std::move(jobs[next++]);
      },
      [&](DownloadResult&& result) {
        REQUIRE(results.count(result.id) == 0);  // once per job
        results.emplace(result.id, std::move(result));
      },
      [&](std::uint64_t n) {
        if (bytes_seen) *bytes_seen += n;
      });
  REQUIRE(results.size() == next);
  return results;
}

DownloadResult run_one(DownloaderOptions options, DownloadJob job) {
  std::vector<DownloadJob> jobs;
  jobs.push_back(std::move(job));
  return std::move(run_jobs(std::move(options), std::move(jobs)).begin()->second);
}

std::string describe(const DownloadResult& result) {
  return result.outcome ? "ok" : result.outcome.error().describe();
}

}  // namespace

TEST_CASE("parallel downloads of many files end byte-identical with their digests",
          "[client][download]") {
  Rig rig;
  std::vector<DownloadJob> jobs;
  std::map<std::uint64_t, std::string> expected;
  std::uint64_t total = 0;
  // Sizes around the (shrunk) batch size, an empty file, and odd sizes.
  const std::vector<std::size_t> sizes = {0, 1, 1000, 65535, 65536, 65537, 200'000, 300'001};
  for (std::uint64_t i = 0; i < 40; ++i) {
    const std::string name = "f" + std::to_string(i) + ".bin";
    const std::string bytes = rig.publish(name, sizes[i % sizes.size()] + i, unsigned(i));
    expected[i] = bytes;
    total += bytes.size();
    jobs.push_back(rig.job(name, bytes, rig.server.base() + name, i));
  }
  DownloaderOptions options = fast_options();
  options.parallel = 6;
  options.write_batch_bytes = 64 * 1024;  // many batches per file, and a pool that runs dry
  std::uint64_t seen = 0;
  const auto results = run_jobs(options, std::move(jobs), &seen);
  REQUIRE(results.size() == 40);
  for (const auto& [id, result] : results) {
    INFO("file " << id << ": " << describe(result));
    REQUIRE(result.outcome);
    CHECK(result.outcome->sha256 == sha(expected[id]));
    CHECK(result.outcome->length == expected[id].size());
    CHECK(result.outcome->bytes_received == expected[id].size());
    CHECK(result.outcome->resumed_from == 0);
    CHECK(result.outcome->attempts == 1);
    CHECK(read_file(rig.dest / ("f" + std::to_string(id) + ".bin")) == expected[id]);
  }
  CHECK(seen == total);
  CHECK(rig.partials().empty());
}

TEST_CASE("jobs are pulled only while a transfer slot is free", "[client][download]") {
  Rig rig;
  const std::string bytes = rig.publish("a.bin", 200'000);
  DownloaderOptions options = fast_options();
  options.parallel = 2;
  int pulled = 0;
  int done = 0;
  Downloader downloader(options);
  downloader.run(
      [&]() -> std::optional<DownloadJob> {
        if (pulled == 7) return std::nullopt;
        ++pulled;
        // Slow bodies: transfers overlap whenever slots allow it.
        return rig.job("a" + std::to_string(pulled), bytes,
                       rig.server.url("a.bin", "slow", "a" + std::to_string(pulled), "&stall=0.2"),
                       std::uint64_t(pulled));
      },
      [&](DownloadResult&& result) {
        CHECK(result.outcome);
        ++done;
      });
  CHECK(done == 7);
  // Files being committed free their slot; requests never exceed `parallel`.
  CHECK(rig.server.most_active() == 2);
}

TEST_CASE("a file listed with only sha-1 or md5 is verified with it and reports sha-256",
          "[client][download]") {
  Rig rig;
  const std::string bytes = rig.publish("a.bin", 100'000);
  const HashAlgorithm algorithm = GENERATE(HashAlgorithm::sha1, HashAlgorithm::md5);
  DownloadJob job = rig.job("a.bin", bytes, rig.server.base() + "a.bin");
  job.hashes = HashList{};
  job.hashes.set(algorithm, sha(bytes, algorithm));
  SECTION("matching") {
    const DownloadResult result = run_one(fast_options(), job);
    REQUIRE(result.outcome);
    CHECK(result.outcome->sha256 == sha(bytes));
    CHECK(read_file(rig.dest / "a.bin") == bytes);
  }
  SECTION("not matching") {
    job.hashes.set(algorithm, sha("other", algorithm));
    const DownloadResult result = run_one(fast_options(), job);
    REQUIRE_FALSE(result.outcome);
    CHECK(result.outcome.error().code == errc::hash_mismatch);
    CHECK_FALSE(fs::exists(rig.dest / "a.bin"));
  }
}

TEST_CASE("a cut transfer is resumed from the bytes it kept, never fetching them twice",
          "[client][download]") {
  Rig rig;
  const std::string bytes = rig.publish("a.bin", 300'000);
  struct Case {
    std::string mode;
    std::string extra;
    std::string range;  // of the retry; empty: not exactly known
  };
  // rst may drop part of the half still in flight. The stall sends little, since libcurl
  // averages the speed over the last 5 s: 1000 bytes then silence is caught in about 2 s.
  const auto [mode, extra, range] =
      GENERATE(Case{"short_cl", "", "bytes=150000-"}, Case{"chunk_trunc", "", "bytes=150000-"},
               Case{"rst", "", ""}, Case{"no_cl_close", "", "bytes=150000-"},
               Case{"stall", "&cut=1000&stall=20", "bytes=1000-"});
  INFO(mode);
  const std::string key = "cut-" + mode;
  const auto start = Clock::now();
  const DownloadResult result = run_one(
      fast_options(), rig.job("a.bin", bytes, rig.server.url("a.bin", mode + ",ok", key, extra)));
  INFO(describe(result));
  REQUIRE(result.outcome);
  CHECK(result.outcome->attempts == 2);
  CHECK(result.outcome->bytes_received == bytes.size());
  CHECK(result.outcome->sha256 == sha(bytes));
  CHECK(read_file(rig.dest / "a.bin") == bytes);
  CHECK(rig.partials().empty());
  const auto requests = rig.server.requests(key);
  REQUIRE(requests.size() == 2);
  CHECK(requests[0]["range"].is_null());
  REQUIRE(requests[1]["range"].is_string());
  CHECK(requests[1]["range"].get<std::string>().starts_with("bytes="));
  CHECK(requests[1]["range"].get<std::string>() != "bytes=0-");
  CHECK(requests[1]["if_range"] == etag_of(bytes));
  if (!range.empty()) CHECK(requests[1]["range"] == range);
  // The stall is caught by the low-speed rule, not by the server giving up (20 s).
  CHECK(Clock::now() - start < std::chrono::seconds(5));
}

TEST_CASE("a cut transfer that never completes is reported as transfer_failed",
          "[client][download]") {
  Rig rig;
  const std::string bytes = rig.publish("a.bin", 100'000);
  const std::string mode = GENERATE("short_cl", "chunk_trunc", "no_cl_close");
  INFO(mode);
  DownloaderOptions options = fast_options();
  options.max_attempts = 2;
  const DownloadResult result =
      run_one(options, rig.job("a.bin", bytes, rig.server.url("a.bin", mode, "t-" + mode)));
  REQUIRE_FALSE(result.outcome);
  CHECK(result.outcome.error().code == errc::transfer_failed);
  CHECK_FALSE(fs::exists(rig.dest / "a.bin"));
  // Half arrived once, and the Range retry asked for the rest: those bytes stay for a rerun.
  const auto partials = rig.partials();
  REQUIRE(partials.size() == 1);
  CHECK(partials[0] == partial_name("a.bin"));
  CHECK(fs::file_size(rig.dest / partials[0]) >= 50'000);
}

TEST_CASE("a body of the wrong length is stopped, discarded and retried", "[client][download]") {
  Rig rig;
  const std::string bytes = rig.publish("a.bin", 100'000);
  DownloaderOptions options = fast_options();
  options.max_attempts = 2;
  SECTION("a short Content-Length once") {
    const DownloadResult result =
        run_one(options, rig.job("a.bin", bytes, rig.server.url("a.bin", "long_cl,ok", "l1")));
    REQUIRE(result.outcome);
    CHECK(result.outcome->attempts == 2);
    CHECK(read_file(rig.dest / "a.bin") == bytes);
  }
  SECTION("a short Content-Length always") {
    const DownloadResult result =
        run_one(options, rig.job("a.bin", bytes, rig.server.url("a.bin", "long_cl", "l2")));
    REQUIRE_FALSE(result.outcome);
    CHECK(result.outcome.error().code == errc::length_mismatch);
    CHECK_FALSE(fs::exists(rig.dest / "a.bin"));
  }
  SECTION("more bytes than listed, without a Content-Length") {
    DownloadJob job = rig.job("a.bin", bytes, rig.server.url("a.bin", "no_cl_close", "l3"));
    job.length = 10'000;  // the server sends 50,000 bytes close-delimited
    std::uint64_t seen = 0;
    std::vector<DownloadJob> jobs;
    jobs.push_back(job);
    const auto results = run_jobs(options, std::move(jobs), &seen);
    const DownloadResult& result = results.begin()->second;
    REQUIRE_FALSE(result.outcome);
    CHECK(result.outcome.error().code == errc::length_mismatch);
    CHECK(seen <= 2 * 10'000);  // stopped at the listed length each time
    CHECK_FALSE(fs::exists(rig.dest / "a.bin"));
  }
  CHECK(rig.partials().empty());
}

TEST_CASE("a range answered wrongly discards the partial and starts from zero",
          "[client][download]") {
  Rig rig;
  const std::string bytes = rig.publish("a.bin", 200'000);
  struct Case {
    std::string seq;
    int attempts;
    std::uint64_t received;
  };
  const auto [seq, attempts, received] =
      GENERATE(Case{"short_cl,range_ignored", 2, 100'000 + 200'000},
               Case{"short_cl,range_wrong_start,ok", 3, 100'000 + 200'000},
               Case{"short_cl,416,ok", 3, 100'000 + 200'000},
               Case{"short_cl,gzip_range,ok", 3, 100'000 + 200'000});
  INFO(seq);
  const DownloadResult result =
      run_one(fast_options(), rig.job("a.bin", bytes, rig.server.url("a.bin", seq, "r")));
  INFO(describe(result));
  REQUIRE(result.outcome);
  CHECK(result.outcome->attempts == attempts);
  CHECK(result.outcome->bytes_received == received);
  CHECK(result.outcome->resumed_from == 0);
  CHECK(read_file(rig.dest / "a.bin") == bytes);
  const auto requests = rig.server.requests("r");
  REQUIRE(requests.size() == std::size_t(attempts));
  CHECK(requests[1]["range"] == "bytes=100000-");
  if (attempts == 3) CHECK(requests[2]["range"].is_null());
  CHECK(rig.partials().empty());
}

TEST_CASE("bytes without a validator are not resumed but fetched again", "[client][download]") {
  Rig rig;
  const std::string bytes = rig.publish("a.bin", 100'000);
  const DownloadResult result = run_one(
      fast_options(),
      rig.job("a.bin", bytes, rig.server.url("a.bin", "novalidator+short_cl,novalidator", "n")));
  INFO(describe(result));
  REQUIRE(result.outcome);
  CHECK(result.outcome->bytes_received == 50'000 + bytes.size());
  CHECK(rig.server.requests("n")[1]["range"].is_null());
  CHECK(read_file(rig.dest / "a.bin") == bytes);
}

TEST_CASE("a source that changed between requests restarts the download", "[client][download]") {
  Rig rig;
  const std::string old_bytes = rig.publish("a.bin", 200'000, 1);
  // The same length: the change shows only in the ETag and the bytes.
  const std::string new_bytes = rig.publish("a.bin.v2", 200'000, 2);
  SECTION("If-Range no longer matches: the server sends the new body whole") {
    const DownloadResult result = run_one(
        fast_options(), rig.job("a.bin", new_bytes, rig.server.url("a.bin", "short_cl,v2", "e")));
    INFO(describe(result));
    REQUIRE(result.outcome);
    CHECK(result.outcome->attempts == 2);
    CHECK(result.outcome->bytes_received == 100'000 + new_bytes.size());
    const auto requests = rig.server.requests("e");
    CHECK(requests[1]["if_range"] == etag_of(old_bytes));
  }
  SECTION("a server ignoring If-Range sends a 206 of the new version: caught by its ETag") {
    const DownloadResult result = run_one(
        fast_options(),
        rig.job("a.bin", new_bytes, rig.server.url("a.bin", "short_cl,v2_ignore_ifrange,v2", "e")));
    INFO(describe(result));
    REQUIRE(result.outcome);
    CHECK(result.outcome->attempts == 3);
  }
  CHECK(read_file(rig.dest / "a.bin") == new_bytes);
  CHECK(rig.partials().empty());
}

TEST_CASE("error statuses are retried or final, and their bodies are never saved",
          "[client][download]") {
  Rig rig;
  const std::string bytes = rig.publish("a.bin", 10'000);
  DownloaderOptions options = fast_options();
  options.max_attempts = 3;
  SECTION("404 is final at once") {
    const std::string url = rig.server.url("a.bin", "404", "s");
    const DownloadResult result = run_one(options, rig.job("a.bin", bytes, url));
    REQUIRE_FALSE(result.outcome);
    CHECK(result.outcome.error().code == errc::http_status);
    CHECK(result.outcome.error().detail == "HTTP 404 " + url);
    CHECK(rig.server.requests("s").size() == 1);
  }
  SECTION("a missing file is a 404") {
    const DownloadResult result =
        run_one(options, rig.job("a.bin", bytes, rig.server.base() + "missing.bin"));
    REQUIRE_FALSE(result.outcome);
    CHECK(result.outcome.error().code == errc::http_status);
  }
  SECTION("503, 429, 408 and 500 are retried; Retry-After is capped") {
    const std::string status = GENERATE("503", "429", "408", "500");
    const auto start = Clock::now();
    const DownloadResult result = run_one(
        options,
        rig.job("a.bin", bytes,
                rig.server.url("a.bin", status + "," + status + ",ok", "s", "&ra=999999999")));
    REQUIRE(result.outcome);
    CHECK(result.outcome->attempts == 3);
    CHECK(Clock::now() - start < std::chrono::seconds(2));
    CHECK(read_file(rig.dest / "a.bin") == bytes);
  }
  SECTION("503 for ever gives up after max_attempts") {
    const DownloadResult result =
        run_one(options, rig.job("a.bin", bytes, rig.server.url("a.bin", "503", "s")));
    REQUIRE_FALSE(result.outcome);
    CHECK(result.outcome.error().code == errc::http_status);
    CHECK(result.outcome.error().detail.starts_with("HTTP 503 "));
    CHECK(rig.server.requests("s").size() == 3);
  }
  CHECK(rig.partials().empty());
  if (fs::exists(rig.dest / "a.bin")) CHECK(read_file(rig.dest / "a.bin") == bytes);
}

TEST_CASE("a digest mismatch is retried, then reported without a file", "[client][download]") {
  Rig rig;
  const std::string bytes = rig.publish("a.bin", 100'000);
  SECTION("once") {
    const DownloadResult result = run_one(
        fast_options(), rig.job("a.bin", bytes, rig.server.url("a.bin", "hash_mismatch,ok", "h")));
    REQUIRE(result.outcome);
    CHECK(result.outcome->attempts == 2);
    CHECK(read_file(rig.dest / "a.bin") == bytes);
  }
  SECTION("always") {
    const DownloadResult result = run_one(
        fast_options(), rig.job("a.bin", bytes, rig.server.url("a.bin", "hash_mismatch", "h")));
    REQUIRE_FALSE(result.outcome);
    CHECK(result.outcome.error().code == errc::hash_mismatch);
    CHECK(rig.server.requests("h").size() == 3);
    CHECK_FALSE(fs::exists(rig.dest / "a.bin"));
  }
  CHECK(rig.partials().empty());
}

TEST_CASE("redirect loops and header floods fail the URL", "[client][download]") {
  Rig rig;
  const std::string bytes = rig.publish("a.bin", 1000);
  const std::string mode = GENERATE("redirect_loop", "header_flood");
  const DownloadResult result =
      run_one(fast_options(), rig.job("a.bin", bytes, rig.server.url("a.bin", mode, "x")));
  REQUIRE_FALSE(result.outcome);
  CHECK(result.outcome.error().code == errc::transfer_failed);
  CHECK_FALSE(fs::exists(rig.dest / "a.bin"));
  CHECK(rig.partials().empty());
  if (mode == std::string("redirect_loop")) CHECK(rig.server.requests("x").size() == 6);
}

TEST_CASE("redirects are followed to http(s) only", "[client][download]") {
  Rig rig;
  const std::string bytes = rig.publish("a.bin", 1000);
  SECTION("to the file") {
    const DownloadResult result =
        run_one(fast_options(),
                rig.job("a.bin", bytes, rig.server.url("a.bin", "redirect_to", "d", "&to=/a.bin")));
    REQUIRE(result.outcome);
    CHECK(read_file(rig.dest / "a.bin") == bytes);
  }
  SECTION("to file:") {
    const DownloadResult result =
        run_one(fast_options(),
                rig.job("a.bin", bytes,
                        rig.server.url("a.bin", "redirect_to", "d", "&to=file:///etc/passwd")));
    REQUIRE_FALSE(result.outcome);
    CHECK(result.outcome.error().code == errc::transfer_failed);
    CHECK_FALSE(fs::exists(rig.dest / "a.bin"));
  }
}

TEST_CASE("mirrors are tried in order when the primary fails", "[client][download]") {
  Rig rig;
  const std::string bytes = rig.publish("a.bin", 50'000);
  DownloaderOptions options = fast_options();
  options.max_attempts = 2;
  SECTION("refused connections") {
    DownloadJob job = rig.job("a.bin", bytes, "http://127.0.0.1:1/a.bin");
    job.urls.push_back(rig.server.url("a.bin", "ok", "m"));
    const DownloadResult result = run_one(options, job);
    INFO(describe(result));
    REQUIRE(result.outcome);
    CHECK(result.outcome->attempts == 3);
  }
  SECTION("a 404 primary and a cut mirror") {
    DownloadJob job = rig.job("a.bin", bytes, rig.server.url("a.bin", "404", "p"));
    job.urls.push_back(rig.server.url("a.bin", "short_cl", "q"));
    job.urls.push_back(rig.server.url("a.bin", "ok", "m"));
    const DownloadResult result = run_one(options, job);
    INFO(describe(result));
    REQUIRE(result.outcome);
    CHECK(result.outcome->attempts == 4);
    // The cut mirror's bytes were kept; the next mirror's ETag matches, so it sent the rest.
    CHECK(result.outcome->bytes_received == bytes.size());
    // 25,000 from its first try, half of the remaining 25,000 from its retry.
    CHECK(rig.server.requests("m")[0]["range"] == "bytes=37500-");
  }
  CHECK(read_file(rig.dest / "a.bin") == bytes);
}

TEST_CASE("the bearer token goes to the source's own host only", "[client][download]") {
  Rig rig;
  const std::string bytes = rig.publish("a.bin", 1000);
  DownloaderOptions options = fast_options();
  options.bearer_token = "s3cret";
  SECTION("not across a redirect to another host") {
    const std::string elsewhere =
        "http://localhost:" + rig.server.base().substr(17) + "a.bin%3Fkey%3Dother";
    const DownloadResult result = run_one(
        options,
        rig.job("a.bin", bytes, rig.server.url("a.bin", "redirect_to", "t", "&to=" + elsewhere)));
    INFO(describe(result));
    REQUIRE(result.outcome);
    CHECK(rig.server.requests("t")[0]["authorization"] == "Bearer s3cret");
    const auto other = rig.server.requests("other");
    REQUIRE(other.size() == 1);
    CHECK(other[0]["host"].get<std::string>().starts_with("localhost:"));
    CHECK(other[0]["authorization"].is_null());
  }
  SECTION("not to a mirror on another host") {
    DownloadJob job = rig.job("a.bin", bytes, rig.server.url("a.bin", "404", "t"));
    job.urls.push_back(rig.server.base("localhost") + "a.bin?key=other");
    const DownloadResult result = run_one(options, job);
    REQUIRE(result.outcome);
    CHECK(rig.server.requests("t")[0]["authorization"] == "Bearer s3cret");
    CHECK(rig.server.requests("other")[0]["authorization"].is_null());
  }
}

TEST_CASE("an interrupted run leaves a partial file that the next run resumes",
          "[client][download]") {
  Rig rig;
  const std::string bytes = rig.publish("a.bin", 400'000);
  DownloaderOptions options = fast_options();
  options.max_attempts = 1;
  const DownloadResult first =
      run_one(options, rig.job("a.bin", bytes, rig.server.url("a.bin", "short_cl", "run1")));
  REQUIRE_FALSE(first.outcome);
  CHECK(first.outcome.error().code == errc::transfer_failed);
  CHECK_FALSE(fs::exists(rig.dest / "a.bin"));
  const fs::path partial = rig.dest / partial_name("a.bin");
  REQUIRE(fs::exists(partial));
  const auto kept = fs::file_size(partial);
  CHECK(kept == 200'000);
  char validator[128] = {};
  const ssize_t n = ::getxattr(partial.c_str(), "user.shardsync.validator", validator, 127);
  CHECK(std::string(validator, std::size_t(std::max<ssize_t>(n, 0))) == etag_of(bytes));

  const DownloadResult second =
      run_one(options, rig.job("a.bin", bytes, rig.server.url("a.bin", "ok", "run2")));
  INFO(describe(second));
  REQUIRE(second.outcome);
  CHECK(second.outcome->resumed_from == kept);
  CHECK(second.outcome->bytes_received == bytes.size() - kept);
  CHECK(second.outcome->sha256 == sha(bytes));
  CHECK(read_file(rig.dest / "a.bin") == bytes);
  const auto requests = rig.server.requests("run2");
  REQUIRE(requests.size() == 1);
  CHECK(requests[0]["range"] == "bytes=200000-");
  CHECK(requests[0]["if_range"] == etag_of(bytes));
  CHECK(rig.partials().empty());
  // The final file carries no resume state.
  CHECK(::getxattr((rig.dest / "a.bin").c_str(), "user.shardsync.validator", validator, 127) < 0);
}

TEST_CASE("partial files from earlier runs are checked before they are trusted",
          "[client][download]") {
  Rig rig;
  const std::string bytes = rig.publish("a.bin", 100'000);
  const fs::path partial = rig.dest / partial_name("a.bin");
  const auto plant = [&](const std::string& content, const std::string& validator) {
    write_file(partial, content);
    if (!validator.empty()) {
      REQUIRE(::setxattr(partial.c_str(), "user.shardsync.validator", validator.data(),
                         validator.size(), 0) == 0);
    }
  };
  SECTION("without a validator it is discarded") {
    plant(bytes.substr(0, 50'000), "");
    const DownloadResult result =
        run_one(fast_options(), rig.job("a.bin", bytes, rig.server.url("a.bin", "ok", "p")));
    REQUIRE(result.outcome);
    CHECK(result.outcome->resumed_from == 0);
    CHECK(result.outcome->bytes_received == bytes.size());
    CHECK(rig.server.requests("p")[0]["range"].is_null());
  }
  SECTION("complete and correct, it is committed without a request") {
    plant(bytes, etag_of(bytes));
    const DownloadResult result =
        run_one(fast_options(), rig.job("a.bin", bytes, rig.server.url("a.bin", "404", "p")));
    INFO(describe(result));
    REQUIRE(result.outcome);
    CHECK(result.outcome->attempts == 0);
    CHECK(result.outcome->bytes_received == 0);
    CHECK(result.outcome->resumed_from == bytes.size());
    CHECK(result.outcome->sha256 == sha(bytes));
    CHECK(rig.server.requests("p").empty());
  }
  SECTION("complete but wrong, it is fetched afresh") {
    plant(content_of(bytes.size(), 99), etag_of(bytes));
    const DownloadResult result =
        run_one(fast_options(), rig.job("a.bin", bytes, rig.server.url("a.bin", "ok", "p")));
    REQUIRE(result.outcome);
    CHECK(result.outcome->attempts == 1);
    CHECK(result.outcome->bytes_received == bytes.size());
  }
  SECTION("from an older version, the server's If-Range check restarts it") {
    plant(content_of(50'000, 99), "\"old-version\"");
    const DownloadResult result =
        run_one(fast_options(), rig.job("a.bin", bytes, rig.server.url("a.bin", "ok", "p")));
    REQUIRE(result.outcome);
    CHECK(result.outcome->resumed_from == 0);
    CHECK(result.outcome->bytes_received == bytes.size());
    CHECK(rig.server.requests("p")[0]["if_range"] == "\"old-version\"");
  }
  SECTION("resumed with Last-Modified when the ETag is weak") {
    DownloaderOptions options = fast_options();
    options.max_attempts = 1;
    const DownloadResult first =
        run_one(options, rig.job("a.bin", bytes, rig.server.url("a.bin", "weak+short_cl", "w1")));
    REQUIRE_FALSE(first.outcome);
    const DownloadResult second =
        run_one(options, rig.job("a.bin", bytes, rig.server.url("a.bin", "weak", "w2")));
    REQUIRE(second.outcome);
    CHECK(second.outcome->resumed_from == 50'000);
    const auto requests = rig.server.requests("w2");
    CHECK(requests[0]["range"] == "bytes=50000-");
    CHECK(requests[0]["if_range"].get<std::string>().ends_with(" GMT"));
  }
  SECTION("a link planted under its name is replaced, not written through") {
    const fs::path victim = rig.dest / "victim";
    write_file(victim, "precious");
    const bool hard = GENERATE(true, false);
    if (hard) {
      fs::create_hard_link(victim, partial);
    } else {
      fs::create_symlink(victim, partial);
    }
    const DownloadResult result =
        run_one(fast_options(), rig.job("a.bin", bytes, rig.server.url("a.bin", "ok", "p")));
    INFO(describe(result));
    REQUIRE(result.outcome);
    CHECK(read_file(victim) == "precious");
    fs::remove(victim);
  }
  CHECK(read_file(rig.dest / "a.bin") == bytes);
  CHECK(rig.partials().empty());
}

TEST_CASE("the file's mtime is the listed lastmod", "[client][download]") {
  Rig rig;
  const std::string bytes = rig.publish("a.bin", 1000);
  DownloadJob job = rig.job("a.bin", bytes, rig.server.base() + "a.bin");
  job.lastmod = shardsync::sitemap::Timestamp::from_unix(1'577'934'245, 500'000'000);
  REQUIRE(run_one(fast_options(), job).outcome);
  struct stat st {};
  REQUIRE(::stat((rig.dest / "a.bin").c_str(), &st) == 0);
  CHECK(st.st_mtim.tv_sec == 1'577'934'245);
  CHECK(st.st_mtim.tv_nsec == 500'000'000);
}

TEST_CASE("a gzip-encoded body is decoded before it is checked", "[client][download]") {
  Rig rig;
  const std::string bytes = rig.publish("a.bin", 100'000);
  DownloadJob job = rig.job("a.bin", bytes, rig.server.url("a.bin", "gzip", "g"));
  SECTION("whole") {}
  SECTION("cut, then restarted: an encoded body is never resumed") {
    job.urls[0] = rig.server.url("a.bin", "gzip+short_cl,gzip", "g");
  }
  const DownloadResult result = run_one(fast_options(), job);
  INFO(describe(result));
  REQUIRE(result.outcome);
  CHECK(read_file(rig.dest / "a.bin") == bytes);
  CHECK(rig.server.requests("g").back()["range"].is_null());
  CHECK(rig.server.requests("g")[0]["accept_encoding"] == "identity");
}

TEST_CASE("an existing file is replaced whole", "[client][download]") {
  Rig rig;
  const std::string bytes = rig.publish("a.bin", 10'000);
  write_file(rig.dest / "a.bin", "old content");
  REQUIRE(run_one(fast_options(), rig.job("a.bin", bytes, rig.server.base() + "a.bin")).outcome);
  CHECK(read_file(rig.dest / "a.bin") == bytes);
}

TEST_CASE("jobs that cannot be run are reported without a request", "[client][download]") {
  Rig rig;
  const std::string bytes = rig.publish("a.bin", 10);
  DownloadJob job = rig.job("a.bin", bytes, rig.server.url("a.bin", "ok", "n"));
  errc expected{};
  SECTION("a leaf with a slash") {
    job.leaf = "../a.bin";
    expected = errc::unsafe_path;
  }
  SECTION("a dot-dot leaf") {
    job.leaf = "..";
    expected = errc::unsafe_path;
  }
  SECTION("no URL") {
    job.urls.clear();
    expected = errc::invalid_options;
  }
  const DownloadResult result = run_one(fast_options(), job);
  REQUIRE_FALSE(result.outcome);
  CHECK(result.outcome.error().code == expected);
  CHECK(rig.server.requests("n").empty());
  CHECK(rig.partials().empty());
}

TEST_CASE("a full disk ends the job with disk_full and no final file", "[client][download]") {
  Rig rig;
  const std::string bytes = rig.publish("big.bin", 2 << 20);
  const fs::path mount_point = rig.dest / "small";
  fs::create_directory(mount_point);
  if (::mount("tmpfs", mount_point.c_str(), "tmpfs", 0, "size=1m") != 0) {
    WARN("skipped: cannot mount a tmpfs here (" << std::strerror(errno) << ")");
    return;
  }
  struct Unmount {
    fs::path path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{mount_point};
  UniqueFd dir(::open(mount_point.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  DownloadJob job = rig.job("big.bin", bytes, rig.server.base() + "big.bin");
  job.dir_fd = dir.get();
  SECTION("with a listed length") {}
  SECTION("without a listed length") { job.length.reset(); }
  const DownloadResult result = run_one(fast_options(), job);
  REQUIRE_FALSE(result.outcome);
  CHECK(result.outcome.error().code == errc::disk_full);
  CHECK_FALSE(fs::exists(mount_point / "big.bin"));
  // Kept so that a rerun after freeing space resumes.
  CHECK(fs::exists(mount_point / partial_name("big.bin")));
  CHECK(result.outcome.error().detail.find("big.bin") != std::string::npos);
}

TEST_CASE("partial file names are stable and hide the leaf", "[client][download]") {
  CHECK(partial_name("a.bin") == partial_name("a.bin"));
  CHECK(partial_name("a.bin") != partial_name("b.bin"));
  CHECK(partial_name("a.bin").size() == std::string(".shardsync-part-").size() + 16);
  CHECK(partial_name("a.bin").starts_with(".shardsync-part-"));
}

TEST_CASE("many small files across directories are committed, each directory lent per job",
          "[client][download]") {
  Rig rig;
  constexpr int kDirs = 5;
  constexpr std::uint64_t kFiles = 200;
  for (int d = 0; d < kDirs; ++d) fs::create_directory(rig.dest / ("d" + std::to_string(d)));
  std::vector<std::string> bytes;
  for (std::uint64_t i = 0; i < kFiles; ++i) {
    bytes.push_back(rig.publish("s" + std::to_string(i), 1000 + i, unsigned(i)));
  }
  const auto dir_of = [&](std::uint64_t i) { return "d" + std::to_string(i % kDirs); };
  // Like the sync engine: a directory fd opened per job and closed in its on_done, so the
  // batched directory fsyncs must use fds of the downloader's own (a closed or reused fd
  // would fail them, or sync another directory).
  std::map<std::uint64_t, UniqueFd> lent;
  std::uint64_t next = 0;
  std::uint64_t succeeded = 0;
  DownloaderOptions options = fast_options();
  options.commit_threads = 3;
  Downloader downloader(options);
  downloader.run(
      [&]() -> std::optional<DownloadJob> {
        if (next == kFiles) return std::nullopt;
        const std::uint64_t i = next++;
        UniqueFd dir(::open((rig.dest / dir_of(i)).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        DownloadJob job = rig.job("f" + std::to_string(i), bytes[i],
                                  rig.server.base() + "s" + std::to_string(i), i);
        job.dir_fd = dir.get();
        job.lastmod = shardsync::sitemap::Timestamp::from_unix(
            1'600'000'000 + static_cast<std::int64_t>(i), 0);
        lent.emplace(i, std::move(dir));
        return job;
      },
      [&](DownloadResult&& result) {
        INFO("file " << result.id << ": " << describe(result));
        CHECK(result.outcome);
        // Committed means: under the final name, complete, with its mtime.
        const fs::path path = rig.dest / dir_of(result.id) / ("f" + std::to_string(result.id));
        CHECK(read_file(path) == bytes[result.id]);
        struct stat st {};
        CHECK(::stat(path.c_str(), &st) == 0);
        CHECK(st.st_mtim.tv_sec == 1'600'000'000 + static_cast<time_t>(result.id));
        REQUIRE(lent.erase(result.id) == 1);  // once per job; its directory fd closed here
        if (result.outcome) ++succeeded;
      });
  CHECK(succeeded == kFiles);
  CHECK(lent.empty());
  for (int d = 0; d < kDirs; ++d) {
    for (const auto& entry : fs::directory_iterator(rig.dest / ("d" + std::to_string(d)))) {
      CHECK_FALSE(entry.path().filename().string().starts_with(".shardsync-part-"));
    }
  }
}

TEST_CASE("an exception mid-transfer keeps the bytes already written, and a rerun resumes",
          "[client][download]") {
  Rig rig;
  const std::string bytes = rig.publish("big.bin", 8 << 20);
  DownloaderOptions options = fast_options();
  options.write_batch_bytes = 1 << 20;
  {
    // Half the body arrives, then the server stalls; the caller gives up meanwhile, after the
    // writer thread has had time to put the full batches in the file.
    std::uint64_t received = 0;
    Downloader downloader(options);
    bool pulled = false;
    CHECK_THROWS_AS(downloader.run(
                        [&]() -> std::optional<DownloadJob> {
                          if (std::exchange(pulled, true)) return std::nullopt;
                          return rig.job("big.bin", bytes,
                                         rig.server.url("big.bin", "stall", "big1", "&stall=5"));
                        },
                        [](DownloadResult&&) {},
                        [&](std::uint64_t n) {
                          received += n;
                          if (received < (4u << 20)) return;
                          std::this_thread::sleep_for(std::chrono::milliseconds(300));
                          throw std::runtime_error("caller gave up");
                        }),
                    std::runtime_error);
  }
  const fs::path partial = rig.dest / partial_name("big.bin");
  REQUIRE(fs::exists(partial));
  const auto kept = fs::file_size(partial);
  CHECK(kept >= (1u << 20));
  const DownloadResult second =
      run_one(options, rig.job("big.bin", bytes, rig.server.url("big.bin", "ok", "big2")));
  INFO(describe(second));
  REQUIRE(second.outcome);
  CHECK(second.outcome->resumed_from == kept);
  CHECK(read_file(rig.dest / "big.bin") == bytes);
}

TEST_CASE("an exception from on_done with commits in flight ends the run; a rerun completes",
          "[client][download]") {
  Rig rig;
  std::vector<DownloadJob> jobs;
  std::vector<std::string> bytes;
  for (std::uint64_t i = 0; i < 30; ++i) {
    bytes.push_back(rig.publish("s" + std::to_string(i), 5000, unsigned(i)));
    jobs.push_back(rig.job("f" + std::to_string(i), bytes.back(),
                           rig.server.base() + "s" + std::to_string(i), i));
  }
  {
    std::size_t next = 0;
    int done = 0;
    Downloader downloader(fast_options());
    CHECK_THROWS_AS(downloader.run(
                        [&]() -> std::optional<DownloadJob> {
                          if (next == jobs.size()) return std::nullopt;
                          return jobs[next++];
                        },
                        [&](DownloadResult&&) {
                          if (++done == 3) throw std::runtime_error("caller gave up");
                        }),
                    std::runtime_error);
  }
  const auto results = run_jobs(fast_options(), jobs);
  REQUIRE(results.size() == jobs.size());
  for (const auto& [id, result] : results) {
    INFO("file " << id << ": " << describe(result));
    REQUIRE(result.outcome);
    CHECK(read_file(rig.dest / ("f" + std::to_string(id))) == bytes[id]);
  }
  CHECK(rig.partials().empty());
}

TEST_CASE("the committer fsyncs each directory once per batch, with its own fds",
          "[client][download]") {
  using shardsync::client::detail::CommitDone;
  using shardsync::client::detail::CommitJob;
  using shardsync::client::detail::Committer;
  TempDir dest;
  constexpr int kDirs = 3;
  constexpr int kFiles = 30;
  std::vector<UniqueFd> dirs;
  for (int d = 0; d < kDirs; ++d) {
    fs::create_directory(dest / ("d" + std::to_string(d)));
    dirs.emplace_back(
        ::open((dest / ("d" + std::to_string(d))).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  }
  std::atomic<int> wakes{0};
  Committer committer(2, [&] { ++wakes; });
  for (int i = 0; i < kFiles; ++i) {
    const int dir = dirs[static_cast<std::size_t>(i % kDirs)].get();
    const std::string temp = ".part-" + std::to_string(i);
    UniqueFd file(::openat(dir, temp.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
    REQUIRE(file);
    REQUIRE(::write(file.get(), "data", 4) == 4);
    REQUIRE(::fsetxattr(file.get(), "user.test", "v", 1, 0) == 0);
    committer.submit(CommitJob{.token = std::uint64_t(i),
                               .file = std::move(file),
                               .body = {},
                               .dir_fd = dir,
                               .temp_name = temp,
                               .leaf = "f" + std::to_string(i),
                               .drop_xattr = "user.test",
                               .mtime = timespec{1'500'000'000, 0}});
  }
  // A leaf that cannot be renamed onto (a non-empty directory): the file comes back.
  fs::create_directories(dest / "d0" / "busy" / "x");
  UniqueFd blocked(::openat(dirs[0].get(), ".part-busy", O_CREAT | O_RDWR | O_CLOEXEC, 0644));
  committer.submit(CommitJob{.token = 999,
                             .file = std::move(blocked),
                             .body = {},
                             .dir_fd = dirs[0].get(),
                             .temp_name = ".part-busy",
                             .leaf = "busy",
                             .drop_xattr = {},
                             .mtime = std::nullopt});
  // Bodies held in memory: the file is created here; a failed one leaves no temp file.
  fs::create_directories(dest / "d1" / "busy" / "x");
  for (const std::string leaf : {"held", "busy"}) {
    committer.submit(CommitJob{.token = leaf == "held" ? 1000u : 1001u,
                               .file = UniqueFd{},
                               .body = "held bytes",
                               .dir_fd = dirs[1].get(),
                               .temp_name = ".part-" + leaf,
                               .leaf = leaf,
                               .drop_xattr = {},
                               .mtime = std::nullopt});
  }
  std::vector<CommitDone> done;
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (done.size() < kFiles + 3 && Clock::now() < deadline) {
    for (CommitDone& d : committer.take_done()) done.push_back(std::move(d));
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  REQUIRE(done.size() == kFiles + 3);
  // One wake per batch: the jobs queued while a worker was busy commit together.
  CHECK(wakes >= 1);
  CHECK(wakes <= kFiles + 3);
  // The caller's directory fds go once its jobs are done; the directory fsyncs still happen.
  dirs.clear();
  for (const CommitDone& d : done) {
    INFO("token " << d.token);
    if (d.token == 999) {
      CHECK_FALSE(d.renamed);
      REQUIRE(d.error);
      CHECK(d.error->code == errc::io_error);
      CHECK(d.file);  // handed back: the caller decides on the partial
      continue;
    }
    if (d.token == 1000) {
      CHECK(d.renamed);
      CHECK_FALSE(d.error);
      CHECK(read_file(dest / "d1" / "held") == "held bytes");
      continue;
    }
    if (d.token == 1001) {
      CHECK_FALSE(d.renamed);
      CHECK(d.error);
      CHECK_FALSE(d.file);
      CHECK_FALSE(fs::exists(dest / "d1" / ".part-busy"));
      continue;
    }
    CHECK(d.renamed);
    CHECK_FALSE(d.error);
    CHECK_FALSE(d.file);
    const fs::path path =
        dest / ("d" + std::to_string(d.token % kDirs)) / ("f" + std::to_string(d.token));
    CHECK(read_file(path) == "data");
    char value[8];
    CHECK(::getxattr(path.c_str(), "user.test", value, sizeof value) < 0);
    struct stat st {};
    CHECK(::stat(path.c_str(), &st) == 0);
    CHECK(st.st_mtim.tv_sec == 1'500'000'000);
  }
  const auto error = committer.sync_dirs();
  CHECK_FALSE(error);
  // At least once per directory (a round may have run meanwhile), never once per file.
  const std::size_t syncs = committer.dir_syncs();
  CHECK(syncs >= std::size_t(kDirs));
  CHECK(syncs < std::size_t(kFiles));
  // Nothing renamed since: nothing to sync.
  CHECK_FALSE(committer.sync_dirs());
  CHECK(committer.dir_syncs() == syncs);
}

TEST_CASE("the committer renames scratch jobs without syncing them or their directory",
          "[client][download]") {
  using shardsync::client::detail::CommitDone;
  using shardsync::client::detail::CommitJob;
  using shardsync::client::detail::Committer;
  TempDir dest;
  UniqueFd dir(::open(dest.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(dir);
  Committer committer(1, {});
  committer.submit(CommitJob{.token = 1,
                             .file = UniqueFd{},
                             .body = "package bytes",
                             .dir_fd = dir.get(),
                             .temp_name = ".part-pkg",
                             .leaf = "package.zip",
                             .drop_xattr = {},
                             .mtime = std::nullopt,
                             .durable = false});
  std::vector<CommitDone> done;
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (done.empty() && Clock::now() < deadline) {
    for (CommitDone& d : committer.take_done()) done.push_back(std::move(d));
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  REQUIRE(done.size() == 1);
  CHECK(done[0].renamed);
  CHECK_FALSE(done[0].error);
  CHECK(read_file(dest / "package.zip") == "package bytes");
  CHECK_FALSE(fs::exists(dest / ".part-pkg"));
  CHECK_FALSE(committer.sync_dirs());
  CHECK(committer.dir_syncs() == 0);  // nothing durable was renamed: no directory to fsync
}
