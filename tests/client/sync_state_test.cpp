#include "shardsync/client/sync_state.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "shardsync/client/errc.hpp"
#include "test_paths.hpp"

using namespace shardsync::client;
using shardsync::UniqueFd;
using shardsync::test::TempDir;

namespace {
UniqueFd open_root(const TempDir& dir) {
  return UniqueFd(::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
}
}  // namespace

TEST_CASE("a saved state loads back", "[client][state]") {
  TempDir dir;
  const UniqueFd root = open_root(dir);
  auto store = StateStore::open(root.get());
  REQUIRE(store);
  auto none = store->load();
  REQUIRE(none);
  CHECK_FALSE(none->has_value());
  SyncState state;
  state.source = "http://h/ckpt/capabilitylist.xml";
  state.baseline_complete = true;
  state.baseline_at = shardsync::sitemap::Timestamp::from_unix(1'700'000'000, 5);
  state.cursor = shardsync::sitemap::Timestamp::from_unix(1'700'000'100, 123'456'789);
  state.source_argument = "http://h/";
  state.collection_argument = "ckpt";
  state.change_list_url = "http://h/ckpt/.resourcesync/changelist.xml";
  state.change_list_etag = "\"abc\"";
  state.change_list_is_index = true;
  state.open_list_url = "http://h/ckpt/.resourcesync/changelist-00002.xml";
  state.open_list_etag = "\"def\"";
  REQUIRE(store->save(state));
  auto loaded = store->load();
  REQUIRE(loaded);
  REQUIRE(loaded->has_value());
  CHECK((*loaded)->source == state.source);
  CHECK((*loaded)->baseline_complete);
  CHECK((*loaded)->baseline_at == state.baseline_at);
  CHECK((*loaded)->cursor == state.cursor);
  CHECK((*loaded)->source_argument == state.source_argument);
  CHECK((*loaded)->collection_argument == state.collection_argument);
  CHECK((*loaded)->change_list_url == state.change_list_url);
  CHECK((*loaded)->change_list_etag == state.change_list_etag);
  CHECK((*loaded)->change_list_is_index);
  CHECK((*loaded)->open_list_url == state.open_list_url);
  CHECK((*loaded)->open_list_etag == state.open_list_etag);
  CHECK_FALSE(std::filesystem::exists(dir / ".shardsync/state.json.tmp"));
}

TEST_CASE("a second sync into one destination is refused while the first holds the lock",
          "[client][state]") {
  TempDir dir;
  const UniqueFd root = open_root(dir);
  auto first = StateStore::open(root.get());
  REQUIRE(first);
  auto second = StateStore::open(root.get());
  REQUIRE_FALSE(second);
  CHECK_THAT(second.error().detail, Catch::Contains("another shardsync"));
}

TEST_CASE("an unreadable state is reported, not guessed", "[client][state]") {
  TempDir dir;
  const UniqueFd root = open_root(dir);
  auto store = StateStore::open(root.get());
  REQUIRE(store);
  for (const char* text : {"", "{", "[]", R"({"version":1})", R"({"version":9,"source":"x"})",
                           R"({"version":1,"source":"x","cursor":"yesterday"})"}) {
    shardsync::test::write_file(dir / ".shardsync/state.json", text);
    auto loaded = store->load();
    REQUIRE_FALSE(loaded);
    CHECK(loaded.error().code == errc::state_corrupt);
  }
}

TEST_CASE("a symlink in place of the state directory is refused", "[client][state]") {
  TempDir dir;
  TempDir elsewhere;
  std::filesystem::create_directory_symlink(elsewhere.path(), dir / ".shardsync");
  const UniqueFd root = open_root(dir);
  auto store = StateStore::open(root.get());
  REQUIRE_FALSE(store);
  CHECK(std::filesystem::is_empty(elsewhere.path()));
}
