// shardsync bridge aggregate: the aggregator of the bridge's topology (b): reduces each sync's
// payloads once, publishes the quantized Δ̄ and the commit record.

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "commands.hpp"
#include "log_line.hpp"
#include "shardsync/bridge/aggregator.hpp"
#include "token_file.hpp"

namespace shardsync::app {
namespace {

using namespace shardsync::bridge;

struct AggregateFlags {
  std::string url, token_file, run = "run1", name = "aggregator";
  std::vector<std::string> follow;
  std::int64_t steps = 40, min_workers = 1, workers = 0, grace_ms = 1000, checkpoint_every = 1;
  bool zstd = false;
};

int run_aggregate(const AggregateFlags& f) {
  BridgeOptions o;
  o.run_id = f.run;
  o.worker_id = f.name;
  o.publish_url = f.url;
  o.commit_url = f.url;
  o.follow_urls = f.follow;
  if (!f.token_file.empty()) {
    auto token = read_token_file(f.token_file);
    if (!token) {
      log_line("bridge", "error", "bridge aggregate: " + token.error().describe());
      return kExitUsage;
    }
    o.write_token = *token;
  }
  o.min_workers = f.min_workers;
  o.num_workers = f.workers;
  o.grace = std::chrono::milliseconds(f.grace_ms);
  o.checkpoint_every = f.checkpoint_every;
  o.zstd = f.zstd;
  o.log = [](std::string_view level, std::string_view message) {
    log_line("bridge", level, message);
  };
  std::unique_ptr<Aggregator> aggregator;
  try {
    aggregator = std::make_unique<Aggregator>(o);
  } catch (const std::invalid_argument& e) {
    log_line("bridge", "error", std::string("bridge aggregate: ") + e.what());
    return kExitUsage;
  }
  auto done = aggregator->run(f.steps, [](const SyncRecord& r) {
    std::string included;
    for (const auto& w : r.included) included += (included.empty() ? "" : ",") + w;
    std::printf(
        "sync fragment=%lld sync=%llu send=%lld global=%s included=%s skipped=%d up=%llu "
        "down=%llu\n",
        static_cast<long long>(r.fragment), static_cast<unsigned long long>(r.sync),
        static_cast<long long>(r.send_step),
        r.global_sha256.empty() ? "-" : r.global_sha256.c_str(),
        included.empty() ? "-" : included.c_str(), r.skipped,
        static_cast<unsigned long long>(r.bytes_up), static_cast<unsigned long long>(r.bytes_down));
    std::fflush(stdout);
  });
  if (!done) {
    log_line("bridge", "error", "bridge aggregate: " + done.error().describe());
    return kExitFailure;
  }
  for (std::int64_t p = 0;; ++p) {
    const std::string sha = aggregator->global_sha256(p);
    if (sha.empty()) break;
    std::printf("final fragment=%lld global=%s\n", static_cast<long long>(p), sha.c_str());
  }
  return kExitOk;
}

}  // namespace

void add_bridge_aggregate_command(CLI::App* bridge, int& exit_code) {
  auto f = std::make_shared<AggregateFlags>();
  CLI::App* a = bridge->add_subcommand(
      "aggregate", "Aggregate a run's payloads: publish one reduced Δ̄ and the commit per sync");
  a->add_option("--url", f->url, "collection holding run.json and the commits")->required();
  a->add_option("--follow", f->follow, "collection URLs with payloads (repeatable; default --url)");
  a->add_option("--token-file", f->token_file, "bearer token for PUT");
  a->add_option("--run", f->run, "run id (default run1)");
  a->add_option("--name", f->name, "committer name (default aggregator)");
  a->add_option("--steps", f->steps, "the run's inner steps (default 40)");
  a->add_option("--min-workers", f->min_workers, "quorum K (default 1)");
  a->add_option("--workers", f->workers, "M: commit as soon as M payloads are in");
  a->add_option("--grace-ms", f->grace_ms, "wait after the first payload (default 1000)");
  a->add_option("--checkpoint-every", f->checkpoint_every, "syncs between checkpoints (default 1)");
  a->add_flag("--zstd", f->zstd, "wrap reduced files in zstd");
  a->footer(
      "Example: shardsync bridge aggregate --url http://127.0.0.1:8080/bridge --workers 3 "
      "--min-workers 2 --steps 100 --token-file tok");
  a->callback([f, &exit_code] { exit_code = run_aggregate(*f); });
}

}  // namespace shardsync::app
