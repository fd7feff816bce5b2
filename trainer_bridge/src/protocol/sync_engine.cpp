#include "sync_engine.hpp"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

namespace shardsync::bridge::detail {
namespace {

std::vector<std::string> with_commit(std::vector<std::string> follow, const std::string& commit) {
  if (std::find(follow.begin(), follow.end(), commit) == follow.end()) follow.push_back(commit);
  return follow;
}

std::size_t index_of(const std::vector<std::string>& v, const std::string& s) {
  return static_cast<std::size_t>(std::find(v.begin(), v.end(), s) - v.begin());
}

}  // namespace

std::span<const std::uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::string frag_prefix(const std::string& run, std::int64_t p, std::uint64_t n) {
  std::string path = commit_path(run, p, n);
  return path.substr(0, path.size() - std::string_view("commit.json").size());
}

void normalize_urls(BridgeOptions& options) {
  auto trim = [](std::string& url) {
    while (url.ends_with('/')) url.pop_back();
  };
  trim(options.publish_url);
  if (options.commit_url.empty()) options.commit_url = options.publish_url;
  trim(options.commit_url);
  if (options.follow_urls.empty()) options.follow_urls.push_back(options.publish_url);
  for (std::string& url : options.follow_urls) trim(url);
}

std::string random_nonce() {
  std::random_device random;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 16; ++i) out += kHex[random() % 16];
  return out;
}

SyncEngine::SyncEngine(BridgeOptions options, std::string nonce)
    : options_(std::move(options)),
      nonce_(std::move(nonce)),
      transport_(options_.write_token,
                 [this](const std::string& line) { log("warn", "bridge: " + line); }),
      index_(with_commit(options_.follow_urls, options_.commit_url), options_.run_id),
      commit_collection_(index_of(index_.collections(), options_.commit_url)) {}

std::int64_t SyncEngine::fragments() const {
  std::lock_guard lock(state_mutex_);
  return state_.fragments();
}

std::vector<Tensor> SyncEngine::global_copy(std::int64_t p) const {
  std::lock_guard lock(state_mutex_);
  return state_.global(p);
}

std::string SyncEngine::global_sha256(std::int64_t p) const {
  std::lock_guard lock(state_mutex_);
  if (p < 0 || p >= state_.fragments()) return {};
  return state_.global_sha256(p);
}

Result<Listed> SyncEngine::wait_for(const std::string& path, std::size_t c,
                                    std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    if (auto refreshed = index_.refresh(transport_); !refreshed) {
      log("warn", "bridge: " + refreshed.error().describe());
    }
    const Listed* listed = index_.find(path, c);
    if (listed && (c == SIZE_MAX || listed->collection == c)) return *listed;
    if (Clock::now() >= deadline) return fail(bridge_errc::timeout, path + " did not appear");
    std::this_thread::sleep_for(options_.poll_interval);
  }
}

Result<std::vector<std::uint8_t>> SyncEngine::fetch_verified(const std::string& url,
                                                             const std::string& sha256) {
  auto body = transport_.get(url);
  if (!body) return fail(body.error());
  const std::string got = sha256_hex(*body);
  if (!sha256.empty() && got != sha256) {
    return fail(bridge_errc::bad_payload,
                url + ": sha-256 " + got + " differs from the listed " + sha256);
  }
  return std::vector<std::uint8_t>(body->begin(), body->end());
}

Result<CommitRecord> SyncEngine::fetch_commit(std::int64_t p, std::uint64_t n,
                                              const Listed* listed) {
  const std::string url =
      listed ? listed->url : url_of(options_.commit_url, commit_path(options_.run_id, p, n));
  auto body = fetch_verified(url, listed ? listed->sha256 : std::string());
  if (!body) return fail(body.error());
  auto record =
      parse_commit(std::string_view(reinterpret_cast<const char*>(body->data()), body->size()));
  if (!record) return fail(record.error());
  if (record->run_id != options_.run_id || record->fragment != p || record->sync != n) {
    return fail(bridge_errc::bad_payload, url + " is the record of another sync");
  }
  return record;
}

void SyncEngine::gather(std::int64_t p, std::uint64_t n, const std::string& base_sha,
                        std::map<std::string, Candidate>& candidates,
                        std::set<std::string>& rejected, std::uint64_t& rejected_count) {
  const std::string& run = options_.run_id;
  for (const Listed& listed : index_.under(frag_prefix(run, p, n) + "worker/")) {
    const auto path = parse_run_path(run, listed.path);
    if (!path || path->kind != RunPath::Kind::payload) continue;
    const auto known = candidates.find(path->worker);
    if (known != candidates.end() && known->second.sha256 == listed.sha256) continue;
    if (rejected.count(listed.url + " " + listed.sha256)) continue;
    auto reject = [&](const std::string& why) {
      rejected.insert(listed.url + " " + listed.sha256);
      ++rejected_count;
      log("warn", "bridge: rejected " + listed.url + ": " + why);
    };
    auto bytes = fetch_verified(listed.url, listed.sha256);
    if (!bytes) {
      if (bytes.error().code == make_error_code(bridge_errc::bad_payload)) {
        reject(bytes.error().detail);
      }
      continue;  // a transport failure is retried at the next poll
    }
    auto payload = decode_payload(*bytes);
    if (!payload) {
      reject("does not decode: " + payload.error().describe());
      continue;
    }
    const FragmentMeta& meta = payload->meta;
    if (meta.run_id != run || meta.fragment_id != static_cast<std::uint64_t>(p) ||
        meta.outer_step != n || meta.worker_id != path->worker) {
      reject("metadata names another run, fragment, sync or worker");
      continue;
    }
    if (meta.base_sha256 != base_sha) {
      reject("wrong base " + meta.base_sha256 + " (the committed global is " + base_sha + ")");
      continue;
    }
    candidates[path->worker] = Candidate{listed.sha256, listed.url, std::move(*payload)};
  }
}

Result<void> SyncEngine::apply_commit(const CommitRecord& record,
                                      std::map<std::string, Candidate>& candidates) {
  const std::int64_t p = record.fragment;
  const std::string base = global_sha256(p);
  if (record.base_sha256 != base) {
    return fail(bridge_errc::diverged, "commit of fragment " + std::to_string(p) + " sync " +
                                           std::to_string(record.sync) + " is based on " +
                                           record.base_sha256 + ", this worker holds " + base);
  }
  RunState next;
  {
    std::lock_guard lock(state_mutex_);
    next = state_;
  }
  if (record.applied) {
    if (!record.reduced_sha256.empty()) {
      auto bytes =
          fetch_verified(url_of(options_.commit_url, reduced_path(options_.run_id, p, record.sync)),
                         record.reduced_sha256);
      if (!bytes) return fail(bytes.error());
      auto reduced = decode_payload(*bytes);
      if (!reduced) return fail(bridge_errc::bad_payload, reduced.error().describe());
      if (auto applied = next.apply_reduced(p, *reduced); !applied) return applied;
    } else {
      std::vector<const DecodedFragment*> payloads;
      for (const CommitEntry& entry : record.included) {
        auto it = candidates.find(entry.worker);
        if (it == candidates.end() || it->second.sha256 != entry.sha256) {
          auto bytes = fetch_verified(entry.url, entry.sha256);
          if (!bytes) return fail(bytes.error());
          auto payload = decode_payload(*bytes);
          if (!payload) return fail(bridge_errc::bad_payload, payload.error().describe());
          it = candidates
                   .insert_or_assign(entry.worker,
                                     Candidate{entry.sha256, entry.url, std::move(*payload)})
                   .first;
        }
        payloads.push_back(&it->second.payload);
      }
      if (auto applied = next.apply_payloads(p, payloads, config_.token_weighted); !applied) {
        return applied;
      }
    }
    const std::string global = next.global_sha256(p);
    if (global != record.global_sha256) {
      return fail(bridge_errc::diverged, "fragment " + std::to_string(p) + " sync " +
                                             std::to_string(record.sync) + ": reduced to " +
                                             global + ", the commit says " + record.global_sha256);
    }
  }
  next.set_committed(p, record.sync);
  std::lock_guard lock(state_mutex_);
  state_ = std::move(next);
  return {};
}

SyncEngine::TrafficMark SyncEngine::traffic_mark() const {
  return {transport_.bytes_up(), transport_.bytes_down()};
}

SyncEngine::Outcome SyncEngine::finished(Outcome& out, const TrafficMark& mark) const {
  out.record.bytes_up = transport_.bytes_up() - mark.up;
  out.record.bytes_down = transport_.bytes_down() - mark.down;
  return std::move(out);
}

SyncEngine::Outcome SyncEngine::failed(Outcome& out, const TrafficMark& mark, Error error,
                                       std::string_view what) const {
  out.error = std::move(error);
  log("warn", "bridge: " + std::string(what) + "fragment " + std::to_string(out.record.fragment) +
                  " sync " + std::to_string(out.record.sync) + ": " + out.error.describe());
  return finished(out, mark);
}

SyncEngine::Outcome SyncEngine::run_sync(
    std::int64_t p, std::uint64_t n, std::int64_t send_step, const std::vector<Tensor>& local,
    std::uint64_t tokens, const std::function<std::optional<Clock::time_point>()>& deadline,
    const std::function<bool()>& stopping) {
  const std::string& run = options_.run_id;
  const TrafficMark mark = traffic_mark();
  Outcome out;
  out.record.fragment = p;
  out.record.sync = n;
  out.record.send_step = send_step;
  auto failed = [&](Error e) { return this->failed(out, mark, std::move(e), ""); };

  // 1. The payload: Δ = base - local (R3), encoded in the run's wire format.
  const std::string base_sha = global_sha256(p);
  Fragment fragment;
  fragment.meta = {run,
                   n,
                   static_cast<std::uint64_t>(send_step),
                   static_cast<std::uint64_t>(p),
                   static_cast<std::uint64_t>(config_.p),
                   options_.worker_id,
                   nonce_,
                   base_sha,
                   tokens,
                   "float32",
                   ""};
  {
    const std::vector<Tensor> base = global_copy(p);
    for (std::size_t i = 0; i < base.size(); ++i) {
      auto delta = pseudo_gradient(base[i].values, local[i].values);
      if (!delta) return failed(delta.error());
      fragment.tensors.push_back({base[i].name, base[i].shape, std::move(*delta)});
    }
  }
  EncodeOptions encode;
  encode.wire = *wire_from_name(config_.wire_format);
  encode.block_size = config_.block_size;
  encode.zstd = options_.zstd;
  auto bytes = encode_payload(fragment, encode);
  if (!bytes) return failed(bytes.error());
  const std::string own_sha =
      sha256_hex(std::string_view(reinterpret_cast<const char*>(bytes->data()), bytes->size()));
  auto put = transport_.put(
      url_of(options_.publish_url, payload_path(run, p, n, options_.worker_id)), *bytes, false);
  if (!put) return failed(put.error());
  if (*put >= 300) {
    return failed(Error{bridge_errc::transport, "PUT payload: HTTP " + std::to_string(*put)});
  }
  {
    const nlohmann::json heartbeat = {{"worker", options_.worker_id},
                                      {"incarnation", nonce_},
                                      {"step", send_step},
                                      {"time", utc_now_rfc3339()}};
    const std::string text = heartbeat.dump() + "\n";
    (void)transport_.put(url_of(options_.publish_url, worker_state_path(run, options_.worker_id)),
                         bytes_of(text), false);
  }

  // 2. Gather until the commit is known, or decide it at the deadline. Our own payload
  // counts without a round trip (gather() skips a listed file whose sha-256 it holds).
  std::map<std::string, Candidate> candidates;
  std::set<std::string> rejected;
  if (auto own = decode_payload(*bytes); own) {
    candidates[options_.worker_id] = Candidate{
        own_sha, url_of(options_.publish_url, payload_path(run, p, n, options_.worker_id)),
        std::move(*own)};
  }
  const std::string cpath = commit_path(run, p, n);
  const bool may_commit = options_.topology == Topology::allgather;
  bool lost_race = false;
  while (true) {
    if (stopping()) return failed(Error{bridge_errc::timeout, "stopped"});
    if (auto refreshed = index_.refresh(transport_); !refreshed) {
      log("warn", "bridge: " + refreshed.error().describe());
    }
    std::optional<CommitRecord> record;
    if (const Listed* listed = index_.find(cpath, commit_collection_);
        listed && listed->collection == commit_collection_) {
      auto fetched = fetch_commit(p, n, listed);
      if (!fetched) return failed(fetched.error());
      record = std::move(*fetched);
    }
    const std::optional<Clock::time_point> reached = deadline();
    if (!record && may_commit && !lost_race) {
      gather(p, n, base_sha, candidates, rejected, out.rejected);
      const bool all_in = options_.num_workers > 0 &&
                          static_cast<std::int64_t>(candidates.size()) >= options_.num_workers;
      const bool past = reached && Clock::now() >= *reached + options_.grace;
      if (all_in || past) {
        CommitRecord mine;
        mine.run_id = run;
        mine.fragment = p;
        mine.sync = n;
        mine.send_step = send_step;
        mine.quorum = options_.min_workers;
        mine.base_sha256 = base_sha;
        mine.committer = options_.worker_id;
        mine.created = utc_now_rfc3339();
        mine.applied = static_cast<std::int64_t>(candidates.size()) >= options_.min_workers;
        mine.reason = all_in ? "all_in" : mine.applied ? "deadline" : "below_quorum";
        RunState next;
        {
          std::lock_guard lock(state_mutex_);
          next = state_;
        }
        if (mine.applied) {
          std::vector<const DecodedFragment*> payloads;
          for (const auto& [worker, c] : candidates) {
            mine.included.push_back(
                {worker, c.payload.meta.worker_nonce, c.sha256, c.payload.meta.tokens, c.url});
            payloads.push_back(&c.payload);
          }
          if (auto applied = next.apply_payloads(p, payloads, config_.token_weighted); !applied) {
            return failed(applied.error());
          }
        }
        mine.global_sha256 = next.global_sha256(p);
        const std::string text = serialize_commit(mine);
        auto created = transport_.put(url_of(options_.commit_url, cpath), bytes_of(text), true);
        if (!created) return failed(created.error());
        if (*created == 201 || *created == 204) {
          next.set_committed(p, n);
          {
            std::lock_guard lock(state_mutex_);
            state_ = std::move(next);
          }
          out.record.committed_here = true;
          record = std::move(mine);
          log("info", "bridge: committed fragment " + std::to_string(p) + " sync " +
                          std::to_string(n) + " with " + std::to_string(record->included.size()) +
                          " payloads (" + record->reason + ")");
          if (p == config_.p - 1 && options_.checkpoint_every > 0 &&
              n % static_cast<std::uint64_t>(options_.checkpoint_every) == 0) {
            write_checkpoint(n, send_step + config_.tau);
          }
        } else if (*created == 412) {
          // Another committer won; its record is served once the server's next snapshot
          // lists it, which the loop below waits for.
          lost_race = true;
        } else {
          return failed(
              Error{bridge_errc::transport, "PUT commit: HTTP " + std::to_string(*created)});
        }
      }
    }
    if (record) {
      if (!out.record.committed_here) {
        if (auto applied = apply_commit(*record, candidates); !applied) {
          return failed(applied.error());
        }
      }
      out.record.skipped = !record->applied;
      out.record.global_sha256 = record->applied ? record->global_sha256 : std::string();
      for (const CommitEntry& e : record->included) {
        out.record.included.push_back(e.worker);
        if (e.worker == options_.worker_id && e.sha256 == own_sha) out.record.own_included = true;
      }
      out.record.late = record->applied && !out.record.own_included;
      if (record->applied) out.global = global_copy(p);
      return finished(out, mark);
    }
    if (reached && Clock::now() >= *reached + options_.commit_timeout) {
      out.record.skipped = true;
      out.record.timed_out = true;
      log("warn", "bridge: no commit for fragment " + std::to_string(p) + " sync " +
                      std::to_string(n) + " in time: skipped locally");
      return finished(out, mark);
    }
    std::this_thread::sleep_for(options_.poll_interval);
  }
}

void SyncEngine::write_checkpoint(std::uint64_t n, std::int64_t resume_step) {
  Result<std::vector<std::uint8_t>> global, outer;
  {
    std::lock_guard lock(state_mutex_);
    state_.resume_step = resume_step;
    global = state_.encode_global();
    outer = state_.encode_outer_state();
  }
  if (!global || !outer) {
    log("warn", "bridge: checkpoint not encoded");
    return;
  }
  // global first: a checkpoint counts once its outer_state is listed too.
  const std::string& run = options_.run_id;
  auto g =
      transport_.put(url_of(options_.commit_url, checkpoint_global_path(run, n)), *global, true);
  auto s = transport_.put(url_of(options_.commit_url, checkpoint_state_path(run, n)), *outer, true);
  if (!g || !s) log("warn", "bridge: checkpoint " + std::to_string(n) + " not published");
}

}  // namespace shardsync::bridge::detail
