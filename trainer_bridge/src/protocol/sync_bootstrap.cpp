// SyncEngine::bootstrap: run.json, θ0, the latest checkpoint and the commits after it.
#include <algorithm>
#include <thread>

#include "sync_engine.hpp"

namespace shardsync::bridge::detail {

Result<std::int64_t> SyncEngine::bootstrap(const std::optional<RunConfig>& own,
                                           const std::vector<Tensor>* init) {
  const std::string& run = options_.run_id;
  const std::string commit = options_.commit_url;
  if (auto refreshed = index_.refresh(transport_); !refreshed) return fail(refreshed.error());
  if (init && own) {
    // Coordinator: publish run.json and θ0 unless the run has them (first writer wins).
    if (!index_.find(run_json_path(run), commit_collection_)) {
      const std::string text = serialize_run_config(*own);
      auto put = transport_.put(url_of(commit, run_json_path(run)), bytes_of(text), true);
      if (!put) return fail(put.error());
    }
    if (!index_.find(init_model_path(run), commit_collection_)) {
      auto file = write_f32_tensors(*init, {{"format", "shardsync.diloco.init/1"}});
      if (!file) return fail(file.error());
      auto put = transport_.put(url_of(commit, init_model_path(run)), *file, true);
      if (!put) return fail(put.error());
    }
  }
  auto listed_config = wait_for(run_json_path(run), commit_collection_, options_.bootstrap_timeout);
  if (!listed_config) return fail(listed_config.error());
  auto config_bytes = fetch_verified(listed_config->url, listed_config->sha256);
  if (!config_bytes) return fail(config_bytes.error());
  auto config = parse_run_config(
      std::string_view(reinterpret_cast<const char*>(config_bytes->data()), config_bytes->size()));
  if (!config) return fail(bridge_errc::config_mismatch, "run.json: " + config.error().describe());
  if (own && serialize_run_config(*own) != serialize_run_config(*config)) {
    return fail(bridge_errc::config_mismatch, "the run's run.json differs from this worker's");
  }
  config_ = *config;

  // R1: θ0, verified against the change list's sha-256 before step 1.
  auto listed_init = wait_for(init_model_path(run), commit_collection_, options_.bootstrap_timeout);
  if (!listed_init) return fail(listed_init.error());
  if (listed_init->sha256.empty()) {
    return fail(bridge_errc::init_mismatch, "init/model.safetensors is listed without a hash");
  }
  auto init_bytes = fetch_verified(listed_init->url, listed_init->sha256);
  if (!init_bytes) {
    return fail(init_bytes.error().code == make_error_code(bridge_errc::bad_payload)
                    ? Error{bridge_errc::init_mismatch, init_bytes.error().detail}
                    : init_bytes.error());
  }
  auto state = RunState::create(config_, *init_bytes);
  if (!state) return fail(state.error());

  // The latest complete checkpoint, then every commit after it.
  std::uint64_t latest = 0;
  for (const Listed& l : index_.under(run_prefix(run) + "ckpt/")) {
    const auto path = parse_run_path(run, l.path);
    if (path && path->kind == RunPath::Kind::checkpoint_state &&
        index_.find(checkpoint_global_path(run, path->sync), commit_collection_)) {
      latest = std::max(latest, path->sync);
    }
  }
  if (latest > 0) {
    const Listed* g = index_.find(checkpoint_global_path(run, latest), commit_collection_);
    const Listed* s = index_.find(checkpoint_state_path(run, latest), commit_collection_);
    auto global = fetch_verified(g->url, g->sha256);
    if (!global) return fail(global.error());
    auto outer = fetch_verified(s->url, s->sha256);
    if (!outer) return fail(outer.error());
    if (auto loaded = state->load_global(*global); !loaded) return fail(loaded.error());
    if (auto loaded = state->load_outer_state(*outer); !loaded) return fail(loaded.error());
    log("info", "bridge: restored checkpoint " + std::to_string(latest) + " (step " +
                    std::to_string(state->resume_step) + ")");
  }
  {
    std::lock_guard lock(state_mutex_);
    state_ = std::move(*state);
  }
  std::int64_t resume = state_.resume_step;
  std::uint64_t replayed = 0;
  for (std::int64_t p = 0; p < state_.fragments(); ++p) {
    while (true) {
      const std::uint64_t n = state_.committed(p) + 1;
      const Listed* listed = index_.find(commit_path(run, p, n), commit_collection_);
      if (!listed || listed->collection != commit_collection_) break;
      auto record = fetch_commit(p, n, listed);
      if (!record) return fail(record.error());
      std::map<std::string, Candidate> none;
      if (auto applied = apply_commit(*record, none); !applied) return fail(applied.error());
      resume = std::max(resume, record->send_step + config_.tau);
      ++replayed;
    }
  }
  if (replayed > 0) log("info", "bridge: replayed " + std::to_string(replayed) + " commits");
  return resume;
}

}  // namespace shardsync::bridge::detail
