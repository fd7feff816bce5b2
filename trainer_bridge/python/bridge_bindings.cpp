// Python binding of DiLoCoBridge (bridge.hpp): shardsync._bridge.Bridge. The Python side
// (shardsync/diloco.py) turns a torch model into named fp32 arrays that share the parameters'
// memory, so the bridge reads the due fragment and writes the landed update in place.
//
// GIL: every call that can block or run long (bootstrap, after_inner_step, finalize) releases
// it; so does the destructor, because the background thread may be waiting to call a Python
// log callback, which takes the GIL.
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "shardsync/bridge/bridge.hpp"

namespace shardsync::python {
namespace {

using std::chrono::milliseconds;

template <class T>
std::optional<T> get(const py::dict& d, const char* key) {
  if (!d.contains(key) || d[key].is_none()) return std::nullopt;
  return d[key].cast<T>();
}

bridge::RunConfig config_from_dict(const py::dict& d) {
  bridge::RunConfig c;
  if (auto v = get<std::int64_t>(d, "h")) c.h = *v;
  if (auto v = get<std::int64_t>(d, "p")) c.p = *v;
  if (auto v = get<std::string>(d, "pattern")) {
    if (*v == "strided")
      c.pattern = bridge::Pattern::strided;
    else if (*v == "sequential")
      c.pattern = bridge::Pattern::sequential;
    else
      throw py::value_error("fragments must be 'strided' or 'sequential', not '" + *v + "'");
  }
  if (auto v = get<std::vector<std::int64_t>>(d, "offsets")) c.offsets = *v;
  if (auto v = get<std::int64_t>(d, "tau")) c.tau = *v;
  if (auto v = get<double>(d, "alpha")) c.alpha = *v;
  if (auto v = get<double>(d, "outer_lr")) c.outer_lr = *v;
  if (auto v = get<double>(d, "outer_momentum")) c.outer_momentum = *v;
  if (auto v = get<bool>(d, "token_weighted")) c.token_weighted = *v;
  if (auto v = get<std::string>(d, "wire_format")) c.wire_format = *v;
  if (auto v = get<std::uint64_t>(d, "block_size")) c.block_size = *v;
  if (auto v = get<std::int64_t>(d, "n_layers")) c.n_layers = *v;
  if (auto tensors = get<py::list>(d, "tensors")) {
    for (auto item : *tensors) {
      auto t = item.cast<py::tuple>();  // (name, numel, layer)
      c.tensors.push_back(
          {t[0].cast<std::string>(), t[1].cast<std::uint64_t>(), t[2].cast<std::int64_t>()});
    }
  }
  value_or_throw(c.validate());
  return c;
}

bridge::BridgeOptions options_from_dict(const py::dict& d) {
  bridge::BridgeOptions o;
  o.run_id = get<std::string>(d, "run_id").value_or("");
  o.worker_id = get<std::string>(d, "worker_id").value_or("");
  o.publish_url = get<std::string>(d, "publish_url").value_or("");
  if (auto v = get<std::vector<std::string>>(d, "follow_urls")) o.follow_urls = *v;
  if (auto v = get<std::string>(d, "commit_url")) o.commit_url = *v;
  if (auto v = get<std::string>(d, "write_token")) o.write_token = *v;
  if (auto v = get<py::dict>(d, "config")) o.config = config_from_dict(*v);
  if (auto v = get<bool>(d, "coordinator")) o.coordinator = *v;
  if (auto v = get<std::string>(d, "topology")) {
    if (*v == "allgather")
      o.topology = bridge::Topology::allgather;
    else if (*v == "aggregator")
      o.topology = bridge::Topology::aggregator;
    else
      throw py::value_error("topology must be 'allgather' or 'aggregator', not '" + *v + "'");
  }
  if (auto v = get<std::int64_t>(d, "min_workers")) o.min_workers = *v;
  if (auto v = get<std::int64_t>(d, "num_workers")) o.num_workers = *v;
  if (auto v = get<double>(d, "grace_s")) o.grace = milliseconds{std::llround(*v * 1000)};
  if (auto v = get<double>(d, "commit_timeout_s")) {
    o.commit_timeout = milliseconds{std::llround(*v * 1000)};
  }
  if (auto v = get<double>(d, "bootstrap_timeout_s")) {
    o.bootstrap_timeout = milliseconds{std::llround(*v * 1000)};
  }
  if (auto v = get<double>(d, "poll_interval_s")) {
    o.poll_interval = milliseconds{std::llround(*v * 1000)};
  }
  if (auto v = get<bool>(d, "zstd")) o.zstd = *v;
  if (auto v = get<std::int64_t>(d, "checkpoint_every")) o.checkpoint_every = *v;
  if (d.contains("log") && !d["log"].is_none()) {
    py::object log = d["log"];
    if (py::isinstance<py::bool_>(log)) {
      // True: one line per event on stderr, without touching the interpreter.
      if (log.cast<bool>()) {
        std::string who = o.worker_id;
        o.log = [who](std::string_view level, std::string_view message) {
          std::fprintf(stderr, "bridge %s %.*s %.*s\n", who.c_str(), static_cast<int>(level.size()),
                       level.data(), static_cast<int>(message.size()), message.data());
        };
      }
    } else {
      auto callback = std::make_shared<py::object>(log);
      o.log = [callback](std::string_view level, std::string_view message) {
        py::gil_scoped_acquire gil;
        try {
          (*callback)(std::string(level), std::string(message));
        } catch (py::error_already_set& e) {
          e.discard_as_unraisable(__func__);  // a logger must not take the bridge down
        }
      };
    }
  }
  return o;
}

py::dict record_to_dict(const bridge::SyncRecord& r) {
  py::dict d;
  d["fragment"] = r.fragment;
  d["sync"] = r.sync;
  d["send_step"] = r.send_step;
  d["land_step"] = r.land_step;
  d["included"] = r.included;
  d["own_included"] = r.own_included;
  d["late"] = r.late;
  d["skipped"] = r.skipped;
  d["timed_out"] = r.timed_out;
  d["committed_here"] = r.committed_here;
  d["wait_seconds"] = r.wait_seconds;
  d["global_sha256"] = r.global_sha256;
  d["bytes_up"] = r.bytes_up;
  d["bytes_down"] = r.bytes_down;
  return d;
}

py::dict stats_to_dict(const bridge::BridgeStats& s) {
  py::dict d;
  d["bytes_up"] = s.bytes_up;
  d["bytes_down"] = s.bytes_down;
  d["wait_seconds"] = s.wait_seconds;
  d["syncs"] = s.syncs;
  d["included"] = s.included;
  d["late"] = s.late;
  d["skipped"] = s.skipped;
  d["rejected"] = s.rejected;
  py::list records;
  for (const auto& r : s.records) records.append(record_to_dict(r));
  d["records"] = records;
  return d;
}

// The bridge plus the arrays whose memory its Parameter spans point into.
class PyBridge {
 public:
  // params: (name, array, layer) triples; each array must be a writeable, C-contiguous
  // float32 array (a view of the trainer's parameter), kept alive by this object.
  PyBridge(const py::dict& options, const py::list& params) {
    std::vector<bridge::Parameter> parameters;
    for (auto item : params) {
      auto triple = item.cast<py::tuple>();
      auto array = triple[1].cast<py::array>();
      if (!array.dtype().is(py::dtype::of<float>()) || !(array.flags() & py::array::c_style) ||
          !array.writeable()) {
        throw py::value_error("parameter '" + triple[0].cast<std::string>() +
                              "' must be a writeable C-contiguous float32 array");
      }
      bridge::Parameter p;
      p.name = triple[0].cast<std::string>();
      for (py::ssize_t i = 0; i < array.ndim(); ++i) {
        p.shape.push_back(static_cast<std::uint64_t>(array.shape(i)));
      }
      p.data = {static_cast<float*>(array.mutable_data()), static_cast<std::size_t>(array.size())};
      p.layer = triple[2].cast<std::int64_t>();
      keepalive_.push_back(array);
      parameters.push_back(std::move(p));
    }
    try {
      bridge_ =
          std::make_unique<bridge::DiLoCoBridge>(options_from_dict(options), std::move(parameters));
    } catch (const std::invalid_argument& e) {
      throw py::value_error(e.what());
    }
  }

  ~PyBridge() {
    py::gil_scoped_release release;
    bridge_.reset();
  }

  std::int64_t bootstrap() {
    Result<std::int64_t> r;
    {
      py::gil_scoped_release release;
      r = bridge_->bootstrap();
    }
    return value_or_throw(std::move(r));
  }

  void after_inner_step(std::int64_t step, std::uint64_t tokens) {
    Result<void> r;
    {
      py::gil_scoped_release release;
      r = bridge_->after_inner_step(step, tokens);
    }
    value_or_throw(std::move(r));
  }

  void finalize(std::int64_t step, bool publish_final) {
    Result<void> r;
    {
      py::gil_scoped_release release;
      r = bridge_->finalize(step, publish_final);
    }
    value_or_throw(std::move(r));
  }

  py::bytes state_dict() const {
    auto state = bridge_->state_dict();
    return {reinterpret_cast<const char*>(state.data()), state.size()};
  }

  void load_state_dict(const py::bytes& state) {
    std::string_view data = state;
    value_or_throw(bridge_->load_state_dict(
        {reinterpret_cast<const std::uint8_t*>(data.data()), data.size()}));
  }

  py::dict stats() const { return stats_to_dict(bridge_->stats()); }

  std::string global_sha256(std::int64_t fragment) const {
    return bridge_->global_sha256(fragment);
  }

  py::dict config() const {
    const auto& c = bridge_->config();
    py::dict d;
    d["h"] = c.h;
    d["p"] = c.p;
    d["pattern"] = std::string(bridge::to_string(c.pattern));
    d["offsets"] = c.offsets_for(c.h);
    d["tau"] = c.tau;
    d["alpha"] = c.alpha;
    d["outer_lr"] = c.outer_lr;
    d["outer_momentum"] = c.outer_momentum;
    d["token_weighted"] = c.token_weighted;
    d["wire_format"] = c.wire_format;
    d["block_size"] = c.block_size;
    d["n_layers"] = c.n_layers;
    return d;
  }

 private:
  std::vector<py::array> keepalive_;
  std::unique_ptr<bridge::DiLoCoBridge> bridge_;
};

}  // namespace

void register_bridge(py::module_& m) {
  using namespace pybind11::literals;
  py::class_<PyBridge>(m, "Bridge",
                       "DiLoCoBridge over named float32 arrays that share the trainer's memory")
      .def(py::init<const py::dict&, const py::list&>(), "options"_a, "params"_a)
      .def("bootstrap", &PyBridge::bootstrap, "the inner step to continue from (0 = fresh)")
      .def("after_inner_step", &PyBridge::after_inner_step, "step"_a, "tokens"_a = 0)
      .def("finalize", &PyBridge::finalize, "step"_a, "publish_final"_a = true)
      .def("state_dict", &PyBridge::state_dict)
      .def("load_state_dict", &PyBridge::load_state_dict, "state"_a)
      .def("stats", &PyBridge::stats)
      .def("global_sha256", &PyBridge::global_sha256, "fragment"_a)
      .def("config", &PyBridge::config);
}

}  // namespace shardsync::python
