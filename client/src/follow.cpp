#include "shardsync/client/follow.hpp"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "event_source.hpp"
#include "shardsync/client/discovery.hpp"
#include "shardsync/client/document_client.hpp"
#include "shardsync/client/errc.hpp"

namespace shardsync::client {

const char* round_trigger_name(RoundTrigger trigger) {
  switch (trigger) {
    case RoundTrigger::initial:
      return "initial";
    case RoundTrigger::event:
      return "event";
    case RoundTrigger::stream_open:
      return "stream-open";
    case RoundTrigger::poll:
      return "poll";
  }
  return "unknown";
}

struct Follower::Impl {
  SyncOptions sync;
  FollowOptions follow;

  std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;
  bool stream_up = false;
  bool pending = false;  // something was announced since the last round began
  RoundTrigger pending_trigger = RoundTrigger::event;
  std::string last_event_id;
  std::thread reader;

  void say(const std::string& line) const {
    if (sync.log) sync.log(line);
  }

  // The set's Change Notification topic, from its Capability List; empty when it has none.
  std::string find_topic() {
    DocumentClientOptions o;
    o.bearer_token = sync.bearer_token;
    o.ca_file = sync.ca_file;
    o.max_attempts = 1;
    DocumentClient client(o);
    auto endpoints = discover(client, sync.source, sync.collection);
    if (!endpoints || endpoints->capability_list_url.empty()) return {};
    auto list = client.get_document(endpoints->capability_list_url);
    if (!list) return {};
    for (const sitemap::Entry& e : list->entries) {
      if (e.md && e.md->capability == "changelist-notification") {
        return resolve_url(endpoints->capability_list_url, e.loc);
      }
    }
    return {};
  }

  void announce(RoundTrigger trigger) {
    {
      std::lock_guard lock(mutex);
      // A stream_open round also covers events; an event does not cover a reconnect.
      if (!pending || trigger == RoundTrigger::stream_open) pending_trigger = trigger;
      pending = true;
    }
    wake.notify_all();
  }

  // Waits `delay` unless stop() comes first (then false).
  bool sleep(std::chrono::milliseconds delay) {
    std::unique_lock lock(mutex);
    return !wake.wait_for(lock, delay, [this] { return stopping; });
  }

  // The reader thread: keeps the event stream open, reconnecting with backoff.
  void read_stream() {
    std::chrono::milliseconds backoff = follow.stream_backoff;
    std::string topic;
    bool told_polling = false;
    while (true) {
      {
        std::lock_guard lock(mutex);
        if (stopping) return;
      }
      if (topic.empty()) topic = find_topic();
      if (topic.empty()) {
        if (!told_polling) say("no changelist-notification channel found: polling");
        told_polling = true;
        if (!sleep(backoff)) return;
        backoff = std::min(backoff * 2, follow.max_stream_backoff);
        continue;
      }
      detail::EventSourceOptions o;
      o.url = topic;
      o.bearer_token = sync.bearer_token;
      o.ca_file = sync.ca_file;
      bool opened = false;
      detail::EventSourceHooks hooks;
      hooks.on_open = [&] {
        opened = true;
        backoff = follow.stream_backoff;
        {
          std::lock_guard lock(mutex);
          stream_up = true;
        }
        say("following " + topic);
        announce(RoundTrigger::stream_open);
      };
      hooks.on_event = [&](const detail::SseEvent& event) {
        {
          std::lock_guard lock(mutex);
          last_event_id = event.id;
        }
        announce(RoundTrigger::event);
      };
      hooks.should_stop = [this] {
        std::lock_guard lock(mutex);
        return stopping;
      };
      std::string id;
      {
        std::lock_guard lock(mutex);
        id = last_event_id;
      }
      auto ended = detail::read_event_stream(o, hooks, id);
      {
        std::lock_guard lock(mutex);
        stream_up = false;
        if (stopping) return;
      }
      wake.notify_all();  // the main loop polls meanwhile
      say("event stream " + (ended ? std::string("closed") : ended.error().describe()) +
          "; polling every " + std::to_string(follow.poll_interval.count()) + " ms meanwhile");
      // A stream that worked is retried soon; one that never opened, with growing pauses
      // (rediscovering the topic, which may have moved).
      if (!opened) topic.clear();
      if (!sleep(backoff)) return;
      backoff = std::min(backoff * 2, follow.max_stream_backoff);
    }
  }
};

Follower::Follower(SyncOptions sync, FollowOptions follow) : impl_(std::make_unique<Impl>()) {
  impl_->sync = std::move(sync);
  impl_->follow = follow;
}

Follower::~Follower() {
  stop();
  if (impl_->reader.joinable()) impl_->reader.join();
}

void Follower::stop() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
}

Result<void> Follower::run(const std::function<void(const FollowRound&)>& on_round) {
  Impl& s = *impl_;
  FollowRound first;
  first.report = client::sync(s.sync);
  if (!first.report) return fail(first.report.error());
  if (on_round) on_round(first);

  s.reader = std::thread([&s] { s.read_stream(); });
  auto next_poll = std::chrono::steady_clock::now() + s.follow.poll_interval;
  while (true) {
    FollowRound round;
    {
      std::unique_lock lock(s.mutex);
      // With the stream up, wait for it; without, wake for polls too.
      while (!s.stopping && !s.pending) {
        if (s.stream_up) {
          s.wake.wait(lock);
          continue;
        }
        if (std::chrono::steady_clock::now() >= next_poll) break;
        s.wake.wait_until(lock, next_poll);
      }
      if (s.stopping) break;
      round.trigger = s.pending ? s.pending_trigger : RoundTrigger::poll;
      round.event_id = s.last_event_id;
      s.pending = false;
    }
    round.report = client::sync(s.sync);
    next_poll = std::chrono::steady_clock::now() + s.follow.poll_interval;
    if (on_round) on_round(round);
  }
  if (s.reader.joinable()) s.reader.join();
  return {};
}

}  // namespace shardsync::client
