// shardsync bridge worker: a small deterministic C++ trainer (a two-layer tanh network on
// synthetic regression data seeded by the worker id) driven through DiLoCoBridge, so that
// tests and users can run M workers as processes against `shardsync serve`.

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "commands.hpp"
#include "log_line.hpp"
#include "shardsync/bridge/bridge.hpp"
#include "token_file.hpp"

namespace shardsync::app {
namespace {

using namespace shardsync::bridge;

struct WorkerFlags {
  std::string url, commit_url, token_file, run = "run1", worker, wire = "f32", pattern = "strided";
  std::string topology = "allgather";
  std::vector<std::string> follow;
  bool coordinator = false, zstd = false, check_state = false;
  std::int64_t steps = 40, h = 10, p = 1, tau = 0, min_workers = 1, workers = 0;
  std::int64_t grace_ms = 1000, commit_timeout_ms = 20'000, step_ms = 0;
  std::int64_t stall_step = 0, stall_ms = 0, exit_at_step = 0, checkpoint_every = 1;
  std::uint64_t block = 128, hidden = 16;
  double alpha = 0.5, outer_lr = 0.7, outer_momentum = 0.9, lr = 0.05;
};

// A 2-layer tanh regression net: y = W2 tanh(W1 x + b1) + b2; layer 0 = (W1, b1), layer 1 =
// (W2, b2). Plain SGD inner steps on batches seeded by (worker, step).
class TinyNet {
 public:
  static constexpr std::size_t kIn = 8, kOut = 4, kBatch = 16;
  explicit TinyNet(std::size_t hidden)
      : width_(hidden), w1(width_ * kIn), b1(width_), w2(kOut * width_), b2(kOut) {
    std::mt19937_64 rng(7);  // the same θ0 everywhere (the coordinator's is published anyway)
    std::normal_distribution<float> n(0.0f, 0.3f);
    for (float& v : w1) v = n(rng);
    for (float& v : w2) v = n(rng);
  }
  std::vector<Parameter> parameters() {
    return {{"layer0.weight", {width_, kIn}, w1, 0},
            {"layer0.bias", {width_}, b1, 0},
            {"layer1.weight", {kOut, width_}, w2, 1},
            {"layer1.bias", {kOut}, b2, 1}};
  }
  // One SGD step on worker `seed`'s batch for `step`; returns the batch loss.
  double train_step(std::uint64_t seed, std::int64_t step, float lr) {
    std::mt19937_64 rng(seed * 1'000'003 + static_cast<std::uint64_t>(step));
    std::normal_distribution<float> n(0.0f, 1.0f);
    std::vector<float> gw1(w1.size()), gb1(b1.size()), gw2(w2.size()), gb2(b2.size());
    double loss = 0;
    for (std::size_t b = 0; b < kBatch; ++b) {
      float x[kIn], y[kOut], t[kOut];
      std::vector<float>& h = activations_;
      h.resize(width_);
      for (float& v : x) v = n(rng);
      for (std::size_t o = 0; o < kOut; ++o) {  // the target: a fixed smooth function
        t[o] = std::sin(x[o] + 0.5f * x[o + kOut]) + 0.1f * static_cast<float>(o);
      }
      for (std::size_t j = 0; j < width_; ++j) {
        float a = b1[j];
        for (std::size_t i = 0; i < kIn; ++i) a += w1[j * kIn + i] * x[i];
        h[j] = std::tanh(a);
      }
      float dy[kOut];
      for (std::size_t o = 0; o < kOut; ++o) {
        float a = b2[o];
        for (std::size_t j = 0; j < width_; ++j) a += w2[o * width_ + j] * h[j];
        y[o] = a;
        dy[o] = 2.0f * (y[o] - t[o]) / static_cast<float>(kBatch * kOut);
        loss += static_cast<double>((y[o] - t[o]) * (y[o] - t[o])) / (kBatch * kOut);
      }
      for (std::size_t j = 0; j < width_; ++j) {
        float dh = 0;
        for (std::size_t o = 0; o < kOut; ++o) {
          gw2[o * width_ + j] += dy[o] * h[j];
          dh += dy[o] * w2[o * width_ + j];
        }
        const float da = dh * (1.0f - h[j] * h[j]);
        gb1[j] += da;
        for (std::size_t i = 0; i < kIn; ++i) gw1[j * kIn + i] += da * x[i];
      }
      for (std::size_t o = 0; o < kOut; ++o) gb2[o] += dy[o];
    }
    auto apply = [lr](std::vector<float>& p, const std::vector<float>& g) {
      for (std::size_t i = 0; i < p.size(); ++i) p[i] -= lr * g[i];
    };
    apply(w1, gw1);
    apply(b1, gb1);
    apply(w2, gw2);
    apply(b2, gb2);
    return loss;
  }

 private:
  std::size_t width_;
  std::vector<float> w1, b1, w2, b2;
  std::vector<float> activations_;
};

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ",") + x;
  return s.empty() ? "-" : s;
}

int run_worker(const WorkerFlags& f) {
  BridgeOptions o;
  o.run_id = f.run;
  o.worker_id = f.worker;
  o.publish_url = f.url;
  o.follow_urls = f.follow;
  o.commit_url = f.commit_url;
  if (!f.token_file.empty()) {
    auto token = read_token_file(f.token_file);
    if (!token) {
      log_line("bridge", "error", "bridge worker: " + token.error().describe());
      return kExitUsage;
    }
    o.write_token = *token;
  }
  RunConfig config;
  config.h = f.h;
  config.p = f.p;
  config.pattern = f.pattern == "sequential" ? Pattern::sequential : Pattern::strided;
  config.tau = f.tau;
  config.alpha = f.alpha;
  config.outer_lr = f.outer_lr;
  config.outer_momentum = f.outer_momentum;
  config.wire_format = f.wire;
  config.block_size = f.block;
  config.n_layers = 2;
  o.config = config;
  o.coordinator = f.coordinator;
  o.topology = f.topology == "aggregator" ? Topology::aggregator : Topology::allgather;
  o.min_workers = f.min_workers;
  o.num_workers = f.workers;
  o.grace = std::chrono::milliseconds(f.grace_ms);
  o.commit_timeout = std::chrono::milliseconds(f.commit_timeout_ms);
  o.zstd = f.zstd;
  o.checkpoint_every = f.checkpoint_every;
  o.log = [](std::string_view level, std::string_view message) {
    log_line("bridge", level, message);
  };
  TinyNet net(f.hidden);
  std::unique_ptr<DiLoCoBridge> bridge;
  try {
    bridge = std::make_unique<DiLoCoBridge>(o, net.parameters());
  } catch (const std::invalid_argument& e) {
    log_line("bridge", "error", std::string("bridge worker: ") + e.what());
    return kExitUsage;
  }
  auto start = bridge->bootstrap();
  if (!start) {
    log_line("bridge", "error", "bridge worker: bootstrap: " + start.error().describe());
    return kExitFailure;
  }
  std::printf("start worker=%s step=%lld\n", f.worker.c_str(), static_cast<long long>(*start));
  std::fflush(stdout);
  const std::uint64_t seed = std::hash<std::string>{}(f.worker);
  std::size_t printed = 0;
  auto print_syncs = [&] {
    const BridgeStats stats = bridge->stats();
    for (; printed < stats.records.size(); ++printed) {
      const SyncRecord& r = stats.records[printed];
      std::printf(
          "sync fragment=%lld sync=%llu send=%lld land=%lld global=%s included=%s own=%d late=%d "
          "skipped=%d committer=%d wait=%.3f up=%llu down=%llu\n",
          static_cast<long long>(r.fragment), static_cast<unsigned long long>(r.sync),
          static_cast<long long>(r.send_step), static_cast<long long>(r.land_step),
          r.global_sha256.empty() ? "-" : r.global_sha256.c_str(), joined(r.included).c_str(),
          r.own_included, r.late, r.skipped, r.committed_here, r.wait_seconds,
          static_cast<unsigned long long>(r.bytes_up),
          static_cast<unsigned long long>(r.bytes_down));
    }
    std::fflush(stdout);
  };
  double loss = 0;
  for (std::int64_t step = *start + 1; step <= f.steps; ++step) {
    if (step == f.stall_step) std::this_thread::sleep_for(std::chrono::milliseconds(f.stall_ms));
    if (f.step_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(f.step_ms));
    loss = net.train_step(seed, step, static_cast<float>(f.lr));
    if (auto r = bridge->after_inner_step(step, TinyNet::kBatch); !r) {
      print_syncs();
      log_line("bridge", "error",
               "bridge worker: step " + std::to_string(step) + ": " + r.error().describe());
      return kExitFailure;
    }
    print_syncs();
    if (step == f.exit_at_step) std::_Exit(9);  // a crash without cleanup, for fault tests
  }
  if (auto r = bridge->finalize(f.steps); !r) {
    log_line("bridge", "error", "bridge worker: finalize: " + r.error().describe());
    return kExitFailure;
  }
  print_syncs();
  const BridgeStats stats = bridge->stats();
  std::printf(
      "done worker=%s loss=%.6f syncs=%llu included=%llu late=%llu skipped=%llu rejected=%llu "
      "bytes_up=%llu bytes_down=%llu wait=%.3f\n",
      f.worker.c_str(), loss, static_cast<unsigned long long>(stats.syncs),
      static_cast<unsigned long long>(stats.included), static_cast<unsigned long long>(stats.late),
      static_cast<unsigned long long>(stats.skipped),
      static_cast<unsigned long long>(stats.rejected),
      static_cast<unsigned long long>(stats.bytes_up),
      static_cast<unsigned long long>(stats.bytes_down), stats.wait_seconds);
  for (std::int64_t p = 0; p < f.p; ++p) {
    std::printf("final fragment=%lld global=%s\n", static_cast<long long>(p),
                bridge->global_sha256(p).c_str());
  }
  if (f.check_state) {
    // state_dict() -> load_state_dict() must give back the same global fragments.
    // A truncated state is refused and leaves the bridge as it was.
    const std::vector<std::uint8_t> state = bridge->state_dict();
    std::vector<std::string> before;
    for (std::int64_t p = 0; p < f.p; ++p) before.push_back(bridge->global_sha256(p));
    const std::vector<std::uint8_t> truncated(
        state.begin(), state.begin() + static_cast<std::ptrdiff_t>(state.size() / 2));
    bool same = !state.empty() && !bridge->load_state_dict(truncated) &&
                bridge->load_state_dict(state).has_value() && bridge->state_dict() == state;
    for (std::int64_t p = 0; p < f.p && same; ++p) {
      same = bridge->global_sha256(p) == before[static_cast<std::size_t>(p)];
    }
    std::printf("state_dict bytes=%zu roundtrip=%s\n", state.size(), same ? "ok" : "differs");
    if (!same) return kExitFailure;
  }
  return kExitOk;
}

}  // namespace

void add_bridge_worker_command(CLI::App* bridge, int& exit_code) {
  auto f = std::make_shared<WorkerFlags>();
  CLI::App* w = bridge->add_subcommand(
      "worker", "Train a small deterministic model as one DiLoCo worker through the bridge");
  w->add_option("--url", f->url, "collection this worker publishes to (http://HOST:PORT/NAME)")
      ->required();
  w->add_option("--follow", f->follow, "collection URLs to follow (repeatable; default --url)");
  w->add_option("--commit-url", f->commit_url, "collection holding commits (default --url)");
  w->add_option("--token-file", f->token_file, "bearer token for PUT");
  w->add_option("--run", f->run, "run id (default run1)");
  w->add_option("--worker", f->worker, "worker id")->required();
  w->add_flag("--coordinator", f->coordinator, "publish run.json and θ0 if the run has none");
  w->add_option("--steps", f->steps, "inner steps (default 40)");
  w->add_option("--H", f->h, "inner steps per sync (default 10)");
  w->add_option("--P", f->p, "fragments, 1 or 2 (default 1)");
  w->add_option("--pattern", f->pattern, "strided | sequential");
  w->add_option("--tau", f->tau, "overlap steps (default 0)");
  w->add_option("--alpha", f->alpha, "merge weight of local params (default 0.5)");
  w->add_option("--wire", f->wire, "f32 | bf16 | int8 | fp4-e3m0 (default f32)");
  w->add_option("--block", f->block, "quantization block (default 128)");
  w->add_option("--outer-lr", f->outer_lr, "default 0.7");
  w->add_option("--outer-momentum", f->outer_momentum, "default 0.9");
  w->add_option("--lr", f->lr, "inner SGD lr (default 0.05)");
  w->add_option("--min-workers", f->min_workers, "quorum K (default 1)");
  w->add_option("--workers", f->workers, "M: commit as soon as M payloads are in");
  w->add_option("--grace-ms", f->grace_ms, "wait after the deadline step (default 1000)");
  w->add_option("--commit-timeout-ms", f->commit_timeout_ms, "give up on a commit (default 20000)");
  w->add_option("--checkpoint-every", f->checkpoint_every, "syncs between checkpoints (default 1)");
  w->add_option("--step-ms", f->step_ms, "sleep per inner step (pacing)");
  w->add_option("--stall-step", f->stall_step, "sleep --stall-ms before this step (fault tests)");
  w->add_option("--stall-ms", f->stall_ms, "");
  w->add_option("--exit-at-step", f->exit_at_step, "die abruptly after this step (fault tests)");
  w->add_flag("--zstd", f->zstd, "wrap payloads in zstd");
  w->add_flag("--check-state", f->check_state,
              "at the end, check state_dict() -> load_state_dict() round-trips");
  w->add_option("--hidden", f->hidden, "hidden width of the model (default 16; 13 floats each)");
  w->add_option("--topology", f->topology,
                "allgather (workers commit) | aggregator (`shardsync bridge aggregate` commits)")
      ->check(CLI::IsMember({"allgather", "aggregator"}));
  w->footer(
      "Example: shardsync bridge worker --url http://127.0.0.1:8080/bridge --worker w0 "
      "--coordinator --workers 3 --min-workers 2 --token-file tok");
  w->callback([f, &exit_code] { exit_code = run_worker(*f); });
}

}  // namespace shardsync::app
