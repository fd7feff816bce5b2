#pragma once
// Watches a collection directory tree with inotify and reports what to re-check: files
// closed after writing, moved in or out, deleted; new directories are watched as they
// appear. An overflow of the kernel queue is reported as a need for a full rescan.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "shardsync/result.hpp"

namespace shardsync::server {

struct WatchEvent {
  std::string relative_path;  // within the collection; "" with `rescan`
  bool closed = false;        // written and closed, or moved in whole
  bool removed = false;       // deleted or moved away
  bool directory = false;
  bool rescan = false;  // events were lost: scan everything
};

class Watcher {
 public:
  // Starts watching `directory` and everything below it.
  [[nodiscard]] static Result<std::unique_ptr<Watcher>> start(const std::string& directory);
  ~Watcher();

  // Waits up to `timeout` for events and returns them (possibly none). Thread: one caller.
  [[nodiscard]] Result<std::vector<WatchEvent>> poll(std::chrono::milliseconds timeout);

  // The inotify descriptor, for callers that multiplex several watchers with poll(2).
  [[nodiscard]] int fd() const;

 private:
  struct Impl;
  explicit Watcher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace shardsync::server
