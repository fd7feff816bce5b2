#include <charconv>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "shardsync/bridge/bridge.hpp"
#include "shardsync/bridge/protocol.hpp"

namespace shardsync::bridge {
namespace {

using json = nlohmann::json;

std::string sync_dir(std::uint64_t sync) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%08llu", static_cast<unsigned long long>(sync));
  return buf;
}

std::string frag_dir(std::string_view run, std::int64_t fragment, std::uint64_t sync) {
  return run_prefix(run) + "frag/" + std::to_string(fragment) + "/" + sync_dir(sync) + "/";
}

template <class T>
std::optional<T> number(std::string_view text) {
  T value{};
  if (text.empty()) return std::nullopt;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::vector<std::string_view> split(std::string_view path) {
  std::vector<std::string_view> parts;
  while (true) {
    const auto slash = path.find('/');
    parts.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return parts;
}

tl::unexpected<Error> malformed(const std::string& what) {
  return fail(bridge_errc::bad_payload, "commit.json: " + what);
}

}  // namespace

bool valid_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > 64 || id == "." || id == "..") return false;
  for (const char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string run_prefix(std::string_view run) { return "runs/" + std::string(run) + "/"; }
std::string run_json_path(std::string_view run) { return run_prefix(run) + "run.json"; }
std::string init_model_path(std::string_view run) {
  return run_prefix(run) + "init/model.safetensors";
}
std::string payload_path(std::string_view run, std::int64_t fragment, std::uint64_t sync,
                         std::string_view worker) {
  return frag_dir(run, fragment, sync) + "worker/" + std::string(worker) + ".safetensors";
}
std::string commit_path(std::string_view run, std::int64_t fragment, std::uint64_t sync) {
  return frag_dir(run, fragment, sync) + "commit.json";
}
std::string reduced_path(std::string_view run, std::int64_t fragment, std::uint64_t sync) {
  return frag_dir(run, fragment, sync) + "reduced.safetensors";
}
std::string checkpoint_global_path(std::string_view run, std::uint64_t n) {
  return run_prefix(run) + "ckpt/" + sync_dir(n) + "/global.safetensors";
}
std::string checkpoint_state_path(std::string_view run, std::uint64_t n) {
  return run_prefix(run) + "ckpt/" + sync_dir(n) + "/outer_state.safetensors";
}
std::string worker_state_path(std::string_view run, std::string_view worker) {
  return run_prefix(run) + "workers/" + std::string(worker) + "/state.json";
}
std::string final_model_path(std::string_view run) {
  return run_prefix(run) + "final/model.safetensors";
}

std::optional<RunPath> parse_run_path(std::string_view run, std::string_view path) {
  const std::string prefix = run_prefix(run);
  if (!path.starts_with(prefix)) return std::nullopt;
  const std::vector<std::string_view> parts = split(path.substr(prefix.size()));
  RunPath out;
  if (parts.size() >= 4 && parts[0] == "frag") {
    const auto fragment = number<std::int64_t>(parts[1]);
    const auto sync = number<std::uint64_t>(parts[2]);
    if (!fragment || !sync) return out;
    out.fragment = *fragment;
    out.sync = *sync;
    if (parts.size() == 4 && parts[3] == "commit.json") {
      out.kind = RunPath::Kind::commit;
    } else if (parts.size() == 4 && parts[3] == "reduced.safetensors") {
      out.kind = RunPath::Kind::reduced;
    } else if (parts.size() == 5 && parts[3] == "worker" && parts[4].ends_with(".safetensors")) {
      std::string_view worker = parts[4];
      worker.remove_suffix(std::string_view(".safetensors").size());
      if (valid_id(worker)) {
        out.kind = RunPath::Kind::payload;
        out.worker = std::string(worker);
      }
    }
    return out;
  }
  if (parts.size() == 3 && parts[0] == "ckpt") {
    const auto n = number<std::uint64_t>(parts[1]);
    if (!n) return out;
    out.sync = *n;
    if (parts[2] == "global.safetensors") out.kind = RunPath::Kind::checkpoint_global;
    if (parts[2] == "outer_state.safetensors") out.kind = RunPath::Kind::checkpoint_state;
  }
  return out;
}

std::string serialize_commit(const CommitRecord& r) {
  json included = json::array();
  for (const CommitEntry& e : r.included) {
    included.push_back({{"worker", e.worker},
                        {"nonce", e.nonce},
                        {"sha256", e.sha256},
                        {"tokens", e.tokens},
                        {"url", e.url}});
  }
  const json j = {{"format", "shardsync.diloco.commit/1"},
                  {"run_id", r.run_id},
                  {"fragment", r.fragment},
                  {"sync", r.sync},
                  {"send_step", r.send_step},
                  {"applied", r.applied},
                  {"reason", r.reason},
                  {"quorum", r.quorum},
                  {"base_sha256", r.base_sha256},
                  {"global_sha256", r.global_sha256},
                  {"reduced_sha256", r.reduced_sha256},
                  {"included", std::move(included)},
                  {"committer", r.committer},
                  {"created", r.created}};
  return j.dump(2) + "\n";
}

Result<CommitRecord> parse_commit(std::string_view text) {
  const json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return malformed("not a JSON object");
  try {
    if (j.at("format").get<std::string>() != "shardsync.diloco.commit/1") {
      return malformed("unknown format");
    }
    CommitRecord r;
    r.run_id = j.at("run_id").get<std::string>();
    r.fragment = j.at("fragment").get<std::int64_t>();
    r.sync = j.at("sync").get<std::uint64_t>();
    r.send_step = j.at("send_step").get<std::int64_t>();
    r.applied = j.at("applied").get<bool>();
    r.reason = j.at("reason").get<std::string>();
    r.quorum = j.at("quorum").get<std::int64_t>();
    r.base_sha256 = j.at("base_sha256").get<std::string>();
    r.global_sha256 = j.at("global_sha256").get<std::string>();
    r.reduced_sha256 = j.at("reduced_sha256").get<std::string>();
    r.committer = j.at("committer").get<std::string>();
    r.created = j.at("created").get<std::string>();
    for (const json& e : j.at("included")) {
      CommitEntry entry;
      entry.worker = e.at("worker").get<std::string>();
      entry.nonce = e.at("nonce").get<std::string>();
      entry.sha256 = e.at("sha256").get<std::string>();
      entry.tokens = e.at("tokens").get<std::uint64_t>();
      entry.url = e.at("url").get<std::string>();
      if (!valid_id(entry.worker)) return malformed("bad worker id " + entry.worker);
      if (!r.included.empty() && !(r.included.back().worker < entry.worker)) {
        return malformed("included workers not sorted and unique");
      }
      r.included.push_back(std::move(entry));
    }
    return r;
  } catch (const json::exception& e) {
    return malformed(e.what());
  }
}

std::string utc_now_rfc3339() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace shardsync::bridge
