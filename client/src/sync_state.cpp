#include "shardsync/client/sync_state.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "shardsync/client/errc.hpp"

namespace shardsync::client {
namespace {

constexpr const char* kStateDir = ".shardsync";
constexpr const char* kStateFile = "state.json";
constexpr const char* kStateTemp = "state.json.tmp";
constexpr int kStateVersion = 1;

std::string errno_text() { return std::strerror(errno); }

nlohmann::json timestamp_json(const std::optional<sitemap::Timestamp>& t) {
  return t ? nlohmann::json(sitemap::format_w3c_datetime(*t)) : nlohmann::json(nullptr);
}

std::optional<sitemap::Timestamp> timestamp_from(const nlohmann::json& j, bool& ok) {
  if (j.is_null()) return std::nullopt;
  if (!j.is_string()) {
    ok = false;
    return std::nullopt;
  }
  auto t = sitemap::parse_w3c_datetime(j.get<std::string>());
  if (!t) ok = false;
  return t;
}

}  // namespace

Result<StateStore> StateStore::open(int root_fd) {
  if (::mkdirat(root_fd, kStateDir, 0755) != 0 && errno != EEXIST) {
    return fail(errc::io_error, std::string("cannot create .shardsync: ") + errno_text());
  }
  UniqueFd dir(::openat(root_fd, kStateDir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) {
    return fail(errc::unsafe_path,
                std::string(".shardsync is not a plain directory: ") + errno_text());
  }
  UniqueFd lock(::openat(dir.get(), "lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!lock) return fail(errc::io_error, std::string("cannot open the lock: ") + errno_text());
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    return fail(errc::io_error, "another shardsync is syncing into this destination");
  }
  return StateStore(std::move(dir), std::move(lock));
}

Result<std::optional<SyncState>> StateStore::load() const {
  UniqueFd fd(::openat(dir_.get(), kStateFile, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return std::optional<SyncState>();
    return fail(errc::state_corrupt, std::string("cannot read state.json: ") + errno_text());
  }
  std::string text;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0) return fail(errc::state_corrupt, "cannot read state.json: " + errno_text());
    if (n == 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
    if (text.size() > (1u << 20)) return fail(errc::state_corrupt, "state.json is too large");
  }
  const auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object() || json.value("version", 0) != kStateVersion ||
      !json.contains("source") || !json["source"].is_string()) {
    return fail(errc::state_corrupt,
                "state.json is not a shardsync state (remove DEST/.shardsync to start over)");
  }
  SyncState state;
  bool ok = true;
  state.source = json["source"].get<std::string>();
  state.baseline_complete = json.value("baseline_complete", false);
  state.baseline_at = timestamp_from(json.value("baseline_at", nlohmann::json()), ok);
  state.cursor = timestamp_from(json.value("cursor", nlohmann::json()), ok);
  const auto field = [&](const char* key) {
    const auto it = json.find(key);
    if (it == json.end() || it->is_null()) return std::string();
    if (!it->is_string()) ok = false;
    return it->is_string() ? it->get<std::string>() : std::string();
  };
  state.source_argument = field("source_argument");
  state.collection_argument = field("collection_argument");
  state.set_name = field("set_name");
  state.base_url = field("base_url");
  state.resource_list_url = field("resource_list_url");
  state.change_list_url = field("change_list_url");
  state.change_list_etag = field("change_list_etag");
  state.change_list_is_index = json.value("change_list_is_index", false);
  state.open_list_url = field("open_list_url");
  state.open_list_etag = field("open_list_etag");
  if (!ok) return fail(errc::state_corrupt, "state.json has an unreadable field");
  return std::optional<SyncState>(std::move(state));
}

Result<void> StateStore::save(const SyncState& state) const {
  const nlohmann::json json = {{"version", kStateVersion},
                               {"source", state.source},
                               {"baseline_complete", state.baseline_complete},
                               {"baseline_at", timestamp_json(state.baseline_at)},
                               {"cursor", timestamp_json(state.cursor)},
                               {"source_argument", state.source_argument},
                               {"collection_argument", state.collection_argument},
                               {"set_name", state.set_name},
                               {"base_url", state.base_url},
                               {"resource_list_url", state.resource_list_url},
                               {"change_list_url", state.change_list_url},
                               {"change_list_etag", state.change_list_etag},
                               {"change_list_is_index", state.change_list_is_index},
                               {"open_list_url", state.open_list_url},
                               {"open_list_etag", state.open_list_etag}};
  const std::string text = json.dump(2) + "\n";
  UniqueFd fd(::openat(dir_.get(), kStateTemp,
                       O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!fd) return fail(errc::io_error, "cannot write state: " + errno_text());
  const auto failed = [](const char* what) {
    const int e = errno;
    return fail(e == ENOSPC || e == EDQUOT ? errc::disk_full : errc::io_error,
                std::string("cannot ") + what + " state: " + std::strerror(e));
  };
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return failed("write");
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return failed("sync");
  if (::renameat(dir_.get(), kStateTemp, dir_.get(), kStateFile) != 0) return failed("rename");
  if (::fsync(dir_.get()) != 0) return failed("sync the directory of");
  return {};
}

}  // namespace shardsync::client
