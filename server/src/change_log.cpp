#include "shardsync/server/change_log.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include "shardsync/server/errc.hpp"

namespace shardsync::server {
namespace {

// Bumped whenever the tables change shape; an older binary refuses a newer file rather than
// misreading it.
constexpr std::int64_t kSchemaVersion = 1;

constexpr const char* kSchema = R"sql(
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE collections (
  id               INTEGER PRIMARY KEY,
  name             TEXT NOT NULL UNIQUE,
  created_ns       INTEGER NOT NULL,
  earliest_from_ns INTEGER NOT NULL,
  first_retained   INTEGER NOT NULL,
  last_change      INTEGER NOT NULL,
  last_datetime_ns INTEGER NOT NULL
);
CREATE TABLE resources (
  collection_id INTEGER NOT NULL REFERENCES collections(id),
  path          TEXT NOT NULL,
  length        INTEGER NOT NULL,
  sha256        TEXT NOT NULL,
  md5           TEXT NOT NULL,
  mtime_ns      INTEGER NOT NULL,
  type          TEXT NOT NULL,
  PRIMARY KEY (collection_id, path)
) WITHOUT ROWID;
CREATE TABLE changes (
  collection_id INTEGER NOT NULL REFERENCES collections(id),
  number        INTEGER NOT NULL,
  path          TEXT NOT NULL,
  change        TEXT NOT NULL,
  datetime_ns   INTEGER NOT NULL,
  length        INTEGER NOT NULL,
  sha256        TEXT NOT NULL,
  md5           TEXT NOT NULL,
  mtime_ns      INTEGER NOT NULL,
  type          TEXT NOT NULL,
  PRIMARY KEY (collection_id, number)
) WITHOUT ROWID;
CREATE TABLE hash_cache (
  device   INTEGER NOT NULL,
  inode    INTEGER NOT NULL,
  size     INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  sha256   TEXT NOT NULL,
  md5      TEXT NOT NULL,
  PRIMARY KEY (device, inode)
) WITHOUT ROWID;
)sql";

constexpr std::string_view kLastDatetimeKey = "last_datetime_ns";
constexpr std::string_view kSchemaVersionKey = "schema_version";

std::int64_t system_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// SQLite stores signed 64-bit integers; unsigned values (inodes, lengths) travel bit for bit.
std::int64_t to_db(std::uint64_t v) { return static_cast<std::int64_t>(v); }
std::uint64_t from_db(std::int64_t v) { return static_cast<std::uint64_t>(v); }

struct StatementDeleter {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using Statement = std::unique_ptr<sqlite3_stmt, StatementDeleter>;

}  // namespace

struct ChangeLog::Impl {
  sqlite3* db = nullptr;
  std::string db_path;  // for error messages
  Clock now;
  // Prepared once per SQL text and reused: preparing costs more than running these.
  std::unordered_map<std::string_view, Statement> statements;
  // Collection ids never change once committed; forgotten on rollback (see transaction()).
  std::unordered_map<std::string, std::int64_t> collection_ids;
  int depth = 0;  // transactions open: 0 none, 1 a transaction, more: savepoints inside it

  ~Impl() {
    statements.clear();  // statements first: close_v2 would otherwise linger as a zombie
    if (db) sqlite3_close_v2(db);
  }

  tl::unexpected<Error> db_error(std::string_view purpose) const {
    return fail(errc::database,
                std::string(purpose) + ": " + sqlite3_errmsg(db) + " (" + db_path + ")");
  }

  // A cached statement, reset (bindings cleared, read lock released) when it goes out of scope.
  class Query {
   public:
    Query(Impl& impl, sqlite3_stmt* stmt, std::string_view purpose)
        : impl_(impl), stmt_(stmt), purpose_(purpose) {}
    Query(const Query&) = delete;
    Query& operator=(const Query&) = delete;
    Query(Query&& other) noexcept
        : impl_(other.impl_),
          stmt_(std::exchange(other.stmt_, nullptr)),
          purpose_(other.purpose_) {}
    Query& operator=(Query&&) = delete;
    ~Query() {
      if (!stmt_) return;
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }

    template <typename... Args>
    Result<void> bind(const Args&... args) {
      int index = 0;
      int rc = SQLITE_OK;
      ((rc = rc == SQLITE_OK ? bind_one(++index, args) : rc), ...);
      if (rc != SQLITE_OK) return impl_.db_error(purpose_);
      return {};
    }

    // True when a row is ready, false when done.
    Result<bool> step() {
      const int rc = sqlite3_step(stmt_);
      if (rc == SQLITE_ROW) return true;
      if (rc == SQLITE_DONE) return false;
      return impl_.db_error(purpose_);
    }

    // Runs a statement that returns no rows.
    Result<void> run() {
      auto r = step();
      if (!r) return fail(r.error());
      return {};
    }

    std::int64_t integer(int column) const { return sqlite3_column_int64(stmt_, column); }
    std::string text(int column) const {
      const auto* p = sqlite3_column_text(stmt_, column);
      const int n = sqlite3_column_bytes(stmt_, column);
      return p ? std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n))
               : std::string();
    }

   private:
    int bind_one(int i, std::int64_t v) { return sqlite3_bind_int64(stmt_, i, v); }
    int bind_one(int i, std::uint64_t v) { return sqlite3_bind_int64(stmt_, i, to_db(v)); }
    int bind_one(int i, std::string_view v) {
      return sqlite3_bind_text64(stmt_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
    }
    int bind_one(int i, const std::string& v) { return bind_one(i, std::string_view(v)); }
    int bind_one(int i, const char* v) { return bind_one(i, std::string_view(v)); }

    Impl& impl_;
    sqlite3_stmt* stmt_;
    std::string_view purpose_;
  };

  // `sql` must be a string literal: the cache keys on it without copying.
  Result<Query> query(std::string_view sql, std::string_view purpose) {
    auto it = statements.find(sql);
    if (it == statements.end()) {
      sqlite3_stmt* raw = nullptr;
      if (sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()),
                             SQLITE_PREPARE_PERSISTENT, &raw, nullptr) != SQLITE_OK) {
        return db_error(std::string("preparing to ") + std::string(purpose));
      }
      it = statements.emplace(sql, Statement(raw)).first;
    }
    return Query(*this, it->second.get(), purpose);
  }

  Result<void> exec(const char* sql, std::string_view purpose) {
    if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) return db_error(purpose);
    return {};
  }

  // Runs `fn` in a transaction: BEGIN IMMEDIATE for writers (taking the write lock up front, so
  // a read never has to be upgraded, which in WAL mode can fail with SQLITE_BUSY_SNAPSHOT
  // instead of waiting), a deferred BEGIN for readers (one consistent WAL snapshot), and a
  // savepoint inside an open transaction. A failed `fn` undoes all it did.
  template <typename Fn>
  auto transaction(bool write, std::string_view purpose, Fn&& fn) -> decltype(fn()) {
    const bool outer = depth == 0;
    if (auto r = exec(outer ? (write ? "BEGIN IMMEDIATE" : "BEGIN") : "SAVEPOINT nested",
                      std::string("starting a transaction to ") + std::string(purpose));
        !r) {
      return fail(r.error());
    }
    ++depth;
    decltype(fn()) result = [&]() -> decltype(fn()) {
      try {
        return fn();
      } catch (...) {
        --depth;
        undo(outer);
        throw;
      }
    }();
    --depth;
    if (!result) {
      undo(outer);
      return result;
    }
    if (auto r = exec(outer ? "COMMIT" : "RELEASE nested",
                      std::string("committing to ") + std::string(purpose));
        !r) {
      undo(outer);
      return fail(r.error());
    }
    return result;
  }

  void undo(bool outer) {
    // Best effort: if even the rollback fails, SQLite rolls back when the connection closes.
    if (outer) {
      if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    } else {
      sqlite3_exec(db, "ROLLBACK TO nested; RELEASE nested", nullptr, nullptr, nullptr);
    }
    // A collection inserted in the undone work is gone again.
    collection_ids.clear();
  }

  Result<std::optional<std::int64_t>> meta(std::string_view key) {
    auto q = query("SELECT value FROM meta WHERE key = ?1", "read the meta table");
    if (!q) return fail(q.error());
    if (auto r = q->bind(key); !r) return fail(r.error());
    auto row = q->step();
    if (!row) return fail(row.error());
    if (!*row) return std::optional<std::int64_t>();
    return q->integer(0);
  }

  Result<void> set_meta(std::string_view key, std::int64_t value) {
    auto q = query(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        "write the meta table");
    if (!q) return fail(q.error());
    if (auto r = q->bind(key, value); !r) return fail(r.error());
    return q->run();
  }

  // The next change datetime: now, but always after the last one issued, which is stored in
  // the same transaction, so order survives restarts and a wall clock stepped back.
  // Call inside a write transaction.
  Result<std::int64_t> next_datetime() {
    auto last = meta(kLastDatetimeKey);
    if (!last) return fail(last.error());
    std::int64_t t = now();
    if (last->has_value()) t = std::max(t, **last + 1);
    if (auto r = set_meta(kLastDatetimeKey, t); !r) return fail(r.error());
    return t;
  }

  Result<std::optional<std::int64_t>> find_collection_id(const std::string& name) {
    if (auto it = collection_ids.find(name); it != collection_ids.end()) return it->second;
    auto q = query("SELECT id FROM collections WHERE name = ?1", "look up a collection");
    if (!q) return fail(q.error());
    if (auto r = q->bind(name); !r) return fail(r.error());
    auto row = q->step();
    if (!row) return fail(row.error());
    if (!*row) return std::optional<std::int64_t>();
    const std::int64_t id = q->integer(0);
    collection_ids.emplace(name, id);
    return id;
  }

  Result<std::int64_t> collection_id(const std::string& name) {
    auto id = find_collection_id(name);
    if (!id) return fail(id.error());
    if (!*id) return fail(errc::invalid_config, "collection " + name + " is not registered");
    return **id;
  }

  Result<CollectionInfo> read_collection(const std::string& name) {
    auto q = query(
        "SELECT created_ns, earliest_from_ns, first_retained, last_change, "
        "last_datetime_ns FROM collections WHERE name = ?1",
        "read a collection");
    if (!q) return fail(q.error());
    if (auto r = q->bind(name); !r) return fail(r.error());
    auto row = q->step();
    if (!row) return fail(row.error());
    if (!*row) return fail(errc::invalid_config, "collection " + name + " is not registered");
    CollectionInfo info;
    info.name = name;
    info.created_ns = q->integer(0);
    info.earliest_from_ns = q->integer(1);
    info.first_retained = from_db(q->integer(2));
    info.last_change = from_db(q->integer(3));
    info.last_datetime_ns = q->integer(4);
    return info;
  }

  Result<std::optional<ResourceState>> read_resource(std::int64_t id, const std::string& path) {
    auto q = query(
        "SELECT length, sha256, md5, mtime_ns, type FROM resources "
        "WHERE collection_id = ?1 AND path = ?2",
        "read a resource");
    if (!q) return fail(q.error());
    if (auto r = q->bind(id, path); !r) return fail(r.error());
    auto row = q->step();
    if (!row) return fail(row.error());
    if (!*row) return std::optional<ResourceState>();
    ResourceState s;
    s.path = path;
    s.length = from_db(q->integer(0));
    s.sha256 = q->text(1);
    s.md5 = q->text(2);
    s.mtime_ns = q->integer(3);
    s.type = q->text(4);
    return s;
  }

  // Rows of (path, length, sha256, md5, mtime_ns, type).
  static Result<std::vector<ResourceState>> read_resources(Query& q) {
    std::vector<ResourceState> out;
    for (;;) {
      auto row = q.step();
      if (!row) return fail(row.error());
      if (!*row) break;
      ResourceState s;
      s.path = q.text(0);
      s.length = from_db(q.integer(1));
      s.sha256 = q.text(2);
      s.md5 = q.text(3);
      s.mtime_ns = q.integer(4);
      s.type = q.text(5);
      out.push_back(std::move(s));
    }
    return out;
  }

  Result<void> open_schema() {
    return transaction(true, "set up the schema", [&]() -> Result<void> {
      bool exists = false;
      {
        auto q = query("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'meta'",
                       "inspect the schema");
        if (!q) return fail(q.error());
        auto row = q->step();
        if (!row) return fail(row.error());
        exists = *row && q->integer(0) > 0;
      }
      if (!exists) {
        if (auto r = exec(kSchema, "create the schema"); !r) return r;
        return set_meta(kSchemaVersionKey, kSchemaVersion);
      }
      auto version = meta(kSchemaVersionKey);
      if (!version) return fail(version.error());
      if (!*version || **version != kSchemaVersion) {
        return fail(errc::database,
                    "unsupported change log schema version " +
                        (*version ? std::to_string(**version) : std::string("(none)")) +
                        ", this program reads version " + std::to_string(kSchemaVersion) + " (" +
                        db_path + ")");
      }
      return {};
    });
  }
};

ChangeLog::ChangeLog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ChangeLog::~ChangeLog() = default;

Result<std::unique_ptr<ChangeLog>> ChangeLog::open(const std::string& state_dir) {
  return open(state_dir, system_now_ns);
}

Result<std::unique_ptr<ChangeLog>> ChangeLog::open(const std::string& state_dir, Clock now) {
  if (!now) return fail(errc::invalid_config, "change log clock is empty");
  std::error_code ec;
  std::filesystem::create_directories(state_dir, ec);
  if (ec)
    return fail(errc::io_error, "cannot create state directory " + state_dir + ": " + ec.message());
  auto impl = std::make_unique<Impl>();
  impl->db_path = (std::filesystem::path(state_dir) / "changes.sqlite").string();
  impl->now = std::move(now);
  const int rc = sqlite3_open_v2(impl->db_path.c_str(), &impl->db,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    if (!impl->db) return fail(errc::database, "opening " + impl->db_path + ": out of memory");
    return impl->db_error("opening the change log");
  }
  sqlite3_extended_result_codes(impl->db, 1);
  // Writers in other threads or processes wait for each other instead of failing at once.
  sqlite3_busy_timeout(impl->db, 10'000);

  {
    // WAL lets readers (document builds) run beside the writer; the pragma answers with the
    // mode it got, which is not WAL on file systems that cannot share memory (NFS).
    auto q = impl->query("PRAGMA journal_mode = WAL", "switch to WAL mode");
    if (!q) return fail(q.error());
    auto row = q->step();
    if (!row) return fail(row.error());
    const std::string mode = *row ? q->text(0) : std::string();
    if (mode != "wal") {
      return fail(errc::database,
                  "the change log needs WAL mode, got \"" + mode + "\" (" + impl->db_path + ")");
    }
  }
  // FULL: a change is durable when record() returns (NORMAL could lose the last ones on
  // power loss, and a destination might already have seen them).
  if (auto r = impl->exec("PRAGMA synchronous = FULL", "set synchronous=FULL"); !r) {
    return fail(r.error());
  }
  if (auto r = impl->open_schema(); !r) return fail(r.error());
  return std::unique_ptr<ChangeLog>(new ChangeLog(std::move(impl)));
}

Result<CollectionInfo> ChangeLog::ensure_collection(const std::string& name) {
  Impl& s = *impl_;
  auto id = s.find_collection_id(name);
  if (!id) return fail(id.error());
  if (*id) return s.read_collection(name);
  return s.transaction(true, "register collection " + name, [&]() -> Result<CollectionInfo> {
    // The creation time comes from the same sequence as change datetimes, so the first
    // change list's `from` precedes its first change.
    auto created = s.next_datetime();
    if (!created) return fail(created.error());
    auto q = s.query(
        "INSERT INTO collections (name, created_ns, earliest_from_ns, first_retained, "
        "last_change, last_datetime_ns) VALUES (?1, ?2, ?2, 1, 0, ?2) "
        "ON CONFLICT (name) DO NOTHING",
        "register a collection");
    if (!q) return fail(q.error());
    if (auto r = q->bind(name, *created); !r) return fail(r.error());
    if (auto r = q->run(); !r) return fail(r.error());
    return s.read_collection(name);
  });
}

Result<CollectionInfo> ChangeLog::collection(const std::string& name) {
  return impl_->read_collection(name);
}

Result<std::optional<Change>> ChangeLog::record(const std::string& collection,
                                                sitemap::ChangeType change,
                                                const ResourceState& state) {
  Impl& s = *impl_;
  return s.transaction(true, "record a change", [&]() -> Result<std::optional<Change>> {
    auto info = s.read_collection(collection);
    if (!info) return fail(info.error());
    auto id = s.collection_id(collection);
    if (!id) return fail(id.error());
    auto current = s.read_resource(*id, state.path);
    if (!current) return fail(current.error());

    Change c;
    c.path = state.path;
    if (change == sitemap::ChangeType::deleted) {
      if (!*current) return std::optional<Change>();
      c.change = sitemap::ChangeType::deleted;
      c.state.path = state.path;
      auto q = s.query("DELETE FROM resources WHERE collection_id = ?1 AND path = ?2",
                       "delete a resource");
      if (!q) return fail(q.error());
      if (auto r = q->bind(*id, state.path); !r) return fail(r.error());
      if (auto r = q->run(); !r) return fail(r.error());
    } else {
      if (*current) {
        const ResourceState& old = **current;
        if (old.sha256 == state.sha256 && old.md5 == state.md5 && old.length == state.length &&
            old.mtime_ns == state.mtime_ns) {
          return std::optional<Change>();
        }
      }
      c.change = *current ? sitemap::ChangeType::updated : sitemap::ChangeType::created;
      c.state = state;
      auto q = s.query(
          "INSERT INTO resources (collection_id, path, length, sha256, md5, mtime_ns, type) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (collection_id, path) DO UPDATE SET "
          "length = excluded.length, sha256 = excluded.sha256, md5 = excluded.md5, "
          "mtime_ns = excluded.mtime_ns, type = excluded.type",
          "store a resource");
      if (!q) return fail(q.error());
      if (auto r = q->bind(*id, state.path, state.length, state.sha256, state.md5, state.mtime_ns,
                           state.type);
          !r) {
        return fail(r.error());
      }
      if (auto r = q->run(); !r) return fail(r.error());
    }

    auto datetime = s.next_datetime();
    if (!datetime) return fail(datetime.error());
    c.datetime_ns = *datetime;
    c.number = info->last_change + 1;
    {
      auto q = s.query(
          "INSERT INTO changes (collection_id, number, path, change, datetime_ns, length, "
          "sha256, md5, mtime_ns, type) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
          "append a change");
      if (!q) return fail(q.error());
      if (auto r =
              q->bind(*id, c.number, c.path, sitemap::change_type_name(c.change), c.datetime_ns,
                      c.state.length, c.state.sha256, c.state.md5, c.state.mtime_ns, c.state.type);
          !r) {
        return fail(r.error());
      }
      if (auto r = q->run(); !r) return fail(r.error());
    }
    auto q = s.query("UPDATE collections SET last_change = ?2, last_datetime_ns = ?3 WHERE id = ?1",
                     "advance the collection");
    if (!q) return fail(q.error());
    if (auto r = q->bind(*id, c.number, c.datetime_ns); !r) return fail(r.error());
    if (auto r = q->run(); !r) return fail(r.error());
    return std::optional<Change>(std::move(c));
  });
}

Result<std::optional<ResourceState>> ChangeLog::resource(const std::string& collection,
                                                         const std::string& path) {
  Impl& s = *impl_;
  auto id = s.collection_id(collection);
  if (!id) return fail(id.error());
  return s.read_resource(*id, path);
}

Result<ChangeLog::Snapshot> ChangeLog::snapshot(const std::string& collection) {
  Impl& s = *impl_;
  // One read transaction: in WAL mode it sees one committed state, so the resources match
  // info.last_change even while another connection records changes.
  return s.transaction(false, "read a snapshot", [&]() -> Result<Snapshot> {
    Snapshot snap;
    auto info = s.read_collection(collection);
    if (!info) return fail(info.error());
    snap.info = std::move(*info);
    auto id = s.collection_id(collection);
    if (!id) return fail(id.error());
    auto q = s.query(
        "SELECT path, length, sha256, md5, mtime_ns, type FROM resources "
        "WHERE collection_id = ?1 ORDER BY path",
        "read the resources");
    if (!q) return fail(q.error());
    if (auto r = q->bind(*id); !r) return fail(r.error());
    auto resources = Impl::read_resources(*q);
    if (!resources) return fail(resources.error());
    snap.resources = std::move(*resources);
    return snap;
  });
}

Result<std::vector<ResourceState>> ChangeLog::resources_under(const std::string& collection,
                                                              const std::string& prefix) {
  Impl& s = *impl_;
  auto id = s.collection_id(collection);
  if (!id) return fail(id.error());
  // Paths starting with "prefix/" are exactly those in ["prefix/", "prefix0"): '0' follows
  // '/' in byte order, which is how SQLite's BINARY collation compares, and the range is a
  // seek on the primary key. An empty prefix takes everything: no UTF-8 text has a 0xff byte.
  const std::string low = prefix.empty() ? std::string() : prefix + "/";
  const std::string high = prefix.empty() ? std::string("\xff") : prefix + "0";
  auto q = s.query(
      "SELECT path, length, sha256, md5, mtime_ns, type FROM resources "
      "WHERE collection_id = ?1 AND path >= ?2 AND path < ?3 ORDER BY path",
      "read resources below a directory");
  if (!q) return fail(q.error());
  if (auto r = q->bind(*id, low, high); !r) return fail(r.error());
  return Impl::read_resources(*q);
}

Result<std::vector<Change>> ChangeLog::changes(const std::string& collection, std::uint64_t first,
                                               std::uint64_t last) {
  Impl& s = *impl_;
  std::vector<Change> out;
  if (first > last) return out;
  auto id = s.collection_id(collection);
  if (!id) return fail(id.error());
  auto q = s.query(
      "SELECT number, path, change, datetime_ns, length, sha256, md5, mtime_ns, type "
      "FROM changes WHERE collection_id = ?1 AND number BETWEEN ?2 AND ?3 ORDER BY number",
      "read changes");
  if (!q) return fail(q.error());
  if (auto r = q->bind(*id, first, last); !r) return fail(r.error());
  for (;;) {
    auto row = q->step();
    if (!row) return fail(row.error());
    if (!*row) break;
    Change c;
    c.number = from_db(q->integer(0));
    c.path = q->text(1);
    const std::string name = q->text(2);
    const auto type = sitemap::change_type_from_name(name);
    if (!type) {
      return fail(errc::database, "change " + std::to_string(c.number) + " of " + collection +
                                      " has unknown type \"" + name + "\" (" + s.db_path + ")");
    }
    c.change = *type;
    c.datetime_ns = q->integer(3);
    c.state.path = c.path;
    c.state.length = from_db(q->integer(4));
    c.state.sha256 = q->text(5);
    c.state.md5 = q->text(6);
    c.state.mtime_ns = q->integer(7);
    c.state.type = q->text(8);
    out.push_back(std::move(c));
  }
  return out;
}

Result<void> ChangeLog::prune(const std::string& collection, std::int64_t keep_from_ns,
                              std::uint64_t block) {
  if (block == 0) return fail(errc::invalid_config, "prune block size is 0");
  Impl& s = *impl_;
  return s.transaction(true, "prune changes", [&]() -> Result<void> {
    auto info = s.read_collection(collection);
    if (!info) return fail(info.error());
    auto id = s.collection_id(collection);
    if (!id) return fail(id.error());
    // Datetimes increase with numbers, so the changes older than the cut-off are a prefix.
    std::uint64_t newest_old = 0;
    {
      auto q =
          s.query("SELECT max(number) FROM changes WHERE collection_id = ?1 AND datetime_ns < ?2",
                  "find changes to prune");
      if (!q) return fail(q.error());
      if (auto r = q->bind(*id, keep_from_ns); !r) return fail(r.error());
      auto row = q->step();
      if (!row) return fail(row.error());
      if (*row) newest_old = from_db(q->integer(0));  // NULL reads as 0: nothing old
    }
    const std::uint64_t cut = newest_old / block * block;
    if (cut < info->first_retained) return {};
    std::int64_t until_ns = 0;
    {
      auto q = s.query("SELECT datetime_ns FROM changes WHERE collection_id = ?1 AND number = ?2",
                       "read the last pruned change");
      if (!q) return fail(q.error());
      if (auto r = q->bind(*id, cut); !r) return fail(r.error());
      auto row = q->step();
      if (!row) return fail(row.error());
      if (!*row) {
        return fail(errc::database, "change " + std::to_string(cut) + " of " + collection +
                                        " is missing (" + s.db_path + ")");
      }
      until_ns = q->integer(0);
    }
    {
      auto q = s.query("DELETE FROM changes WHERE collection_id = ?1 AND number <= ?2",
                       "delete pruned changes");
      if (!q) return fail(q.error());
      if (auto r = q->bind(*id, cut); !r) return fail(r.error());
      if (auto r = q->run(); !r) return fail(r.error());
    }
    auto q =
        s.query("UPDATE collections SET first_retained = ?2, earliest_from_ns = ?3 WHERE id = ?1",
                "move the collection's retained start");
    if (!q) return fail(q.error());
    if (auto r = q->bind(*id, cut + 1, until_ns); !r) return fail(r.error());
    return q->run();
  });
}

Result<std::optional<std::pair<std::string, std::string>>> ChangeLog::cached_hashes(
    const FileKey& key) {
  using Digests = std::optional<std::pair<std::string, std::string>>;
  auto q = impl_->query(
      "SELECT sha256, md5 FROM hash_cache WHERE device = ?1 AND inode = ?2 "
      "AND size = ?3 AND mtime_ns = ?4",
      "read the hash cache");
  if (!q) return fail(q.error());
  if (auto r = q->bind(key.device, key.inode, key.size, key.mtime_ns); !r) return fail(r.error());
  auto row = q->step();
  if (!row) return fail(row.error());
  if (!*row) return Digests();
  return Digests(std::pair(q->text(0), q->text(1)));
}

Result<void> ChangeLog::cache_hashes(const FileKey& key, const std::string& sha256,
                                     const std::string& md5) {
  // One row per (device, inode): a file's new digests replace its old ones, and a reused
  // inode number takes over the row, which keeps the table near the number of files.
  auto q = impl_->query(
      "INSERT INTO hash_cache (device, inode, size, mtime_ns, sha256, md5) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (device, inode) DO UPDATE SET "
      "size = excluded.size, mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256, "
      "md5 = excluded.md5",
      "write the hash cache");
  if (!q) return fail(q.error());
  if (auto r = q->bind(key.device, key.inode, key.size, key.mtime_ns, sha256, md5); !r) {
    return fail(r.error());
  }
  return q->run();
}

Result<void> ChangeLog::batch(const std::function<Result<void>()>& work) {
  return impl_->transaction(true, "run a batch", work);
}

}  // namespace shardsync::server
