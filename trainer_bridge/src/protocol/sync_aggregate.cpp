// SyncEngine::aggregate: the aggregator topology's reduce-once, quantize-once commit.
#include <algorithm>
#include <thread>

#include "sync_engine.hpp"

namespace shardsync::bridge::detail {

SyncEngine::Outcome SyncEngine::aggregate(std::int64_t p, std::uint64_t n, std::int64_t send_step,
                                          const std::function<bool()>& stopping) {
  const std::string& run = options_.run_id;
  const TrafficMark mark = traffic_mark();
  Outcome out;
  out.record.fragment = p;
  out.record.sync = n;
  auto failed = [&](Error e) { return this->failed(out, mark, std::move(e), "aggregating "); };
  const std::string base_sha = global_sha256(p);
  const std::string cpath = commit_path(run, p, n);
  std::map<std::string, Candidate> candidates;
  std::set<std::string> rejected;
  std::optional<Clock::time_point> first_seen;
  while (true) {
    if (stopping()) return failed(Error{bridge_errc::timeout, "stopped"});
    if (auto refreshed = index_.refresh(transport_); !refreshed) {
      log("warn", "bridge: " + refreshed.error().describe());
    }
    if (const Listed* listed = index_.find(cpath, commit_collection_);
        listed && listed->collection == commit_collection_) {
      // Committed already (a previous life of this aggregator): follow it.
      auto record = fetch_commit(p, n, listed);
      if (!record) return failed(record.error());
      if (auto applied = apply_commit(*record, candidates); !applied) {
        return failed(applied.error());
      }
      out.record.send_step = record->send_step;
      out.record.skipped = !record->applied;
      out.record.global_sha256 = record->applied ? record->global_sha256 : std::string();
      for (const CommitEntry& e : record->included) out.record.included.push_back(e.worker);
      return finished(out, mark);
    }
    gather(p, n, base_sha, candidates, rejected, out.rejected);
    if (!candidates.empty() && !first_seen) first_seen = Clock::now();
    const bool all_in = options_.num_workers > 0 &&
                        static_cast<std::int64_t>(candidates.size()) >= options_.num_workers;
    if (all_in || (first_seen && Clock::now() >= *first_seen + options_.grace)) break;
    std::this_thread::sleep_for(options_.poll_interval);
  }

  CommitRecord mine;
  mine.run_id = run;
  mine.fragment = p;
  mine.sync = n;
  mine.quorum = options_.min_workers;
  mine.base_sha256 = base_sha;
  mine.committer = options_.worker_id;
  mine.created = utc_now_rfc3339();
  mine.send_step = send_step;
  mine.applied = static_cast<std::int64_t>(candidates.size()) >= options_.min_workers;
  mine.reason = options_.num_workers > 0 &&
                        static_cast<std::int64_t>(candidates.size()) >= options_.num_workers
                    ? "all_in"
                : mine.applied ? "deadline"
                               : "below_quorum";
  RunState next;
  {
    std::lock_guard lock(state_mutex_);
    next = state_;
  }
  std::vector<const DecodedFragment*> payloads;
  for (const auto& [worker, c] : candidates) {
    mine.included.push_back(
        {worker, c.payload.meta.worker_nonce, c.sha256, c.payload.meta.tokens, c.url});
    payloads.push_back(&c.payload);
  }
  if (mine.applied) {
    auto mean = next.reduce(p, payloads, config_.token_weighted);
    if (!mean) return failed(mean.error());
    // Δ̄ quantized once, in the run's wire format; the aggregator steps with exactly the
    // dequantized values the workers will read.
    Fragment reduced;
    reduced.meta = {run,
                    n,
                    static_cast<std::uint64_t>(mine.send_step),
                    static_cast<std::uint64_t>(p),
                    static_cast<std::uint64_t>(config_.p),
                    options_.worker_id,
                    nonce_,
                    base_sha,
                    0,
                    "float32",
                    ""};
    reduced.tensors = std::move(*mean);
    EncodeOptions encode;
    encode.wire = *wire_from_name(config_.wire_format);
    encode.block_size = config_.block_size;
    encode.zstd = options_.zstd;
    auto bytes = encode_payload(reduced, encode);
    if (!bytes) return failed(bytes.error());
    auto decoded = decode_payload(*bytes);
    if (!decoded) return failed(decoded.error());
    if (auto applied = next.apply_reduced(p, *decoded); !applied) return failed(applied.error());
    mine.reduced_sha256 =
        sha256_hex(std::string_view(reinterpret_cast<const char*>(bytes->data()), bytes->size()));
    auto put = transport_.put(url_of(options_.commit_url, reduced_path(run, p, n)), *bytes, false);
    if (!put) return failed(put.error());
  }
  mine.global_sha256 = next.global_sha256(p);
  const std::string text = serialize_commit(mine);
  auto created = transport_.put(url_of(options_.commit_url, cpath), bytes_of(text), true);
  if (!created) return failed(created.error());
  if (*created != 201 && *created != 204) {
    return failed(Error{bridge_errc::transport, "PUT commit: HTTP " + std::to_string(*created)});
  }
  next.set_committed(p, n);
  {
    std::lock_guard lock(state_mutex_);
    state_ = std::move(next);
  }
  log("info", "bridge: aggregated fragment " + std::to_string(p) + " sync " + std::to_string(n) +
                  " from " + std::to_string(mine.included.size()) + " payloads (" + mine.reason +
                  ")");
  if (p == config_.p - 1 && options_.checkpoint_every > 0 &&
      n % static_cast<std::uint64_t>(options_.checkpoint_every) == 0) {
    write_checkpoint(n, mine.send_step + config_.tau);
  }
  out.record.send_step = mine.send_step;
  out.record.committed_here = true;
  out.record.skipped = !mine.applied;
  out.record.global_sha256 = mine.applied ? mine.global_sha256 : std::string();
  for (const CommitEntry& e : mine.included) out.record.included.push_back(e.worker);
  return finished(out, mark);
}

}  // namespace shardsync::bridge::detail
