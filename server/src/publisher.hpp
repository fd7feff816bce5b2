#pragma once
// PUT and DELETE of resources over HTTP: an upload streams into a temporary file beside its
// target (named with kUploadPrefix, which scanners pass over), hashed as it arrives; commit()
// fsyncs it, renames it into place, fsyncs the directory and only then logs the change, so
// a reader never sees a half-written file under its name and the log never lists one.
// Paths are resolved beneath the collection directory without following symlinks.

#include <functional>
#include <optional>
#include <vector>

#include "shardsync/result.hpp"
#include "shardsync/server/change_log.hpp"
#include "shardsync/server/collection.hpp"
#include "shardsync/server/http_server.hpp"

namespace shardsync::server::detail {

// Logs a change whose file is already in place; returns what was recorded (nullopt: the
// log already had exactly this state).
using RecordChange = std::function<Result<std::optional<Change>>(
    const std::string& collection, sitemap::ChangeType change, const ResourceState& state,
    const FileKey& key)>;

// Remembers an upload's digests by its FileKey before it is renamed into place, so that a
// watcher that sees the rename before the change is logged takes them from the hash cache
// instead of reading the file again.
using CacheHashes = std::function<Result<void>(const FileKey& key, const std::string& sha256,
                                               const std::string& md5)>;

[[nodiscard]] PublishHooks make_publish_hooks(std::vector<Collection> collections,
                                              RecordChange record, CacheHashes cache = {});

}  // namespace shardsync::server::detail
