#pragma once
// `shardsync sync --follow`: sync once, then stay and sync again whenever the source
// announces changes. The announcements come from the set's Change Notification channel
// (found in its Capability List) read as an event stream (text/event-stream) on a thread of
// its own; events that arrive during a sync are coalesced into the next round. While the
// stream is down (none advertised, the server gone), the open Change List is polled with
// conditional GETs every poll_interval and the stream is retried with backoff.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "shardsync/client/sync.hpp"
#include "shardsync/result.hpp"

namespace shardsync::client {

struct FollowOptions {
  std::chrono::milliseconds poll_interval{10'000};  // while the stream is down
  std::chrono::milliseconds stream_backoff{500};    // first retry of a failed stream
  std::chrono::milliseconds max_stream_backoff{30'000};
};

enum class RoundTrigger {
  initial,      // the first sync
  event,        // a change notification
  stream_open,  // the stream (re)connected: catch up on what it could not announce
  poll,         // the stream is down: a periodic check
};
[[nodiscard]] const char* round_trigger_name(RoundTrigger trigger);

struct FollowRound {
  RoundTrigger trigger = RoundTrigger::initial;
  std::string event_id;  // the newest event id seen before the round (empty: none yet)
  Result<SyncReport> report = SyncReport{};
};

class Follower {
 public:
  Follower(SyncOptions sync, FollowOptions follow);
  ~Follower();
  Follower(const Follower&) = delete;
  Follower& operator=(const Follower&) = delete;

  // Syncs, then follows until stop(). `on_round` runs after every round, on this thread.
  // Fails only when the first sync fails; later failures are reported through on_round and
  // retried at the next event or poll.
  [[nodiscard]] Result<void> run(const std::function<void(const FollowRound&)>& on_round);

  // Any thread (not a signal handler): the round in progress finishes (its state saved),
  // then run() returns.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shardsync::client
