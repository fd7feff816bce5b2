#include "shardsync/bridge/aggregator.hpp"

#include <atomic>
#include <stdexcept>

#include "sync_engine.hpp"

namespace shardsync::bridge {

struct Aggregator::Impl {
  BridgeOptions options;
  std::unique_ptr<detail::SyncEngine> engine;
  std::atomic<bool> stopping{false};
};

Aggregator::Aggregator(BridgeOptions options) : impl_(std::make_unique<Impl>()) {
  if (options.run_id.empty() || options.worker_id.empty() || options.publish_url.empty()) {
    throw std::invalid_argument("Aggregator: run_id, worker_id and publish_url are required");
  }
  detail::normalize_urls(options);
  impl_->options = options;
  impl_->engine = std::make_unique<detail::SyncEngine>(std::move(options), detail::random_nonce());
}

Aggregator::~Aggregator() = default;

void Aggregator::stop() { impl_->stopping = true; }

std::string Aggregator::global_sha256(std::int64_t fragment) const {
  return impl_->engine->global_sha256(fragment);
}

Result<void> Aggregator::run(std::int64_t last_step,
                             const std::function<void(const SyncRecord&)>& on_sync) {
  Impl& d = *impl_;
  if (!valid_id(d.options.run_id) || !valid_id(d.options.worker_id)) {
    return fail(bridge_errc::invalid_argument, "run_id and worker_id must be [A-Za-z0-9._-]");
  }
  auto resumed = d.engine->bootstrap(std::nullopt, nullptr);
  if (!resumed) return fail(resumed.error());
  auto schedule = Schedule::create(d.engine->config());
  if (!schedule) return fail(bridge_errc::config_mismatch, schedule.error().describe());
  const std::int64_t fragments = d.engine->config().p;
  std::vector<std::uint64_t> count(static_cast<std::size_t>(fragments), 0);
  for (std::int64_t p = 0; p < fragments; ++p) {
    for (std::int64_t s = schedule->next_sync(p, 0); s <= *resumed; s = schedule->next_sync(p, s)) {
      ++count[static_cast<std::size_t>(p)];
    }
  }
  const auto stopping = [&d] { return d.stopping.load(); };
  auto one = [&](std::int64_t p, std::int64_t step) -> Result<void> {
    const std::uint64_t n = ++count[static_cast<std::size_t>(p)];
    detail::SyncEngine::Outcome outcome = d.engine->aggregate(p, n, step, stopping);
    if (outcome.error.code) return fail(outcome.error);
    if (on_sync) on_sync(outcome.record);
    return {};
  };
  for (std::int64_t step = *resumed + 1; step <= last_step; ++step) {
    if (const auto p = schedule->events_at(step).send) {
      if (auto done = one(*p, step); !done) return done;
    }
  }
  if (fragments > 1) {  // the final sync of every fragment (DiLoCoBridge::finalize, R8)
    for (std::int64_t p = 0; p < fragments; ++p) {
      if (auto done = one(p, last_step); !done) return done;
    }
  }
  return {};
}

}  // namespace shardsync::bridge
