// sitemap_bench: writes a large Resource List with shardsync::sitemap::SplitWriter (an index
// plus parts of 50,000 entries), parses it back with parse_stream, and compares the parse
// with `xmllint --stream --noout` on the same files, interleaved ABAB/BABA
// (docs BENCHMARKS.md §4). Every measured phase runs in its own child process
// (fork + exec of /proc/self/exe with a --child mode) so that wait4() gives each phase its
// own peak RSS, the same way xmllint's is taken.
//
// Usage: sitemap_bench [--entries N] [--pairs K] [--dir DIR]
// Exit: 0 when every run succeeded (goals missed are reported, not fatal), 1 on a failed
// run, 2 on a usage error.

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "shardsync/sitemap/byte_source.hpp"
#include "shardsync/sitemap/hashes.hpp"
#include "shardsync/sitemap/model.hpp"
#include "shardsync/sitemap/parser.hpp"
#include "shardsync/sitemap/split_writer.hpp"
#include "shardsync/sitemap/timestamp.hpp"
#include "shardsync/sitemap/writer.hpp"

namespace {

namespace fs = std::filesystem;
namespace sm = shardsync::sitemap;

constexpr std::string_view kUsage =
    "usage: sitemap_bench [--entries N] [--pairs K] [--dir DIR]\n"
    "  --entries N  entries in the Resource List (default 1000000)\n"
    "  --pairs K    interleaved ours/xmllint parse pairs, at least 1 (default 5)\n"
    "  --dir DIR    where the list is written and kept (default: a temp dir removed at exit)\n"
    "example: build/bin/sitemap_bench --entries 1000000 --pairs 7\n";

// The list describes http://127.0.0.1:8080/data/; the list files themselves are published
// under /lists/ (the SplitWriter base_url).
constexpr std::string_view kLocPrefix = "http://127.0.0.1:8080/data/shard-";
constexpr std::string_view kListBaseUrl = "http://127.0.0.1:8080/lists/";
constexpr std::string_view kCapabilityListUrl = "http://127.0.0.1:8080/capabilitylist.xml";
constexpr std::string_view kListName = "resourcelist";
constexpr std::int64_t kListAt = 1'764'000'000;  // 2025-11-24T16:00:00Z
constexpr std::uint64_t kMaxLength = 256ull << 20;

// Write runs (each a child process); the median sets the write rate and the last run leaves
// the files the parse phase reads.
constexpr int kWriteRuns = 3;
// BENCHMARKS.md §4: pairs whose 1-minute load average moved by more than this are discarded.
constexpr double kLoadMoveLimit = 2.0;

// Goals the issues set.
constexpr double kGoalParseRatio = 1.0;        // ours / xmllint, median of pairs
constexpr double kGoalWriteEntriesPerS = 1e6;  // SplitWriter, fsyncs included
constexpr double kGoalPeakRssMiB = 64.0;       // each of our phases

struct BenchOptions {
  std::uint64_t entries = 1'000'000;  // entries in the Resource List
  int pairs = 5;                      // interleaved ours/xmllint parse pairs
  std::string dir;                    // empty: a temp dir removed at exit
  std::string child;                  // internal: the phase this process runs as a child
};

class UsageError : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

// --- deterministic fake data ---------------------------------------------------------------

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::uint64_t fake_length(std::uint64_t i) { return 1 + splitmix64(i) % kMaxLength; }

// Builds entry i in place, reusing one Entry so that the benchmark measures the writer, not
// the allocator: loc digits, lastmod, digests and length change; the rest stays.
class EntryMaker {
 public:
  EntryMaker() {
    entry_.loc = std::string(kLocPrefix) + "0000000.bin";
    entry_.md.emplace();
    entry_.md->type = "application/octet-stream";
  }

  const sm::Entry& make(std::uint64_t i) {
    char* digits = entry_.loc.data() + kLocPrefix.size();
    std::uint64_t n = i;
    for (int k = 6; k >= 0; --k) {
      digits[k] = static_cast<char>('0' + n % 10);
      n /= 10;
    }
    const std::uint64_t seed = splitmix64(i ^ 0x5eedull);
    entry_.lastmod =
        sm::Timestamp::from_unix(kListAt - static_cast<std::int64_t>(seed % 2'592'000));
    fill_hex(md5_, i * 8);
    fill_hex(sha256_, i * 8 + 2);
    entry_.md->hash.set(sm::HashAlgorithm::md5, std::string_view(md5_.data(), md5_.size()));
    entry_.md->hash.set(sm::HashAlgorithm::sha256,
                        std::string_view(sha256_.data(), sha256_.size()));
    entry_.md->length = fake_length(i);
    return entry_;
  }

 private:
  template <std::size_t N>
  static void fill_hex(std::array<char, N>& out, std::uint64_t seed) {
    constexpr char kHex[] = "0123456789abcdef";
    for (std::size_t word = 0; word < N / 16; ++word) {
      std::uint64_t bits = splitmix64(seed + word);
      for (std::size_t k = 0; k < 16; ++k) {
        out[word * 16 + k] = kHex[bits & 15u];
        bits >>= 4;
      }
    }
  }

  sm::Entry entry_;
  std::array<char, 32> md5_{};
  std::array<char, 64> sha256_{};
};

sm::DocumentHeader list_header() {
  return sm::make_snapshot_header(sm::Capability::resourcelist, sm::Timestamp::from_unix(kListAt),
                                  kCapabilityListUrl);
}

// --- small utilities -----------------------------------------------------------------------

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

template <typename T>
T check(shardsync::Result<T> result, std::string_view what) {
  if (!result) {
    throw std::runtime_error(std::string(what) + ": " + result.error().describe());
  }
  if constexpr (!std::is_void_v<T>) return std::move(*result);
}

double median(std::vector<double> values) {
  if (values.empty()) return std::nan("");
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

// The 1-, 5- and 15-minute load averages as /proc/loadavg gives them.
struct LoadAvg {
  double one = 0;
  std::string text;
};

LoadAvg read_loadavg() {
  std::ifstream in("/proc/loadavg");
  LoadAvg load;
  std::string one;
  std::string five;
  std::string fifteen;
  in >> one >> five >> fifteen;
  load.one = std::strtod(one.c_str(), nullptr);
  load.text = one + ' ' + five + ' ' + fifteen;
  return load;
}

// --- child processes -----------------------------------------------------------------------

struct ChildRun {
  double wall_s = 0;  // fork to wait4, as the parent saw it
  double cpu_s = 0;   // user + system of the child
  double max_rss_mib = 0;
  std::string output;  // the child's stdout
};

double to_seconds(const timeval& t) {
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
}

// Runs `args` (args[0] is the program; "/proc/self/exe" runs this binary again) with stdout
// captured and stderr inherited; throws when it cannot start or does not exit with 0.
ChildRun run_child(const std::vector<std::string>& args) {
  std::vector<std::string> owned = args;
  std::vector<char*> argv;
  for (std::string& a : owned) argv.push_back(a.data());
  argv.push_back(nullptr);
  const bool self = args.front() == "/proc/self/exe";

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  const Clock::time_point start = Clock::now();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    throw std::runtime_error("fork failed");
  }
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    ::dup2(pipe_fds[1], STDOUT_FILENO);
    if (self) {
      ::execv(argv[0], argv.data());
    } else {
      ::execvp(argv[0], argv.data());
    }
    ::_exit(127);
  }
  ::close(pipe_fds[1]);
  ChildRun run;
  std::array<char, 4096> chunk{};
  for (;;) {
    const ssize_t n = ::read(pipe_fds[0], chunk.data(), chunk.size());
    if (n > 0) {
      run.output.append(chunk.data(), static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(pipe_fds[0]);
  int status = 0;
  rusage usage{};
  while (::wait4(pid, &status, 0, &usage) < 0) {
    if (errno != EINTR) throw std::runtime_error("wait4 failed");
  }
  run.wall_s = seconds_since(start);
  run.cpu_s = to_seconds(usage.ru_utime) + to_seconds(usage.ru_stime);
  run.max_rss_mib = static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux: KiB
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string command;
    for (const std::string& a : args) command += a + ' ';
    throw std::runtime_error("child failed (wait status " + std::to_string(status) +
                             "): " + command.substr(0, 200));
  }
  return run;
}

std::vector<std::string> self_args(std::string_view mode, const BenchOptions& options) {
  return {
      "/proc/self/exe", "--child",  std::string(mode), "--entries", std::to_string(options.entries),
      "--dir",          options.dir};
}

// Reads "key=value" pairs a child printed.
double child_value(const std::string& output, std::string_view key) {
  std::istringstream in(output);
  std::string token;
  while (in >> token) {
    if (token.size() > key.size() && token.starts_with(key) && token[key.size()] == '=') {
      return std::stod(token.substr(key.size() + 1));
    }
  }
  throw std::runtime_error("child printed no " + std::string(key) + " in: " + output);
}

// --- the phases, each run as a child --------------------------------------------------------

// Writes the list with SplitWriter; the time includes building each Entry (cheap: one
// reused object) and the fsyncs and renames that publishing does.
int child_write(const BenchOptions& options) {
  sm::SplitWriterOptions writer_options;
  writer_options.directory = options.dir;
  writer_options.name = std::string(kListName);
  writer_options.base_url = std::string(kListBaseUrl);
  EntryMaker maker;
  const Clock::time_point start = Clock::now();
  sm::SplitWriter writer(std::move(writer_options));
  check(writer.begin(list_header()), "SplitWriter::begin");
  for (std::uint64_t i = 0; i < options.entries; ++i) {
    check(writer.add(maker.make(i)), "SplitWriter::add");
  }
  const sm::SplitResult result = check(writer.finish(), "SplitWriter::finish");
  const double seconds = seconds_since(start);
  std::printf("entries=%llu bytes=%llu parts=%zu seconds=%.6f\n",
              static_cast<unsigned long long>(result.entries),
              static_cast<unsigned long long>(result.bytes), result.parts.size(), seconds);
  return 0;
}

// Serialisation alone: one DocumentWriter into a sink that only counts, so the write figure
// can be split into formatting and file I/O.
class CountingSink final : public sm::Sink {
 public:
  shardsync::Result<void> write(std::string_view bytes) override {
    bytes_ += bytes.size();
    return {};
  }
  [[nodiscard]] std::uint64_t bytes() const { return bytes_; }

 private:
  std::uint64_t bytes_ = 0;
};

int child_serialise(const BenchOptions& options) {
  EntryMaker maker;
  CountingSink sink;
  const Clock::time_point start = Clock::now();
  sm::DocumentWriter writer(sink);
  check(writer.begin(list_header()), "DocumentWriter::begin");
  for (std::uint64_t i = 0; i < options.entries; ++i) {
    check(writer.add(maker.make(i)), "DocumentWriter::add");
  }
  check(writer.finish(), "DocumentWriter::finish");
  const double seconds = seconds_since(start);
  std::printf("entries=%llu bytes=%llu seconds=%.6f\n",
              static_cast<unsigned long long>(options.entries),
              static_cast<unsigned long long>(sink.bytes()), seconds);
  return 0;
}

// Touches every entry: counts them, sums lengths and loc bytes (the sums are checked by the
// parent, so nothing can be optimised away or silently dropped). In an index it collects
// the part locations instead.
class TouchingHandler final : public sm::ParseHandler {
 public:
  void on_header(const sm::DocumentHeader& header) override { index_ = header.is_index(); }
  void on_entry(sm::Entry&& entry) override {
    if (index_) {
      part_locs_.push_back(std::move(entry.loc));
      return;
    }
    ++entries_;
    loc_bytes_ += entry.loc.size();
    if (entry.md && entry.md->length) length_sum_ += *entry.md->length;
  }

  [[nodiscard]] const std::vector<std::string>& part_locs() const { return part_locs_; }
  [[nodiscard]] std::uint64_t entries() const { return entries_; }
  [[nodiscard]] std::uint64_t length_sum() const { return length_sum_; }
  [[nodiscard]] std::uint64_t loc_bytes() const { return loc_bytes_; }

 private:
  bool index_ = false;
  std::vector<std::string> part_locs_;
  std::uint64_t entries_ = 0;
  std::uint64_t length_sum_ = 0;
  std::uint64_t loc_bytes_ = 0;
};

sm::ParseStats parse_one(const std::string& path, TouchingHandler& handler) {
  auto source = check(sm::file_source(path), "open " + path);
  return check(sm::parse_stream(*source, handler), "parse " + path);
}

// Parses the index, then every part it names (locs under kListBaseUrl map to files in
// the directory), the way a client walks a Resource List Index.
int child_parse(const BenchOptions& options) {
  const Clock::time_point start = Clock::now();
  TouchingHandler handler;
  const std::string index_path = options.dir + "/" + std::string(kListName) + ".xml";
  sm::ParseStats stats = parse_one(index_path, handler);
  std::uint64_t bytes = stats.bytes;
  std::uint64_t files = 1;
  for (const std::string& loc : handler.part_locs()) {
    if (!loc.starts_with(kListBaseUrl)) throw std::runtime_error("unexpected part loc " + loc);
    stats = parse_one(options.dir + "/" + loc.substr(kListBaseUrl.size()), handler);
    bytes += stats.bytes;
    ++files;
  }
  const double seconds = seconds_since(start);
  std::printf("entries=%llu bytes=%llu files=%llu length_sum=%llu loc_bytes=%llu seconds=%.6f\n",
              static_cast<unsigned long long>(handler.entries()),
              static_cast<unsigned long long>(bytes), static_cast<unsigned long long>(files),
              static_cast<unsigned long long>(handler.length_sum()),
              static_cast<unsigned long long>(handler.loc_bytes()), seconds);
  return 0;
}

// --- the driver ----------------------------------------------------------------------------

struct PairResult {
  double ours_s = 0;
  double theirs_s = 0;
  double ours_cpu_s = 0;
  double theirs_cpu_s = 0;
  double ours_rss_mib = 0;
  double theirs_rss_mib = 0;
  bool kept = true;
};

std::vector<std::string> list_files(const BenchOptions& options, std::size_t parts) {
  std::vector<std::string> files{options.dir + "/" + std::string(kListName) + ".xml"};
  for (std::size_t i = 1; i <= parts; ++i) {
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, "-%05zu.xml", i);
    files.push_back(options.dir + "/" + std::string(kListName) + suffix);
  }
  return files;
}

// Reads every file once so both parsers start from a hot page cache.
void warm_page_cache(const std::vector<std::string>& files) {
  std::vector<char> buffer(1 << 20);
  for (const std::string& file : files) {
    std::ifstream in(file, std::ios::binary);
    while (in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()))) {
    }
  }
}

// Removes the list files an earlier run left, so every write run publishes into the same
// state (replacing a list makes rename() free the old file's blocks inside the timing).
void remove_list_files(const BenchOptions& options) {
  const std::string prefix(kListName);
  for (const fs::directory_entry& e : fs::directory_iterator(options.dir)) {
    const std::string name = e.path().filename().string();
    if (name.starts_with(prefix) && name.ends_with(".xml")) fs::remove(e.path());
  }
}

const char* verdict(bool ok) { return ok ? "MET" : "MISSED"; }

int run_driver(const BenchOptions& options) {
  const LoadAvg start_load = read_loadavg();
  std::printf("sitemap_bench: %llu entries, %d pairs, dir %s\n",
              static_cast<unsigned long long>(options.entries), options.pairs, options.dir.c_str());
  std::printf("loadavg at start: %s; %ld online CPUs\n\n", start_load.text.c_str(),
              ::sysconf(_SC_NPROCESSORS_ONLN));

  // An empty child: the RSS floor of any child of this binary (libc, libstdc++, the
  // pages fork copies from this driver before exec).
  const ChildRun idle = run_child(self_args("idle", options));
  std::printf("baseline  idle child peak RSS %.1f MiB\n\n", idle.max_rss_mib);

  // --- write -------------------------------------------------------------------------------
  std::printf(
      "write: SplitWriter, index + parts of 50,000, fsync + rename per file, into an empty "
      "dir\n");
  std::vector<double> write_rates;
  std::vector<double> write_mbps;
  double write_rss = 0;
  std::size_t parts = 0;
  double list_bytes = 0;
  for (int run = 1; run <= kWriteRuns; ++run) {
    remove_list_files(options);
    const ChildRun w = run_child(self_args("write", options));
    const double seconds = child_value(w.output, "seconds");
    list_bytes = child_value(w.output, "bytes");
    parts = static_cast<std::size_t>(child_value(w.output, "parts"));
    write_rates.push_back(static_cast<double>(options.entries) / seconds);
    write_mbps.push_back(list_bytes / 1e6 / seconds);
    write_rss = std::max(write_rss, w.max_rss_mib);
    std::printf(
        "  run %d: %.3f s  %.0f entries/s  %.1f MB/s  (%.1f MB in %s)  cpu %.3f s  "
        "peak RSS %.1f MiB\n",
        run, seconds, write_rates.back(), write_mbps.back(), list_bytes / 1e6,
        parts == 0 ? "one document" : (std::to_string(parts) + " parts + index").c_str(), w.cpu_s,
        w.max_rss_mib);
  }
  const ChildRun ser = run_child(self_args("serialise", options));
  const double ser_seconds = child_value(ser.output, "seconds");
  std::printf(
      "  serialise only (DocumentWriter into a counting sink, no files): %.3f s  "
      "%.0f entries/s  %.1f MB/s  peak RSS %.1f MiB\n",
      ser_seconds, static_cast<double>(options.entries) / ser_seconds,
      child_value(ser.output, "bytes") / 1e6 / ser_seconds, ser.max_rss_mib);
  const double write_rate = median(write_rates);
  std::printf("  median: %.0f entries/s  %.1f MB/s\n\n", write_rate, median(write_mbps));

  // --- parse: ours vs xmllint, interleaved ---------------------------------------------------
  const std::vector<std::string> files = list_files(options, parts);
  std::uint64_t file_bytes = 0;
  for (const std::string& f : files) file_bytes += fs::file_size(f);
  std::uint64_t expected_length_sum = 0;
  for (std::uint64_t i = 0; i < options.entries; ++i) expected_length_sum += fake_length(i);

  std::vector<std::string> xmllint_args{"xmllint", "--stream", "--noout"};
  xmllint_args.insert(xmllint_args.end(), files.begin(), files.end());
  const std::vector<std::string> ours_args = self_args("parse", options);

  const auto run_ours = [&] {
    ChildRun r = run_child(ours_args);
    const auto entries = static_cast<std::uint64_t>(child_value(r.output, "entries"));
    const auto length_sum = static_cast<std::uint64_t>(child_value(r.output, "length_sum"));
    if (entries != options.entries || length_sum != expected_length_sum) {
      throw std::runtime_error("parse read back wrong data: " + r.output);
    }
    return r;
  };

  std::printf("parse: %zu files, %.1f MB; ours = parse_stream over the index and its parts,\n",
              files.size(), static_cast<double>(file_bytes) / 1e6);
  std::printf(
      "       theirs = xmllint --stream --noout <index> <parts...>; wall from fork to wait4\n");
  warm_page_cache(files);
  const ChildRun warm_ours = run_ours();
  const ChildRun warm_theirs = run_child(xmllint_args);
  std::printf("  warm-up (not counted): ours %.3f s, xmllint %.3f s\n", warm_ours.wall_s,
              warm_theirs.wall_s);
  std::printf("  %-4s %-5s %9s %9s %7s %9s %9s %7s %8s %8s  %s\n", "pair", "order", "ours s",
              "xmllint s", "ratio", "ours cpu", "xml cpu", "cpu rat", "ours RSS", "xml RSS",
              "loadavg before -> after");

  std::vector<PairResult> pairs;
  for (int k = 0; k < options.pairs; ++k) {
    const LoadAvg before = read_loadavg();
    const bool ours_first = k % 2 == 0;  // ABAB...: pair 1 AB, pair 2 BA, ...
    ChildRun ours;
    ChildRun theirs;
    if (ours_first) {
      ours = run_ours();
      theirs = run_child(xmllint_args);
    } else {
      theirs = run_child(xmllint_args);
      ours = run_ours();
    }
    const LoadAvg after = read_loadavg();
    PairResult p{ours.wall_s,      theirs.wall_s,      ours.cpu_s, theirs.cpu_s,
                 ours.max_rss_mib, theirs.max_rss_mib, true};
    p.kept = std::abs(after.one - before.one) <= kLoadMoveLimit;
    pairs.push_back(p);
    std::printf("  %-4d %-5s %9.3f %9.3f %7.3f %9.3f %9.3f %7.3f %8.1f %8.1f  %s -> %s%s\n", k + 1,
                ours_first ? "AB" : "BA", p.ours_s, p.theirs_s, p.ours_s / p.theirs_s, p.ours_cpu_s,
                p.theirs_cpu_s, p.ours_cpu_s / p.theirs_cpu_s, p.ours_rss_mib, p.theirs_rss_mib,
                before.text.c_str(), after.text.c_str(), p.kept ? "" : "  DISCARDED (load moved)");
    std::fflush(stdout);
  }

  std::vector<double> ratios;
  std::vector<double> cpu_ratios;
  std::vector<double> ours_times;
  std::vector<double> theirs_times;
  double parse_rss = 0;
  double xmllint_rss = 0;
  for (const PairResult& p : pairs) {
    parse_rss = std::max(parse_rss, p.ours_rss_mib);
    xmllint_rss = std::max(xmllint_rss, p.theirs_rss_mib);
    if (!p.kept) continue;
    ratios.push_back(p.ours_s / p.theirs_s);
    cpu_ratios.push_back(p.ours_cpu_s / p.theirs_cpu_s);
    ours_times.push_back(p.ours_s);
    theirs_times.push_back(p.theirs_s);
  }
  if (ratios.empty()) {
    std::printf(
        "  every pair was discarded: the load average kept moving; rerun on a quieter box\n");
    return 1;
  }
  const double ratio = median(ratios);
  const double ours_s = median(ours_times);
  const double theirs_s = median(theirs_times);
  const auto [min_ratio, max_ratio] = std::minmax_element(ratios.begin(), ratios.end());
  const double entries = static_cast<double>(options.entries);
  const double mb = static_cast<double>(file_bytes) / 1e6;
  std::printf(
      "  kept %zu of %zu pairs; ratio ours/xmllint (wall): median %.3f, min %.3f, max %.3f\n",
      ratios.size(), pairs.size(), ratio, *min_ratio, *max_ratio);
  std::printf("  ratio ours/xmllint (cpu): median %.3f\n", median(cpu_ratios));
  std::printf("  ours    median %.3f s  %.0f entries/s  %.1f MB/s\n", ours_s, entries / ours_s,
              mb / ours_s);
  std::printf("  xmllint median %.3f s  %.0f entries/s  %.1f MB/s\n\n", theirs_s,
              entries / theirs_s, mb / theirs_s);

  // --- summary -----------------------------------------------------------------------------
  const double ours_rss = std::max(write_rss, parse_rss);
  const bool parse_ok = ratio <= kGoalParseRatio;
  const bool write_ok = write_rate >= kGoalWriteEntriesPerS;
  const bool rss_ok = ours_rss < kGoalPeakRssMiB;
  std::printf("summary (%llu entries, %.1f MB, loadavg now %s)\n",
              static_cast<unsigned long long>(options.entries), list_bytes / 1e6,
              read_loadavg().text.c_str());
  std::printf("  parse ratio ours/xmllint  %.3f (min %.3f, max %.3f)  goal <= %.1f   %s\n", ratio,
              *min_ratio, *max_ratio, kGoalParseRatio, verdict(parse_ok));
  std::printf("  write                     %.0f entries/s            goal >= %.0f  %s\n",
              write_rate, kGoalWriteEntriesPerS, verdict(write_ok));
  std::printf("  peak RSS ours             write %.1f MiB, parse %.1f MiB  goal < %.0f MiB   %s\n",
              write_rss, parse_rss, kGoalPeakRssMiB, verdict(rss_ok));
  std::printf("  peak RSS xmllint          %.1f MiB (idle child of this binary: %.1f MiB)\n",
              xmllint_rss, idle.max_rss_mib);
  return 0;
}

// --- command line --------------------------------------------------------------------------

template <typename T>
T parse_number(std::string_view flag, std::string_view text) {
  T value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    throw UsageError(std::string(flag) + " needs a number, not '" + std::string(text) + "'");
  }
  return value;
}

BenchOptions parse_command_line(int argc, char** argv) {
  BenchOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage.data(), stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) throw UsageError("unknown flag or missing value: " + std::string(flag));
    const std::string_view value = argv[++i];
    if (flag == "--entries") {
      options.entries = parse_number<std::uint64_t>(flag, value);
    } else if (flag == "--pairs") {
      options.pairs = parse_number<int>(flag, value);
    } else if (flag == "--dir") {
      options.dir = value;
    } else if (flag == "--child") {
      options.child = value;
    } else {
      throw UsageError("unknown flag " + std::string(flag));
    }
  }
  if (options.entries == 0) throw UsageError("--entries must be at least 1");
  if (options.pairs < 1) throw UsageError("--pairs must be at least 1");
  return options;
}

// Creates the working directory; removes it at scope exit when it was a temp dir we made.
class WorkDir {
 public:
  explicit WorkDir(std::string& dir) {
    if (!dir.empty()) {
      fs::create_directories(dir);
      return;
    }
    std::string pattern = (fs::temp_directory_path() / "sitemap_bench.XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir = pattern;
    temp_ = pattern;
  }
  ~WorkDir() {
    if (temp_.empty()) return;
    std::error_code ec;
    fs::remove_all(temp_, ec);
  }
  WorkDir(const WorkDir&) = delete;
  WorkDir& operator=(const WorkDir&) = delete;

 private:
  std::string temp_;
};

int run(int argc, char** argv) {
  BenchOptions options = parse_command_line(argc, argv);
  if (options.child == "idle") return 0;
  if (options.child == "write") return child_write(options);
  if (options.child == "serialise") return child_serialise(options);
  if (options.child == "parse") return child_parse(options);
  if (!options.child.empty()) throw UsageError("unknown child mode " + options.child);
  WorkDir work_dir(options.dir);
  return run_driver(options);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "sitemap_bench: %s\n%s", e.what(), kUsage.data());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sitemap_bench: %s\n", e.what());
    return 1;
  }
}
