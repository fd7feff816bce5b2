#include "shardsync/bridge/schedule.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <numbers>
#include <set>
#include <utility>

namespace shardsync::bridge {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "shardsync.bridge.core"; }

  std::string message(int value) const override {
    switch (static_cast<core_errc>(value)) {
      case core_errc::invalid_config:
        return "invalid run configuration";
      case core_errc::malformed_json:
        return "malformed JSON";
      case core_errc::size_mismatch:
        return "size mismatch";
      case core_errc::empty_input:
        return "empty input";
      case core_errc::duplicate_worker:
        return "duplicate worker";
      case core_errc::bad_state:
        return "bad optimizer state";
    }
    return "unknown shardsync.bridge.core error";
  }
};

// QSR can ask for an astronomically long round when the lr is tiny; cap it so step
// arithmetic never overflows. 2^40 inner steps is far beyond any real run.
constexpr std::int64_t kMaxRoundLength = std::int64_t{1} << 40;

tl::unexpected<Error> invalid(std::string detail) {
  return fail(core_errc::invalid_config, std::move(detail));
}

bool finite(double v) { return std::isfinite(v); }

}  // namespace

const std::error_category& core_category() noexcept {
  static const Category category;
  return category;
}

std::string_view to_string(Pattern p) noexcept {
  return p == Pattern::strided ? "strided" : "sequential";
}

double LrSchedule::at(std::int64_t step) const {
  if (kind == Kind::constant) return peak;
  // diloco_sim.py's lr_at(step - 1, total, peak, warmup, min_ratio).
  const auto s = static_cast<double>(step - 1);
  if (step - 1 < warmup_steps) return peak * (s + 1.0) / static_cast<double>(warmup_steps);
  const double span = static_cast<double>(std::max<std::int64_t>(1, total_steps - warmup_steps));
  const double prog = std::min(1.0, (s - static_cast<double>(warmup_steps)) / span);
  return peak * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + std::cos(std::numbers::pi * prog)));
}

std::vector<std::int64_t> RunConfig::offsets_for(std::int64_t round_h) const {
  if (!offsets.empty()) return offsets;
  // torchft's float formula, floor(H / P * (p + 1)) in double: it differs from the exact
  // integer floor(H*(p+1)/P) for some H, P (e.g. 15/11*11 = 14.999...), and workers driven by
  // torchft must agree with us. Built with -ffp-contract=off so no FMA changes the rounding.
  std::vector<std::int64_t> out;
  out.reserve(static_cast<std::size_t>(p));
  const double per = static_cast<double>(round_h) / static_cast<double>(p);
  for (std::int64_t i = 0; i < p; ++i) {
    out.push_back(static_cast<std::int64_t>(std::floor(per * static_cast<double>(i + 1))));
  }
  return out;
}

Result<void> RunConfig::validate() const {
  if (p < 1) return invalid("P must be >= 1, got " + std::to_string(p));
  if (h < 1) return invalid("H must be >= 1, got " + std::to_string(h));
  if (!qsr && h < p) return invalid("H must be >= P (H/P inner steps between fragment syncs)");
  if (tau < 0) return invalid("tau must be >= 0");
  const std::int64_t min_h = qsr ? qsr->h_base : h;
  if (tau > 0 && tau * p >= min_h) {
    // torchft's rule (fragment_sync_delay < sync_every / P): at most one update in flight.
    return invalid("tau*P must be < H (tau=" + std::to_string(tau) + ", P=" + std::to_string(p) +
                   ", H=" + std::to_string(min_h) + ")");
  }
  if (!finite(alpha) || alpha < 0.0 || alpha > 1.0) return invalid("alpha must be in [0, 1]");
  if (!finite(outer_lr) || outer_lr <= 0.0) return invalid("outer.lr must be > 0");
  if (!finite(outer_momentum) || outer_momentum < 0.0 || outer_momentum >= 1.0) {
    return invalid("outer.momentum must be in [0, 1)");
  }
  static const std::set<std::string, std::less<>> kFormats = {"f32", "bf16", "int8", "fp4-e3m0",
                                                              "uint8-codebook"};
  if (!kFormats.contains(wire_format)) return invalid("unknown wire format '" + wire_format + "'");
  if (block_size == 0) return invalid("block_size must be > 0");
  if (!offsets.empty()) {
    if (qsr) return invalid("explicit offsets cannot be combined with QSR (H varies per round)");
    if (std::cmp_not_equal(offsets.size(), p)) {
      return invalid("offsets must list P=" + std::to_string(p) + " values, got " +
                     std::to_string(offsets.size()));
    }
  }
  if (qsr) {
    const QsrOptions& q = *qsr;
    if (q.h_base < p) return invalid("qsr.h_base must be >= P");
    if (!finite(q.alpha) || q.alpha <= 0.0) return invalid("qsr.alpha must be > 0");
    const LrSchedule& lr = q.lr;
    if (!finite(lr.peak) || lr.peak <= 0.0) return invalid("qsr.lr.peak must be > 0");
    if (lr.kind == LrSchedule::Kind::cosine) {
      if (lr.warmup_steps < 0) return invalid("qsr.lr.warmup_steps must be >= 0");
      if (lr.total_steps <= lr.warmup_steps) {
        return invalid("qsr.lr.total_steps must be > warmup_steps");
      }
      // QSR divides by the lr: it must stay > 0.
      if (!finite(lr.min_ratio) || lr.min_ratio <= 0.0 || lr.min_ratio > 1.0) {
        return invalid("qsr.lr.min_ratio must be in (0, 1]");
      }
    }
  }
  const std::vector<std::int64_t> offs = offsets_for(qsr ? qsr->h_base : h);
  std::set<std::int64_t> seen;
  for (std::int64_t t : offs) {
    if (t < 1 || t > (qsr ? qsr->h_base : h)) {
      return invalid("offset " + std::to_string(t) + " outside [1, H]");
    }
    if (!seen.insert(t).second) return invalid("offsets must be distinct");
  }
  if (!tensors.empty()) {
    if (n_layers < p) return invalid("n_layers must be >= P when tensors are listed");
    std::set<std::string, std::less<>> names;
    std::vector<bool> used(static_cast<std::size_t>(p), false);
    for (const TensorInfo& t : tensors) {
      if (t.name.empty()) return invalid("tensor with an empty name");
      if (!names.insert(t.name).second) return invalid("duplicate tensor '" + t.name + "'");
      if (t.numel == 0) return invalid("tensor '" + t.name + "' has numel 0");
      if (t.layer < 0 || t.layer >= n_layers) {
        return invalid("tensor '" + t.name + "' layer " + std::to_string(t.layer) +
                       " outside [0, n_layers)");
      }
      const std::int64_t f = pattern == Pattern::strided ? t.layer % p : (t.layer * p) / n_layers;
      used[static_cast<std::size_t>(f)] = true;
    }
    for (std::size_t f = 0; f < used.size(); ++f) {
      if (!used[f]) return invalid("fragment " + std::to_string(f) + " has no tensor");
    }
  } else if (n_layers < 0) {
    return invalid("n_layers must be >= 0");
  }
  return {};
}

// ---- JSON ----

namespace {

using nlohmann::json;

// Reads known keys from an object and rejects the rest.
class ObjectReader {
 public:
  ObjectReader(const json& j, std::string where) : j_(j), where_(std::move(where)) {}

  Result<void> check_object() const {
    if (!j_.is_object()) return fail(core_errc::malformed_json, where_ + " must be an object");
    return {};
  }

  const json* get(const std::string& key) {
    seen_.insert(key);
    auto it = j_.find(key);
    return it == j_.end() ? nullptr : &*it;
  }

  Result<void> int_field(const std::string& key, std::int64_t& out) {
    const json* v = get(key);
    if (v == nullptr) return {};
    if (!v->is_number_integer()) return type_error(key, "an integer");
    out = v->get<std::int64_t>();
    return {};
  }

  Result<void> uint_field(const std::string& key, std::uint64_t& out) {
    const json* v = get(key);
    if (v == nullptr) return {};
    if (!v->is_number_unsigned()) return type_error(key, "a non-negative integer");
    out = v->get<std::uint64_t>();
    return {};
  }

  Result<void> number_field(const std::string& key, double& out) {
    const json* v = get(key);
    if (v == nullptr) return {};
    if (!v->is_number()) return type_error(key, "a number");
    out = v->get<double>();
    return {};
  }

  Result<void> bool_field(const std::string& key, bool& out) {
    const json* v = get(key);
    if (v == nullptr) return {};
    if (!v->is_boolean()) return type_error(key, "a boolean");
    out = v->get<bool>();
    return {};
  }

  Result<void> string_field(const std::string& key, std::string& out) {
    const json* v = get(key);
    if (v == nullptr) return {};
    if (!v->is_string()) return type_error(key, "a string");
    out = v->get<std::string>();
    return {};
  }

  Result<void> finish() const {
    for (const auto& [key, value] : j_.items()) {
      if (!seen_.contains(key)) {
        return fail(core_errc::malformed_json, "unknown key '" + where_ + "." + key + "'");
      }
    }
    return {};
  }

  tl::unexpected<Error> type_error(const std::string& key, const char* what) const {
    return fail(core_errc::malformed_json, where_ + "." + key + " must be " + what);
  }

  const std::string& where() const { return where_; }

 private:
  const json& j_;
  std::string where_;
  std::set<std::string> seen_;
};

#define SHARDSYNC_TRY(expr)                                        \
  do {                                                             \
    if (auto r_ = (expr); !r_) return fail(std::move(r_.error())); \
  } while (false)

Result<LrSchedule> parse_lr(const json& j) {
  ObjectReader r(j, "qsr.lr");
  SHARDSYNC_TRY(r.check_object());
  LrSchedule lr;
  std::string kind = "cosine";
  SHARDSYNC_TRY(r.string_field("kind", kind));
  if (kind == "constant") {
    lr.kind = LrSchedule::Kind::constant;
  } else if (kind == "cosine") {
    lr.kind = LrSchedule::Kind::cosine;
  } else {
    return invalid("qsr.lr.kind must be constant or cosine, got '" + kind + "'");
  }
  SHARDSYNC_TRY(r.number_field("peak", lr.peak));
  SHARDSYNC_TRY(r.int_field("warmup_steps", lr.warmup_steps));
  SHARDSYNC_TRY(r.int_field("total_steps", lr.total_steps));
  SHARDSYNC_TRY(r.number_field("min_ratio", lr.min_ratio));
  SHARDSYNC_TRY(r.finish());
  return lr;
}

Result<RunConfig> parse_json(const json& j) {
  ObjectReader r(j, "run");
  SHARDSYNC_TRY(r.check_object());
  RunConfig c;
  std::int64_t version = 1;
  SHARDSYNC_TRY(r.int_field("version", version));
  if (version != 1) return invalid("unsupported run.json version " + std::to_string(version));
  SHARDSYNC_TRY(r.int_field("H", c.h));
  SHARDSYNC_TRY(r.int_field("P", c.p));
  std::string pattern = "strided";
  SHARDSYNC_TRY(r.string_field("pattern", pattern));
  if (pattern == "strided") {
    c.pattern = Pattern::strided;
  } else if (pattern == "sequential") {
    c.pattern = Pattern::sequential;
  } else {
    return invalid("pattern must be strided or sequential, got '" + pattern + "'");
  }
  if (const json* offs = r.get("offsets"); offs != nullptr) {
    if (!offs->is_array()) return r.type_error("offsets", "an array of integers");
    for (const json& o : *offs) {
      if (!o.is_number_integer()) return r.type_error("offsets", "an array of integers");
      c.offsets.push_back(o.get<std::int64_t>());
    }
  }
  SHARDSYNC_TRY(r.int_field("tau", c.tau));
  SHARDSYNC_TRY(r.number_field("alpha", c.alpha));
  if (const json* outer = r.get("outer"); outer != nullptr) {
    ObjectReader o(*outer, "outer");
    SHARDSYNC_TRY(o.check_object());
    SHARDSYNC_TRY(o.number_field("lr", c.outer_lr));
    SHARDSYNC_TRY(o.number_field("momentum", c.outer_momentum));
    SHARDSYNC_TRY(o.finish());
  }
  std::string weights = "uniform";
  SHARDSYNC_TRY(r.string_field("weights", weights));
  if (weights != "uniform" && weights != "tokens") {
    return invalid("weights must be uniform or tokens, got '" + weights + "'");
  }
  c.token_weighted = weights == "tokens";
  if (const json* wire = r.get("wire"); wire != nullptr) {
    ObjectReader w(*wire, "wire");
    SHARDSYNC_TRY(w.check_object());
    SHARDSYNC_TRY(w.string_field("format", c.wire_format));
    SHARDSYNC_TRY(w.uint_field("block_size", c.block_size));
    SHARDSYNC_TRY(w.finish());
  }
  if (const json* qsr = r.get("qsr"); qsr != nullptr) {
    ObjectReader q(*qsr, "qsr");
    SHARDSYNC_TRY(q.check_object());
    QsrOptions opts;
    SHARDSYNC_TRY(q.int_field("h_base", opts.h_base));
    SHARDSYNC_TRY(q.number_field("alpha", opts.alpha));
    const json* lr = q.get("lr");
    if (lr == nullptr) return invalid("qsr.lr is required");
    auto parsed = parse_lr(*lr);
    if (!parsed) return fail(std::move(parsed.error()));
    opts.lr = *parsed;
    SHARDSYNC_TRY(q.finish());
    c.qsr = opts;
    // The H key is the lower bound under QSR; keep h consistent with it when H is absent.
    if (!j.contains("H")) c.h = opts.h_base;
  }
  SHARDSYNC_TRY(r.int_field("n_layers", c.n_layers));
  if (const json* tensors = r.get("tensors"); tensors != nullptr) {
    if (!tensors->is_array()) return r.type_error("tensors", "an array");
    for (const json& t : *tensors) {
      ObjectReader tr(t, "tensors[" + std::to_string(c.tensors.size()) + "]");
      SHARDSYNC_TRY(tr.check_object());
      TensorInfo info;
      SHARDSYNC_TRY(tr.string_field("name", info.name));
      SHARDSYNC_TRY(tr.uint_field("numel", info.numel));
      SHARDSYNC_TRY(tr.int_field("layer", info.layer));
      SHARDSYNC_TRY(tr.finish());
      c.tensors.push_back(std::move(info));
    }
  }
  SHARDSYNC_TRY(r.finish());
  SHARDSYNC_TRY(c.validate());
  return c;
}

#undef SHARDSYNC_TRY

}  // namespace

Result<RunConfig> parse_run_config(std::string_view text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return fail(core_errc::malformed_json, "run.json is not valid JSON");
  return parse_json(j);
}

std::string serialize_run_config(const RunConfig& c) {
  json j = json::object();
  j["version"] = 1;
  j["H"] = c.h;
  j["P"] = c.p;
  j["pattern"] = std::string(to_string(c.pattern));
  if (!c.offsets.empty()) j["offsets"] = c.offsets;
  j["tau"] = c.tau;
  j["alpha"] = c.alpha;
  j["outer"] = {{"lr", c.outer_lr}, {"momentum", c.outer_momentum}};
  j["weights"] = c.token_weighted ? "tokens" : "uniform";
  j["wire"] = {{"format", c.wire_format}, {"block_size", c.block_size}};
  if (c.qsr) {
    const LrSchedule& lr = c.qsr->lr;
    j["qsr"] = {{"h_base", c.qsr->h_base},
                {"alpha", c.qsr->alpha},
                {"lr",
                 {{"kind", lr.kind == LrSchedule::Kind::constant ? "constant" : "cosine"},
                  {"peak", lr.peak},
                  {"warmup_steps", lr.warmup_steps},
                  {"total_steps", lr.total_steps},
                  {"min_ratio", lr.min_ratio}}}};
  }
  j["n_layers"] = c.n_layers;
  if (!c.tensors.empty()) {
    json arr = json::array();
    for (const TensorInfo& t : c.tensors) {
      arr.push_back({{"name", t.name}, {"numel", t.numel}, {"layer", t.layer}});
    }
    j["tensors"] = std::move(arr);
  }
  return j.dump(2) + "\n";
}

// ---- Schedule ----

Result<Schedule> Schedule::create(RunConfig config) {
  if (auto ok = config.validate(); !ok) return fail(std::move(ok.error()));
  return Schedule(std::move(config));
}

namespace {

std::int64_t qsr_round_length(const QsrOptions& q, std::int64_t first_step) {
  const double ratio = q.alpha / q.lr.at(first_step);
  const double want = std::floor(ratio * ratio);
  if (!(want < static_cast<double>(kMaxRoundLength))) return kMaxRoundLength;
  return std::max(q.h_base, static_cast<std::int64_t>(want));
}

}  // namespace

Round Schedule::round_of(std::int64_t step) const {
  if (step < 1) step = 1;
  if (!config_.qsr) {
    const std::int64_t index = (step - 1) / config_.h;
    return Round{index, index * config_.h + 1, config_.h};
  }
  Round r{0, 1, qsr_round_length(*config_.qsr, 1)};
  while (step >= r.first_step + r.h) {
    r.first_step += r.h;
    ++r.index;
    r.h = qsr_round_length(*config_.qsr, r.first_step);
  }
  return r;
}

std::optional<std::int64_t> Schedule::fragment_at(std::int64_t step) const {
  if (step < 1) return std::nullopt;
  const Round r = round_of(step);
  const std::int64_t local = step - r.first_step + 1;
  const std::vector<std::int64_t> offs = config_.offsets_for(r.h);
  for (std::size_t f = 0; f < offs.size(); ++f) {
    if (offs[f] == local) return static_cast<std::int64_t>(f);
  }
  return std::nullopt;
}

StepEvents Schedule::events_at(std::int64_t step) const {
  StepEvents e;
  e.send = fragment_at(step);
  e.land = config_.tau == 0 ? e.send : fragment_at(step - config_.tau);
  return e;
}

std::int64_t Schedule::next_sync(std::int64_t fragment, std::int64_t after) const {
  Round r = round_of(std::max<std::int64_t>(after + 1, 1));
  const auto f = static_cast<std::size_t>(fragment);
  for (;;) {
    const std::int64_t at = r.first_step - 1 + config_.offsets_for(r.h).at(f);
    if (at > after) return at;
    r = round_of(r.first_step + r.h);
  }
}

std::int64_t Schedule::fragment_of_layer(std::int64_t layer) const {
  if (config_.pattern == Pattern::strided) return layer % config_.p;
  return (layer * config_.p) / config_.n_layers;
}

std::vector<std::vector<std::size_t>> Schedule::assignment() const {
  std::vector<std::vector<std::size_t>> out(static_cast<std::size_t>(config_.p));
  for (std::size_t i = 0; i < config_.tensors.size(); ++i) {
    out[static_cast<std::size_t>(fragment_of_layer(config_.tensors[i].layer))].push_back(i);
  }
  return out;
}

}  // namespace shardsync::bridge
