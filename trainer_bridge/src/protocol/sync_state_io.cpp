// SyncEngine's state out and in: the final model, state_dict() and load_state_dict().
#include <cstring>

#include "sync_engine.hpp"

namespace shardsync::bridge::detail {

Result<void> SyncEngine::publish_final() {
  Result<std::vector<std::uint8_t>> file;
  {
    std::lock_guard lock(state_mutex_);
    file = state_.encode_global();
  }
  if (!file) return fail(file.error());
  auto put =
      transport_.put(url_of(options_.commit_url, final_model_path(options_.run_id)), *file, true);
  if (!put) return fail(put.error());
  return {};
}

Result<std::vector<std::uint8_t>> SyncEngine::snapshot(
    const std::map<std::string, std::string>& meta) const {
  std::lock_guard lock(state_mutex_);
  auto global = state_.encode_global();
  if (!global) return global;
  auto outer = state_.encode_outer_state();
  if (!outer) return outer;
  // One safetensors file: the global tensors plus the outer state as one U8 blob.
  auto tensors = read_f32_tensors(*global);
  if (!tensors) return fail(tensors.error());
  std::vector<TensorBytes> entries;
  for (const Tensor& t : *tensors) {
    std::vector<std::uint8_t> raw(t.values.size() * sizeof(float));
    std::memcpy(raw.data(), t.values.data(), raw.size());
    entries.push_back({"global/" + t.name, "F32", t.shape, std::move(raw)});
  }
  entries.push_back({"__outer_state__", "U8", {outer->size()}, *outer});
  auto file = write_safetensors(meta, std::move(entries));
  if (!file) return fail(bridge_errc::bad_state, file.error().describe());
  return file;
}

Result<std::map<std::string, std::string>> SyncEngine::restore(
    std::span<const std::uint8_t> bytes) {
  auto view = parse_safetensors(bytes);
  if (!view) return fail(bridge_errc::bad_state, view.error().describe());
  std::vector<Tensor> globals;
  std::span<const std::uint8_t> outer;
  for (const TensorEntry& e : view->tensors) {
    const auto data = view->buffer.subspan(e.begin, e.end - e.begin);
    if (e.name == "__outer_state__") {
      outer = data;
    } else if (e.name.starts_with("global/") && e.dtype == "F32") {
      Tensor t{e.name.substr(7), e.shape, std::vector<float>(data.size() / sizeof(float))};
      std::memcpy(t.values.data(), data.data(), data.size());
      globals.push_back(std::move(t));
    }
  }
  auto global_file = write_f32_tensors(globals);
  if (!global_file) return fail(global_file.error());
  std::lock_guard lock(state_mutex_);
  RunState next = state_;
  if (auto loaded = next.load_global(*global_file); !loaded) return fail(loaded.error());
  if (auto loaded = next.load_outer_state(outer); !loaded) return fail(loaded.error());
  state_ = std::move(next);
  return view->metadata;
}

}  // namespace shardsync::bridge::detail
