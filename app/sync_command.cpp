// shardsync sync / shardsync audit: mirror a ResourceSync source into a directory, or compare
// a directory with it.

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "commands.hpp"
#include "log_line.hpp"
#include "shardsync/client/errc.hpp"
#include "shardsync/client/follow.hpp"
#include "shardsync/client/sync.hpp"
#include "token_file.hpp"

namespace shardsync::app {
namespace {

struct SyncFlags {
  std::string source, dest, collection, token_file, ca_file;
  std::vector<std::string> maps;  // URL_PREFIX=DIR
  bool delete_files = false, baseline = false, json = false, quiet = false, via_dump = false;
  std::optional<std::uint64_t> max_delete;
  int parallel = 8;
  bool follow = false;
  double poll_interval_s = 10;
};

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int unit = 0;
  while (bytes >= 1000 && unit < 4) {
    bytes /= 1000;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.1f %s", bytes, units[unit]);
  return text;
}

// A one-line progress display on a terminal (stderr), redrawn at most 10 times a second.
class ProgressBar {
 public:
  explicit ProgressBar(bool enabled) : enabled_(enabled) {}
  ~ProgressBar() { finish(); }

  void update(const client::SyncProgress& p) {
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    if (drawn_ && now - last_ < std::chrono::milliseconds(100) && p.files_done < p.files_total) {
      return;
    }
    last_ = now;
    const double seconds = std::chrono::duration<double>(now - started_).count();
    const double rate = seconds > 0 ? static_cast<double>(p.bytes_done) / seconds : 0;
    std::string eta = "--";
    if (rate > 0 && p.bytes_total > p.bytes_done) {
      eta = std::to_string(
                static_cast<long>(static_cast<double>(p.bytes_total - p.bytes_done) / rate)) +
            "s";
    }
    std::fprintf(stderr, "\r\033[K%llu/%llu files  %s/%s  %s/s  ETA %s",
                 static_cast<unsigned long long>(p.files_done),
                 static_cast<unsigned long long>(p.files_total),
                 human_bytes(static_cast<double>(p.bytes_done)).c_str(),
                 human_bytes(static_cast<double>(p.bytes_total)).c_str(), human_bytes(rate).c_str(),
                 eta.c_str());
    drawn_ = true;
  }
  void finish() {
    if (drawn_) std::fprintf(stderr, "\r\033[K");
    drawn_ = false;
  }

 private:
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_{};
};

int exit_code_for(const Error& error) {
  const bool usage =
      error.code == client::errc::invalid_options || error.code == client::errc::ambiguous_source;
  return usage ? kExitUsage : kExitFailure;
}

// Flags → options; an error message (usage) when they cannot work.
std::optional<client::SyncOptions> options_from(const SyncFlags& f, int& exit_code) {
  client::SyncOptions o;
  o.source = f.source;
  o.dest = f.dest;
  o.collection = f.collection;
  o.delete_files = f.delete_files;
  o.max_delete = f.max_delete;
  o.parallel = f.parallel;
  o.force_baseline = f.baseline;
  o.via_dump = f.via_dump;
  o.ca_file = f.ca_file;
  for (const auto& map : f.maps) {
    const auto eq = map.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::fprintf(stderr, "shardsync: --map wants URL_PREFIX=DIR, got '%s'\n", map.c_str());
      exit_code = kExitUsage;
      return std::nullopt;
    }
    o.maps.emplace_back(map.substr(0, eq), map.substr(eq + 1));
  }
  if (!f.token_file.empty()) {
    auto token = read_token_file(f.token_file);
    if (!token) {
      std::fprintf(stderr, "shardsync: %s\n", token.error().detail.c_str());
      exit_code = kExitUsage;
      return std::nullopt;
    }
    o.bearer_token = *token;
  }
  if (!f.quiet) o.log = [](const std::string& line) { log_line("client", "INFO", line); };
  return o;
}

nlohmann::json failures_json(const std::vector<client::ResourceFailure>& failures) {
  auto list = nlohmann::json::array();
  for (const auto& f : failures) {
    list.push_back({{"url", f.url},
                    {"path", f.path},
                    {"error", f.error.code.category().name() + std::string(":") +
                                  std::to_string(f.error.code.value())},
                    {"detail", f.error.describe()}});
  }
  return list;
}

// The result of one sync: a line (or a JSON object) on stdout, warnings on stderr. `trigger`
// names what started a --follow round (nullptr otherwise).
void print_report(const client::SyncReport& r, const SyncFlags& f, const char* trigger) {
  const char* mode = r.mode == client::SyncMode::baseline ? "baseline" : "incremental";
  if (f.json) {
    nlohmann::json j({{"in_sync", r.in_sync()},
                      {"mode", mode},
                      {"set", r.set_name},
                      {"rebaseline_reason", r.rebaseline_reason},
                      {"listed", r.listed},
                      {"fetched", r.fetched},
                      {"up_to_date", r.up_to_date},
                      {"deleted", r.deleted},
                      {"deletes_skipped", r.deletes_skipped},
                      {"delete_refusal", r.delete_refusal},
                      {"bytes_fetched", r.bytes_fetched},
                      {"bytes_resumed", r.bytes_resumed},
                      {"documents", r.documents},
                      {"document_bytes", r.document_bytes},
                      {"unverified", r.unverified},
                      {"failures", failures_json(r.failures)},
                      {"seconds", r.seconds}});
    if (trigger) j["trigger"] = trigger;
    std::printf("%s\n", j.dump().c_str());
  } else {
    for (const auto& failure : r.failures) {
      std::printf("failed %s: %s\n",
                  failure.path.empty() ? failure.url.c_str() : failure.path.c_str(),
                  failure.error.describe().c_str());
    }
    if (trigger) std::printf("[%s] ", trigger);
    std::printf(
        "%s: %s %s sync in %.2f s: %llu fetched (%s), %llu up to date, %llu deleted%s%s\n",
        r.in_sync() ? "in sync" : "NOT in sync", r.set_name.empty() ? "" : r.set_name.c_str(), mode,
        r.seconds, static_cast<unsigned long long>(r.fetched),
        human_bytes(static_cast<double>(r.bytes_fetched)).c_str(),
        static_cast<unsigned long long>(r.up_to_date), static_cast<unsigned long long>(r.deleted),
        r.failures.empty() ? "" : (", " + std::to_string(r.failures.size()) + " failed").c_str(),
        r.delete_refusal.empty() ? "" : ("; " + r.delete_refusal).c_str());
  }
  if (!r.rebaseline_reason.empty() && !f.quiet) {
    log_line("client", "WARN", "re-baselined: " + r.rebaseline_reason);
  }
  if (r.unverified > 0 && !f.quiet) {
    log_line("client", "WARN",
             std::to_string(r.unverified) +
                 " resources are listed without a hash: checked by "
                 "length only");
  }
  std::fflush(stdout);
}

// --follow: rounds until SIGINT/SIGTERM, which a thread of its own receives (blocked in all
// others) and turns into Follower::stop(); the round in progress finishes first.
int run_follow(const SyncFlags& f, const client::SyncOptions& options) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  client::FollowOptions follow;
  follow.poll_interval =
      std::chrono::milliseconds(static_cast<std::int64_t>(f.poll_interval_s * 1000));
  client::Follower follower(options, follow);
  std::atomic<bool> done{false};
  std::thread waiter([&] {
    while (!done) {
      const timespec tick{0, 200'000'000};
      const int signal = sigtimedwait(&signals, nullptr, &tick);
      if (signal == SIGINT || signal == SIGTERM) {
        if (!f.quiet) log_line("client", "INFO", "signal received: stopping after this round");
        follower.stop();
        return;
      }
    }
  });
  auto ran = follower.run([&f](const client::FollowRound& round) {
    const char* trigger = client::round_trigger_name(round.trigger);
    if (!round.report) {
      log_line("client", "ERROR",
               std::string(trigger) + " round: " + round.report.error().describe());
      if (f.json) {
        std::printf("%s\n", nlohmann::json({{"in_sync", false},
                                            {"trigger", trigger},
                                            {"error", round.report.error().describe()}})
                                .dump()
                                .c_str());
        std::fflush(stdout);
      }
      return;
    }
    const client::SyncReport& r = *round.report;
    const bool applied = r.fetched > 0 || r.deleted > 0 || !r.in_sync();
    const bool worth_a_line = applied || round.trigger == client::RoundTrigger::initial ||
                              round.trigger == client::RoundTrigger::event;
    if (f.json || (!f.quiet && worth_a_line)) print_report(r, f, trigger);
  });
  done = true;
  waiter.join();
  if (!ran) {
    log_line("client", "ERROR", ran.error().describe());
    return exit_code_for(ran.error());
  }
  return kExitOk;
}

int run_sync(const SyncFlags& f) {
  int exit_code = kExitOk;
  auto options = options_from(f, exit_code);
  if (!options) return exit_code;
  if (f.follow) return run_follow(f, *options);
  ProgressBar bar(!f.json && !f.quiet && ::isatty(STDERR_FILENO));
  // Log lines and the bar share stderr: clear the bar before each line.
  if (options->log) {
    options->log = [&bar](const std::string& line) {
      bar.finish();
      log_line("client", "INFO", line);
    };
  }
  auto report = client::sync(*options, [&bar](const client::SyncProgress& p) { bar.update(p); });
  bar.finish();
  if (!report) {
    log_line("client", "ERROR", report.error().describe());
    if (f.json) {
      std::printf("%s\n", nlohmann::json({{"in_sync", false}, {"error", report.error().describe()}})
                              .dump()
                              .c_str());
    }
    return exit_code_for(report.error());
  }
  print_report(*report, f, nullptr);
  return report->in_sync() ? kExitOk : kExitPartial;
}

int run_audit(const SyncFlags& f) {
  int exit_code = kExitOk;
  auto options = options_from(f, exit_code);
  if (!options) return exit_code;
  auto report = client::audit(*options);
  if (!report) {
    log_line("client", "ERROR", report.error().describe());
    return exit_code_for(report.error());
  }
  const auto& r = *report;
  if (f.json) {
    auto differences = nlohmann::json::array();
    for (const auto& d : r.differences) {
      differences.push_back({{"kind", client::audit_kind_name(d.kind)},
                             {"path", d.path},
                             {"url", d.url},
                             {"detail", d.detail}});
    }
    std::printf("%s\n", nlohmann::json({{"in_sync", r.in_sync()},
                                        {"set", r.set_name},
                                        {"listed", r.listed},
                                        {"matched", r.matched},
                                        {"differences", differences},
                                        {"seconds", r.seconds}})
                            .dump()
                            .c_str());
  } else {
    for (const auto& d : r.differences) {
      std::printf("%-7s %s  %s\n", client::audit_kind_name(d.kind),
                  d.path.empty() ? d.url.c_str() : d.path.c_str(), d.detail.c_str());
    }
    std::printf("%s: %llu listed, %llu match, %zu differ (%.2f s)\n",
                r.in_sync() ? "IN SYNC" : "NOT IN SYNC", static_cast<unsigned long long>(r.listed),
                static_cast<unsigned long long>(r.matched), r.differences.size(), r.seconds);
  }
  return r.in_sync() ? kExitOk : kExitPartial;
}

void add_common_flags(CLI::App* command, SyncFlags& f) {
  command
      ->add_option("source", f.source,
                   "base URL of the source, or the URL of a Source Description, Capability "
                   "List, Resource List or Change List")
      ->required();
  command->add_option("dest", f.dest, "the local mirror directory")->required();
  command->add_option("--collection", f.collection,
                      "which resource set, when the source publishes several");
  command->add_option("--token-file", f.token_file, "file holding a bearer token for the source");
  command->add_option("--map", f.maps,
                      "URL_PREFIX=DIR: resources under URL_PREFIX go to DIR (relative to DEST)");
  command->add_option("--ca-file", f.ca_file, "CA certificates to trust for https");
  command->add_flag("--json", f.json, "print the report as one JSON object on stdout");
  command->add_flag("-q,--quiet", f.quiet, "no log lines or progress, only the result");
}

}  // namespace

void add_sync_command(CLI::App& app, int& exit_code) {
  auto f = std::make_shared<SyncFlags>();
  CLI::App* sync = app.add_subcommand(
      "sync", "Mirror a ResourceSync source into a directory (baseline, then incremental)");
  add_common_flags(sync, *f);
  sync->add_flag("--delete", f->delete_files,
                 "delete local files the source deleted or no longer lists");
  sync->add_option("--max-delete", f->max_delete,
                   "make no deletions at all when more than N would be made (default: a baseline "
                   "deletes nothing when more than half the mirror would go)");
  sync->add_option("--parallel", f->parallel, "transfers at once (default 8)")
      ->check(CLI::Range(1, 256));
  sync->add_flag("--baseline", f->baseline,
                 "start over from the Resource List (also to switch DEST to another source)");
  sync->add_flag("--via-dump", f->via_dump,
                 "baseline from the source's Resource Dump (ZIP packages, unpacked by their "
                 "manifests) instead of one GET per file; falls back to the Resource List, with a "
                 "log line, when the source offers no Resource Dump");
  sync->add_flag("--follow", f->follow,
                 "stay running: sync again whenever the source announces changes (its "
                 "changelist-notification event stream), polling while that is unavailable; "
                 "SIGINT/SIGTERM end it after the round in progress (exit 0)");
  sync->add_option("--poll-interval", f->poll_interval_s,
                   "seconds between polls of the Change List while --follow has no event "
                   "stream (default 10)")
      ->check(CLI::Range(0.05, 86400.0));
  sync->footer(
      "Examples:\n"
      "  shardsync sync http://host:8080/ ./mirror --collection ckpt\n"
      "  shardsync sync http://host:8080/ckpt/capabilitylist.xml ./mirror --delete\n"
      "  shardsync sync http://host:8080/ckpt/capabilitylist.xml ./mirror --via-dump\n"
      "  shardsync sync http://host:8080/ ./mirror --collection ckpt --follow\n"
      "The first run copies everything (baseline); later runs fetch only what changed since.\n"
      "Exit: 0 in sync, 1 failure, 2 usage, 3 finished but some resources failed (listed).");
  sync->callback([f, &exit_code] { exit_code = run_sync(*f); });

  auto a = std::make_shared<SyncFlags>();
  CLI::App* audit = app.add_subcommand(
      "audit", "Compare a directory with a ResourceSync source by length and hash");
  add_common_flags(audit, *a);
  audit->footer(
      "Example:\n"
      "  shardsync audit http://host:8080/ ./mirror --collection ckpt\n"
      "Exit: 0 in sync, 1 failure, 2 usage, 3 out of sync (differences listed).");
  audit->callback([a, &exit_code] { exit_code = run_audit(*a); });
}

}  // namespace shardsync::app
