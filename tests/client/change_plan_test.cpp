#include "shardsync/client/change_plan.hpp"

#include <catch2/catch.hpp>

using namespace shardsync::client;
using shardsync::sitemap::ChangeType;
using shardsync::sitemap::Entry;
using shardsync::sitemap::Metadata;
using shardsync::sitemap::Timestamp;

namespace {

Timestamp t(std::int64_t seconds) { return Timestamp::from_unix(1'700'000'000 + seconds); }

MappedChange change(std::string path, ChangeType type, std::optional<std::int64_t> at) {
  Entry entry;
  entry.loc = "http://h/" + path;
  entry.md = Metadata{};
  entry.md->change = type;
  if (at) entry.md->datetime = t(*at);
  return {std::move(path), std::move(entry)};
}

std::vector<std::string> paths(const ReducedChanges& r) {
  std::vector<std::string> out;
  for (const auto& c : r.changes)
    out.push_back(c.path + ":" + std::to_string(static_cast<int>(*c.entry.md->change)));
  return out;
}

}  // namespace

TEST_CASE("every change list is read when there is no cursor", "[client][plan]") {
  auto s =
      select_change_lists({{"b", t(10), std::nullopt}, {"a", t(0), t(10)}}, t(0), std::nullopt);
  CHECK(s.rebaseline_reason.empty());
  CHECK(s.urls == std::vector<std::string>{"a", "b"});
}

TEST_CASE("closed lists that end before the cursor are skipped, boundaries inclusive",
          "[client][plan]") {
  const std::vector<ChangeListRef> lists{
      {"1", t(0), t(10)}, {"2", t(10), t(20)}, {"3", t(20), std::nullopt}};
  CHECK(select_change_lists(lists, t(0), t(15)).urls == std::vector<std::string>{"2", "3"});
  CHECK(select_change_lists(lists, t(0), t(10)).urls == std::vector<std::string>{"1", "2", "3"});
  CHECK(select_change_lists(lists, t(0), t(25)).urls == std::vector<std::string>{"3"});
}

TEST_CASE("a cursor older than what the source retains asks for a new baseline", "[client][plan]") {
  auto s = select_change_lists({{"2", t(10), t(20)}, {"3", t(20), std::nullopt}}, t(10), t(5));
  CHECK(s.urls.empty());
  CHECK_THAT(s.rebaseline_reason, Catch::Contains("retains changes from"));
  // The index's own `from` missing: the earliest list's `from` says it.
  auto s2 = select_change_lists({{"2", t(10), t(20)}}, std::nullopt, t(5));
  CHECK_FALSE(s2.rebaseline_reason.empty());
}

TEST_CASE("a gap between change lists asks for a new baseline", "[client][plan]") {
  auto s = select_change_lists({{"1", t(0), t(10)}, {"2", t(12), std::nullopt}}, t(0), t(1));
  CHECK(s.urls.empty());
  CHECK_THAT(s.rebaseline_reason, Catch::Contains("gap"));
}

TEST_CASE("changes before the cursor are dropped and the cursor's own are kept", "[client][plan]") {
  auto r = reduce_changes({change("a", ChangeType::created, 1), change("b", ChangeType::created, 5),
                           change("c", ChangeType::created, 9)},
                          t(5));
  CHECK(paths(r) == std::vector<std::string>{"b:0", "c:0"});
  REQUIRE(r.newest);
  CHECK(*r.newest == t(9));
}

TEST_CASE("the last change of a path wins, in datetime order", "[client][plan]") {
  SECTION("created then deleted") {
    auto r = reduce_changes(
        {change("a", ChangeType::created, 1), change("a", ChangeType::deleted, 2)}, std::nullopt);
    CHECK(paths(r) == std::vector<std::string>{"a:2"});
  }
  SECTION("out of document order: datetime decides") {
    auto r = reduce_changes(
        {change("a", ChangeType::deleted, 3), change("a", ChangeType::updated, 2)}, std::nullopt);
    CHECK(paths(r) == std::vector<std::string>{"a:2"});
  }
  SECTION("equal datetimes keep document order") {
    auto r =
        reduce_changes({change("a", ChangeType::deleted, 2), change("b", ChangeType::created, 2),
                        change("a", ChangeType::created, 2)},
                       std::nullopt);
    CHECK(paths(r) == std::vector<std::string>{"b:0", "a:0"});
  }
  SECTION("a change without a time stays after its document neighbour") {
    auto r = reduce_changes(
        {change("a", ChangeType::created, 1), change("a", ChangeType::deleted, std::nullopt),
         change("b", ChangeType::created, 3)},
        std::nullopt);
    CHECK(paths(r) == std::vector<std::string>{"a:2", "b:0"});
  }
}

TEST_CASE("reducing twice gives the same plan (idempotent)", "[client][plan]") {
  std::vector<MappedChange> changes{change("a", ChangeType::created, 1),
                                    change("b", ChangeType::updated, 2),
                                    change("a", ChangeType::updated, 3)};
  auto once = reduce_changes(changes, t(0));
  auto twice = reduce_changes(once.changes, t(0));
  CHECK(paths(once) == paths(twice));
}

TEST_CASE("changes known only by lastmod are applied whatever the cursor", "[client][plan]") {
  MappedChange old = change("a", ChangeType::updated, std::nullopt);
  old.entry.lastmod = t(1);
  auto r = reduce_changes({old, change("b", ChangeType::created, 1)}, t(5));
  CHECK(paths(r) == std::vector<std::string>{"a:1"});
  CHECK_FALSE(r.newest);
}
