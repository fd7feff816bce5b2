#include "run_state.hpp"

#include <algorithm>
#include <cstring>
#include <map>

#include "shardsync/bridge/bridge.hpp"
#include "transport.hpp"

namespace shardsync::bridge::detail {
namespace {

std::vector<std::uint8_t> float_bytes(const std::vector<float>& values) {
  std::vector<std::uint8_t> out(values.size() * sizeof(float));
  std::memcpy(out.data(), values.data(), out.size());  // x86-64 and aarch64: little-endian
  return out;
}

// The payloads' tensors must be the fragment's, in order and size.
Result<void> check_fits(const std::vector<Tensor>& fragment, const DecodedFragment& payload) {
  if (payload.tensors.size() != fragment.size()) {
    return fail(bridge_errc::bad_payload, "payload of " + payload.meta.worker_id + " has " +
                                              std::to_string(payload.tensors.size()) +
                                              " tensors, the fragment " +
                                              std::to_string(fragment.size()));
  }
  for (std::size_t i = 0; i < fragment.size(); ++i) {
    if (payload.tensors[i].name != fragment[i].name ||
        payload.tensors[i].values.size() != fragment[i].values.size()) {
      return fail(bridge_errc::bad_payload, "payload of " + payload.meta.worker_id + ": tensor " +
                                                payload.tensors[i].name + " does not fit " +
                                                fragment[i].name);
    }
  }
  return {};
}

}  // namespace

Result<std::vector<Tensor>> read_f32_tensors(std::span<const std::uint8_t> file) {
  auto view = parse_safetensors(file);
  if (!view) return fail(bridge_errc::bad_payload, view.error().describe());
  std::vector<Tensor> out;
  for (const TensorEntry& e : view->tensors) {
    if (e.dtype != "F32") return fail(bridge_errc::bad_payload, e.name + " is not F32");
    Tensor t;
    t.name = e.name;
    t.shape = e.shape;
    t.values.resize((e.end - e.begin) / sizeof(float));
    std::memcpy(t.values.data(), view->buffer.data() + e.begin, e.end - e.begin);
    out.push_back(std::move(t));
  }
  return out;
}

Result<std::vector<std::uint8_t>> write_f32_tensors(
    const std::vector<Tensor>& tensors, const std::map<std::string, std::string>& metadata) {
  std::vector<TensorBytes> entries;
  for (const Tensor& t : tensors)
    entries.push_back({t.name, "F32", t.shape, float_bytes(t.values)});
  auto file = write_safetensors(metadata, std::move(entries));
  if (!file) return fail(bridge_errc::invalid_argument, file.error().describe());
  return file;
}

Result<RunState> RunState::create(const RunConfig& config, std::span<const std::uint8_t> model) {
  auto tensors = read_f32_tensors(model);
  if (!tensors) return fail(tensors.error());
  std::map<std::string, Tensor*> by_name;
  for (Tensor& t : *tensors) by_name[t.name] = &t;
  auto schedule = Schedule::create(config);
  if (!schedule) return fail(bridge_errc::config_mismatch, schedule.error().describe());
  RunState state;
  if (config.tensors.empty()) {
    if (config.p != 1) {
      return fail(bridge_errc::config_mismatch, "run.json needs a tensor list when P > 1");
    }
    state.global_.push_back(std::move(*tensors));
  } else {
    if (by_name.size() != config.tensors.size()) {
      return fail(bridge_errc::config_mismatch, "model has " + std::to_string(by_name.size()) +
                                                    " tensors, run.json lists " +
                                                    std::to_string(config.tensors.size()));
    }
    for (const std::vector<std::size_t>& indices : schedule->assignment()) {
      std::vector<Tensor> fragment;
      for (const std::size_t i : indices) {
        const TensorInfo& info = config.tensors[i];
        const auto it = by_name.find(info.name);
        if (it == by_name.end() || it->second->values.size() != info.numel) {
          return fail(bridge_errc::config_mismatch,
                      "tensor " + info.name + " missing from the model or of another size");
        }
        fragment.push_back(std::move(*it->second));
      }
      state.global_.push_back(std::move(fragment));
    }
  }
  const OuterOptions outer{config.outer_lr, config.outer_momentum};
  state.optimizers_.assign(state.global_.size(), NesterovSgd(outer));
  state.committed_.assign(state.global_.size(), 0);
  return state;
}

std::string RunState::global_sha256(std::int64_t p) const {
  std::string bytes;
  for (const Tensor& t : global(p)) {
    bytes.append(reinterpret_cast<const char*>(t.values.data()), t.values.size() * sizeof(float));
  }
  return sha256_hex(bytes);
}

Result<std::vector<Tensor>> RunState::reduce(std::int64_t p,
                                             const std::vector<const DecodedFragment*>& payloads,
                                             bool token_weighted) const {
  const std::vector<Tensor>& fragment = global(p);
  for (const DecodedFragment* payload : payloads) {
    if (auto fits = check_fits(fragment, *payload); !fits) return fail(fits.error());
  }
  std::vector<Tensor> out;
  for (std::size_t i = 0; i < fragment.size(); ++i) {
    std::vector<Contribution> contributions;
    for (const DecodedFragment* payload : payloads) {
      contributions.push_back(
          {payload->meta.worker_id, payload->tensors[i].values, payload->meta.tokens});
    }
    auto mean = reduce_mean(std::move(contributions), token_weighted);
    if (!mean) return fail(bridge_errc::bad_payload, mean.error().describe());
    out.push_back({fragment[i].name, fragment[i].shape, std::move(*mean)});
  }
  return out;
}

Result<void> RunState::apply_payloads(std::int64_t p,
                                      const std::vector<const DecodedFragment*>& payloads,
                                      bool token_weighted) {
  auto mean = reduce(p, payloads, token_weighted);
  if (!mean) return fail(mean.error());
  DecodedFragment reduced;
  reduced.tensors = std::move(*mean);
  return apply_reduced(p, reduced);
}

Result<void> RunState::apply_reduced(std::int64_t p, const DecodedFragment& reduced) {
  std::vector<Tensor>& fragment = global_[static_cast<std::size_t>(p)];
  if (auto fits = check_fits(fragment, reduced); !fits) return fail(fits.error());
  std::vector<std::span<float>> params;
  std::vector<std::span<const float>> grads;
  for (std::size_t i = 0; i < fragment.size(); ++i) {
    params.emplace_back(fragment[i].values);
    grads.emplace_back(reduced.tensors[i].values);
  }
  auto stepped = optimizers_[static_cast<std::size_t>(p)].step(params, grads);
  if (!stepped) return fail(bridge_errc::bad_state, stepped.error().describe());
  return {};
}

Result<std::vector<std::uint8_t>> RunState::encode_global() const {
  std::vector<Tensor> all;
  for (const auto& fragment : global_) all.insert(all.end(), fragment.begin(), fragment.end());
  return write_f32_tensors(all, {{"format", "shardsync.diloco.global/1"}});
}

Result<void> RunState::load_global(std::span<const std::uint8_t> file) {
  auto tensors = read_f32_tensors(file);
  if (!tensors) return fail(tensors.error());
  std::map<std::string, Tensor*> by_name;
  for (Tensor& t : *tensors) by_name[t.name] = &t;
  auto next = global_;
  for (auto& fragment : next) {
    for (Tensor& t : fragment) {
      const auto it = by_name.find(t.name);
      if (it == by_name.end() || it->second->values.size() != t.values.size()) {
        return fail(bridge_errc::bad_state, "global tensor " + t.name + " missing or resized");
      }
      t.values = std::move(it->second->values);
    }
  }
  global_ = std::move(next);
  return {};
}

Result<std::vector<std::uint8_t>> RunState::encode_outer_state() const {
  std::vector<TensorBytes> entries;
  std::string committed;
  for (std::size_t p = 0; p < global_.size(); ++p) {
    const std::string blob = optimizers_[p].save_state();
    entries.push_back({"outer/" + std::to_string(p),
                       "U8",
                       {blob.size()},
                       std::vector<std::uint8_t>(blob.begin(), blob.end())});
    committed += (p ? "," : "") + std::to_string(committed_[p]);
  }
  auto file = write_safetensors({{"format", "shardsync.diloco.outer_state/1"},
                                 {"committed", committed},
                                 {"resume_step", std::to_string(resume_step)}},
                                std::move(entries));
  if (!file) return fail(bridge_errc::invalid_argument, file.error().describe());
  return file;
}

Result<void> RunState::load_outer_state(std::span<const std::uint8_t> file) {
  auto view = parse_safetensors(file);
  if (!view) return fail(bridge_errc::bad_state, view.error().describe());
  std::vector<NesterovSgd> optimizers;
  for (std::size_t p = 0; p < global_.size(); ++p) {
    const std::string name = "outer/" + std::to_string(p);
    const auto it = std::find_if(view->tensors.begin(), view->tensors.end(),
                                 [&](const TensorEntry& e) { return e.name == name; });
    if (it == view->tensors.end()) return fail(bridge_errc::bad_state, name + " missing");
    const std::string_view blob(reinterpret_cast<const char*>(view->buffer.data() + it->begin),
                                it->end - it->begin);
    auto optimizer = NesterovSgd::load_state(blob);
    if (!optimizer) return fail(bridge_errc::bad_state, optimizer.error().describe());
    optimizers.push_back(std::move(*optimizer));
  }
  std::vector<std::uint64_t> committed;
  try {
    const std::string& text = view->metadata.at("committed");
    std::size_t start = 0;
    while (start <= text.size() && committed.size() < global_.size()) {
      const std::size_t comma = std::min(text.find(',', start), text.size());
      committed.push_back(std::stoull(text.substr(start, comma - start)));
      start = comma + 1;
    }
    resume_step = std::stoll(view->metadata.at("resume_step"));
  } catch (const std::exception&) {
    return fail(bridge_errc::bad_state, "outer_state metadata malformed");
  }
  if (committed.size() != global_.size()) {
    return fail(bridge_errc::bad_state, "outer_state has counts for another P");
  }
  optimizers_ = std::move(optimizers);
  committed_ = std::move(committed);
  return {};
}

}  // namespace shardsync::bridge::detail
