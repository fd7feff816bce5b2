// DiLoCoBridge: the training thread's side (copy, block at t + tau, merge) and a background
// thread that publishes payloads, follows the change lists, commits and reduces.
#include "shardsync/bridge/bridge.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>

#include "run_index.hpp"
#include "run_state.hpp"
#include "shardsync/bridge/protocol.hpp"
#include "sync_engine.hpp"
#include "transport.hpp"

namespace shardsync::bridge {

using Clock = std::chrono::steady_clock;
using detail::RunState;
using detail::SyncEngine;

struct DiLoCoBridge::Impl {
  struct Job {
    std::int64_t fragment = 0;
    std::uint64_t sync = 0;
    std::int64_t send_step = 0;
    std::vector<Tensor> local;
    std::uint64_t tokens = 0;
  };
  struct Pending {
    std::int64_t fragment = 0;
    std::uint64_t sync = 0;
    std::int64_t send_step = 0;
    std::int64_t land_step = 0;
  };
  using Key = std::pair<std::int64_t, std::uint64_t>;

  BridgeOptions options;
  std::vector<Parameter> params;
  std::map<std::string, std::size_t> param_index;
  RunConfig config;
  std::optional<Schedule> schedule;
  std::unique_ptr<SyncEngine> engine;  // owned by the background thread after bootstrap()
  std::string nonce;
  bool bootstrapped = false;
  bool finalized = false;
  std::int64_t last_step = 0;
  std::vector<std::uint64_t> sent;               // per fragment: syncs sent (training thread)
  std::vector<std::uint64_t> tokens_since;       // per fragment
  std::vector<std::vector<std::size_t>> layout;  // per fragment: parameter indices, run order
  std::deque<Pending> pending;                   // training thread

  std::thread thread;
  std::mutex mutex;
  std::condition_variable changed;
  std::deque<Job> jobs;
  std::map<Key, SyncEngine::Outcome> outcomes;
  std::map<Key, Clock::time_point> deadlines;
  bool stopping = false;

  mutable std::mutex stats_mutex;
  BridgeStats stats;

  void log(std::string_view level, const std::string& message) const {
    if (options.log) options.log(level, message);
  }

  void run_background() {
    while (true) {
      Job job;
      {
        std::unique_lock lock(mutex);
        changed.wait(lock, [&] { return stopping || !jobs.empty(); });
        if (stopping) return;
        job = std::move(jobs.front());
        jobs.pop_front();
      }
      const Key key{job.fragment, job.sync};
      SyncEngine::Outcome outcome = engine->run_sync(
          job.fragment, job.sync, job.send_step, job.local, job.tokens,
          [this, key]() -> std::optional<Clock::time_point> {
            std::lock_guard lock(mutex);
            const auto it = deadlines.find(key);
            if (it == deadlines.end()) return std::nullopt;
            return it->second;
          },
          [this] {
            std::lock_guard lock(mutex);
            return stopping;
          });
      std::lock_guard lock(mutex);
      outcomes[key] = std::move(outcome);
      changed.notify_all();
    }
  }

  Result<void> send(std::int64_t fragment, std::int64_t step) {
    Job job;
    job.fragment = fragment;
    job.sync = ++sent[static_cast<std::size_t>(fragment)];
    job.send_step = step;
    job.tokens = std::exchange(tokens_since[static_cast<std::size_t>(fragment)], 0);
    for (const std::size_t i : layout[static_cast<std::size_t>(fragment)]) {
      const Parameter& param = params[i];
      job.local.push_back(
          {param.name, param.shape, std::vector<float>(param.data.begin(), param.data.end())});
    }
    pending.push_back({fragment, job.sync, step, step + config.tau});
    std::lock_guard lock(mutex);
    jobs.push_back(std::move(job));
    changed.notify_all();
    return {};
  }

  // Blocks until the sync's outcome is in, then merges it into the parameters.
  Result<void> land(const Pending& p, bool replace) {
    const Key key{p.fragment, p.sync};
    const auto start = Clock::now();
    SyncEngine::Outcome outcome;
    {
      std::unique_lock lock(mutex);
      deadlines.emplace(key, start);
      changed.notify_all();
      changed.wait(lock, [&] { return outcomes.count(key) > 0; });
      outcome = std::move(outcomes[key]);
      outcomes.erase(key);
      deadlines.erase(key);
    }
    const double waited = std::chrono::duration<double>(Clock::now() - start).count();
    outcome.record.wait_seconds = waited;
    outcome.record.land_step = p.land_step;
    {
      std::lock_guard lock(stats_mutex);
      stats.wait_seconds += waited;
      stats.rejected += outcome.rejected;
      stats.bytes_up += outcome.record.bytes_up;
      stats.bytes_down += outcome.record.bytes_down;
      if (outcome.error.code) {
        stats.records.push_back(outcome.record);
      } else {
        ++stats.syncs;
        if (outcome.record.own_included) ++stats.included;
        if (outcome.record.late) ++stats.late;
        if (outcome.record.skipped) ++stats.skipped;
        stats.records.push_back(outcome.record);
      }
    }
    if (outcome.error.code) return fail(outcome.error);
    if (outcome.record.skipped) return {};
    for (const Tensor& g : outcome.global) {
      const Parameter& param = params[param_index.at(g.name)];
      if (replace || config.tau == 0) {
        std::copy(g.values.begin(), g.values.end(), param.data.begin());
      } else if (auto merged = merge_overlap(param.data, g.values, config.alpha); !merged) {
        return fail(merged.error());
      }
    }
    return {};
  }

  void stop_thread() {
    {
      std::lock_guard lock(mutex);
      stopping = true;
      changed.notify_all();
    }
    if (thread.joinable()) thread.join();
  }
};

DiLoCoBridge::DiLoCoBridge(BridgeOptions options, std::vector<Parameter> params)
    : impl_(std::make_unique<Impl>()) {
  if (options.run_id.empty() || options.worker_id.empty() || options.publish_url.empty()) {
    throw std::invalid_argument("DiLoCoBridge: run_id, worker_id and publish_url are required");
  }
  detail::normalize_urls(options);
  impl_->options = std::move(options);
  impl_->params = std::move(params);
  for (std::size_t i = 0; i < impl_->params.size(); ++i) {
    impl_->param_index[impl_->params[i].name] = i;
  }
}

DiLoCoBridge::~DiLoCoBridge() { impl_->stop_thread(); }

Result<std::int64_t> DiLoCoBridge::bootstrap() {
  Impl& d = *impl_;
  if (d.bootstrapped) return fail(bridge_errc::invalid_argument, "bootstrap() ran already");
  if (!valid_id(d.options.run_id) || !valid_id(d.options.worker_id)) {
    return fail(bridge_errc::invalid_argument, "run_id and worker_id must be [A-Za-z0-9._-]");
  }
  if (d.options.min_workers < 1) return fail(bridge_errc::invalid_argument, "min_workers < 1");
  if (d.param_index.size() != d.params.size()) {
    return fail(bridge_errc::invalid_argument, "duplicate parameter names");
  }
  for (const Parameter& p : d.params) {
    std::uint64_t n = 1;
    for (const std::uint64_t s : p.shape) n *= s;
    if (n != p.data.size()) {
      return fail(bridge_errc::invalid_argument, "parameter " + p.name + ": shape and data differ");
    }
  }
  d.nonce = detail::random_nonce();
  // The coordinator's config, with a tensor list from the parameters when P > 1 needs one.
  std::optional<RunConfig> own = d.options.config;
  if (own && own->tensors.empty() && own->p > 1) {
    std::int64_t layers = 0;
    for (const Parameter& p : d.params) {
      own->tensors.push_back({p.name, p.data.size(), std::max<std::int64_t>(0, p.layer)});
      layers = std::max(layers, std::max<std::int64_t>(0, p.layer) + 1);
    }
    own->n_layers = std::max(own->n_layers, layers);
  }
  std::vector<Tensor> init;
  if (d.options.coordinator) {
    for (const Parameter& p : d.params) {
      init.push_back({p.name, p.shape, std::vector<float>(p.data.begin(), p.data.end())});
    }
  }
  d.engine = std::make_unique<SyncEngine>(d.options, d.nonce);
  auto resumed = d.engine->bootstrap(own, d.options.coordinator ? &init : nullptr);
  if (!resumed) return fail(resumed.error());
  d.config = d.engine->config();
  d.schedule = *Schedule::create(d.config);
  // Every fragment tensor must be a parameter, and every parameter in a fragment.
  std::size_t covered = 0;
  d.layout.assign(static_cast<std::size_t>(d.engine->fragments()), {});
  for (std::int64_t p = 0; p < d.engine->fragments(); ++p) {
    for (const Tensor& t : d.engine->global_copy(p)) {
      const auto it = d.param_index.find(t.name);
      if (it == d.param_index.end() || d.params[it->second].data.size() != t.values.size()) {
        return fail(bridge_errc::config_mismatch, "run tensor " + t.name + " is not a parameter");
      }
      std::copy(t.values.begin(), t.values.end(), d.params[it->second].data.begin());
      d.layout[static_cast<std::size_t>(p)].push_back(it->second);
      ++covered;
    }
  }
  if (covered != d.params.size()) {
    return fail(bridge_errc::config_mismatch, "some parameters are in no fragment of run.json");
  }
  const std::int64_t step = *resumed;
  d.last_step = step;
  d.sent.assign(static_cast<std::size_t>(d.config.p), 0);
  d.tokens_since.assign(static_cast<std::size_t>(d.config.p), 0);
  for (std::int64_t p = 0; p < d.config.p; ++p) {
    // Syncs of p sent at or before the resume step, by the schedule (in-flight ones lost).
    std::uint64_t n = 0;
    for (std::int64_t s = d.schedule->next_sync(p, 0); s <= step; s = d.schedule->next_sync(p, s)) {
      ++n;
    }
    d.sent[static_cast<std::size_t>(p)] = n;
  }
  d.bootstrapped = true;
  d.thread = std::thread([&d] { d.run_background(); });
  d.log("info", "bridge: worker " + d.options.worker_id + " incarnation " + d.nonce +
                    " starts after step " + std::to_string(step));
  return step;
}

Result<void> DiLoCoBridge::after_inner_step(std::int64_t step, std::uint64_t tokens) {
  Impl& d = *impl_;
  if (!d.bootstrapped) return fail(bridge_errc::not_bootstrapped, "after_inner_step");
  if (d.finalized) return fail(bridge_errc::invalid_argument, "finalize() ran already");
  if (step != d.last_step + 1) {
    return fail(bridge_errc::invalid_argument,
                "step " + std::to_string(step) + " after " + std::to_string(d.last_step));
  }
  d.last_step = step;
  for (auto& t : d.tokens_since) t += tokens;
  const StepEvents events = d.schedule->events_at(step);
  if (events.send) {
    if (auto sent = d.send(*events.send, step); !sent) return sent;
  }
  while (!d.pending.empty() && d.pending.front().land_step <= step) {
    const Impl::Pending p = d.pending.front();
    d.pending.pop_front();
    if (auto landed = d.land(p, false); !landed) return landed;
  }
  return {};
}

Result<void> DiLoCoBridge::finalize(std::int64_t step, bool publish_final) {
  Impl& d = *impl_;
  if (!d.bootstrapped) return fail(bridge_errc::not_bootstrapped, "finalize");
  if (d.finalized) return {};
  while (!d.pending.empty()) {
    const Impl::Pending p = d.pending.front();
    d.pending.pop_front();
    if (auto landed = d.land(p, false); !landed) return landed;
  }
  if (d.config.p > 1) {
    // R8: fragments last synced up to (P-1)H/P steps ago get one final sync each.
    for (std::int64_t p = 0; p < d.config.p; ++p) {
      if (auto sent = d.send(p, step); !sent) return sent;
      const Impl::Pending pending = d.pending.back();
      d.pending.pop_back();
      if (auto landed = d.land(pending, true); !landed) return landed;
    }
  }
  d.finalized = true;
  d.stop_thread();
  if (publish_final) {
    if (auto published = d.engine->publish_final(); !published) return published;
  }
  return {};
}

std::vector<std::uint8_t> DiLoCoBridge::state_dict() const {
  const Impl& d = *impl_;
  if (!d.engine) return {};
  std::map<std::string, std::string> meta = {{"format", "shardsync.diloco.bridge_state/1"},
                                             {"last_step", std::to_string(d.last_step)},
                                             {"incarnation", d.nonce}};
  std::string sent;
  for (std::size_t p = 0; p < d.sent.size(); ++p)
    sent += (p ? "," : "") + std::to_string(d.sent[p]);
  meta["sent"] = sent;
  auto state = d.engine->snapshot(meta);
  return state ? std::move(*state) : std::vector<std::uint8_t>{};
}

Result<void> DiLoCoBridge::load_state_dict(std::span<const std::uint8_t> state) {
  Impl& d = *impl_;
  if (!d.bootstrapped) return fail(bridge_errc::not_bootstrapped, "load_state_dict");
  if (!d.pending.empty()) return fail(bridge_errc::bad_state, "a sync is in flight");
  auto meta = d.engine->restore(state);
  if (!meta) return fail(meta.error());
  try {
    d.last_step = std::stoll(meta->at("last_step"));
    const std::string& text = meta->at("sent");
    std::vector<std::uint64_t> sent;
    std::size_t start = 0;
    while (start <= text.size()) {
      const std::size_t comma = std::min(text.find(',', start), text.size());
      sent.push_back(std::stoull(text.substr(start, comma - start)));
      start = comma + 1;
    }
    if (sent.size() != d.sent.size()) return fail(bridge_errc::bad_state, "state for another P");
    d.sent = std::move(sent);
  } catch (const std::exception&) {
    return fail(bridge_errc::bad_state, "state metadata malformed");
  }
  return {};
}

BridgeStats DiLoCoBridge::stats() const {
  std::lock_guard lock(impl_->stats_mutex);
  return impl_->stats;
}

std::string DiLoCoBridge::global_sha256(std::int64_t fragment) const {
  return impl_->engine ? impl_->engine->global_sha256(fragment) : std::string();
}

const RunConfig& DiLoCoBridge::config() const { return impl_->config; }

}  // namespace shardsync::bridge
