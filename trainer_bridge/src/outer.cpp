#include "shardsync/bridge/outer.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <utility>

namespace shardsync::bridge {
namespace {

tl::unexpected<Error> mismatch(std::string detail) {
  return fail(core_errc::size_mismatch, std::move(detail));
}

constexpr std::string_view kStateMagic = "SSNSGD01";

// Little-endian, fixed-width encoding of the state blob (the project targets little-endian
// x86-64/arm64; the static_assert keeps a big-endian port from silently writing other bytes).
static_assert(std::endian::native == std::endian::little, "state blob assumes little-endian");

template <typename T>
void put(std::string& out, T value) {
  char raw[sizeof(T)];
  std::memcpy(raw, &value, sizeof(T));
  out.append(raw, sizeof(T));
}

template <typename T>
bool take(std::string_view& in, T& value) {
  if (in.size() < sizeof(T)) return false;
  std::memcpy(&value, in.data(), sizeof(T));
  in.remove_prefix(sizeof(T));
  return true;
}

}  // namespace

Result<void> pseudo_gradient(std::span<const float> base, std::span<const float> local,
                             std::span<float> out) {
  if (base.size() != local.size() || base.size() != out.size()) {
    return mismatch("pseudo_gradient: base " + std::to_string(base.size()) + ", local " +
                    std::to_string(local.size()) + ", out " + std::to_string(out.size()));
  }
  for (std::size_t i = 0; i < base.size(); ++i) out[i] = base[i] - local[i];
  return {};
}

Result<std::vector<float>> pseudo_gradient(std::span<const float> base,
                                           std::span<const float> local) {
  std::vector<float> out(base.size());
  if (auto ok = pseudo_gradient(base, local, out); !ok) return fail(std::move(ok.error()));
  return out;
}

Result<std::vector<float>> reduce_mean(std::vector<Contribution> contributions,
                                       bool token_weighted) {
  if (contributions.empty()) return fail(core_errc::empty_input, "reduce_mean: no contributions");
  std::sort(contributions.begin(), contributions.end(),
            [](const Contribution& a, const Contribution& b) { return a.worker < b.worker; });
  const std::size_t n = contributions.front().delta.size();
  for (std::size_t m = 0; m < contributions.size(); ++m) {
    if (m > 0 && contributions[m].worker == contributions[m - 1].worker) {
      return fail(core_errc::duplicate_worker,
                  "reduce_mean: two contributions from worker '" + contributions[m].worker + "'");
    }
    if (contributions[m].delta.size() != n) {
      return mismatch("reduce_mean: worker '" + contributions[m].worker + "' sent " +
                      std::to_string(contributions[m].delta.size()) + " values, expected " +
                      std::to_string(n));
    }
  }
  std::vector<float> acc(n, 0.0f);
  if (!token_weighted) {
    for (const Contribution& c : contributions) {
      for (std::size_t i = 0; i < n; ++i) acc[i] += c.delta[i];
    }
    const auto count = static_cast<float>(contributions.size());
    for (float& v : acc) v /= count;
    return acc;
  }
  double total = 0.0;
  for (const Contribution& c : contributions) total += static_cast<double>(c.tokens);
  if (!(total > 0.0)) {
    return fail(core_errc::empty_input, "reduce_mean: token weights sum to 0");
  }
  for (const Contribution& c : contributions) {
    const auto w = static_cast<float>(static_cast<double>(c.tokens) / total);
    // -ffp-contract=off keeps this a multiply and an add, two roundings, on every target.
    for (std::size_t i = 0; i < n; ++i) acc[i] += w * c.delta[i];
  }
  return acc;
}

Result<void> merge_overlap(std::span<float> local, std::span<const float> global, double alpha) {
  if (local.size() != global.size()) {
    return mismatch("merge_overlap: local " + std::to_string(local.size()) + ", global " +
                    std::to_string(global.size()));
  }
  const auto w = static_cast<float>(alpha);
  // torch's lerp_vec: small weights step from the start, large ones from the end, so that
  // w = 0 and w = 1 give the endpoints exactly.
  if (std::fabs(w) < 0.5f) {
    for (std::size_t i = 0; i < local.size(); ++i) {
      local[i] = std::fma(w, local[i] - global[i], global[i]);
    }
  } else {
    const float coeff = w - 1.0f;
    for (std::size_t i = 0; i < local.size(); ++i) {
      local[i] = std::fma(coeff, local[i] - global[i], local[i]);
    }
  }
  return {};
}

Result<void> NesterovSgd::step(std::span<const std::span<float>> params,
                               std::span<const std::span<const float>> grads) {
  if (params.size() != grads.size()) {
    return mismatch("outer step: " + std::to_string(params.size()) + " params, " +
                    std::to_string(grads.size()) + " grads");
  }
  if (steps_ > 0 && buffers_.size() != params.size() && options_.momentum != 0.0) {
    return mismatch("outer step: " + std::to_string(params.size()) + " tensors, state has " +
                    std::to_string(buffers_.size()));
  }
  for (std::size_t t = 0; t < params.size(); ++t) {
    if (params[t].size() != grads[t].size()) {
      return mismatch("outer step: tensor " + std::to_string(t) + " has " +
                      std::to_string(params[t].size()) + " params, " +
                      std::to_string(grads[t].size()) + " grads");
    }
    if (steps_ > 0 && t < buffers_.size() && buffers_[t].size() != params[t].size()) {
      return mismatch("outer step: tensor " + std::to_string(t) + " changed size");
    }
  }
  const auto neg_lr = static_cast<float>(-options_.lr);
  const auto mu = static_cast<float>(options_.momentum);
  if (options_.momentum == 0.0) {
    for (std::size_t t = 0; t < params.size(); ++t) {
      std::span<float> p = params[t];
      std::span<const float> g = grads[t];
      for (std::size_t i = 0; i < p.size(); ++i) p[i] = std::fma(g[i], neg_lr, p[i]);
    }
    ++steps_;
    return {};
  }
  const bool first = steps_ == 0;
  if (first) buffers_.resize(params.size());
  for (std::size_t t = 0; t < params.size(); ++t) {
    std::span<float> p = params[t];
    std::span<const float> g = grads[t];
    std::vector<float>& buf = buffers_[t];
    if (first) {
      buf.assign(g.begin(), g.end());
    } else {
      for (std::size_t i = 0; i < p.size(); ++i) {
        const float scaled = buf[i] * mu;  // buf.mul_(momentum): rounded on its own
        buf[i] = scaled + g[i];            // .add_(grad, alpha=1): fma(g, 1, x) == x + g
      }
    }
    for (std::size_t i = 0; i < p.size(); ++i) {
      const float d = std::fma(buf[i], mu, g[i]);  // grad.add(buf, alpha=momentum)
      p[i] = std::fma(d, neg_lr, p[i]);            // param.add_(d, alpha=-lr)
    }
  }
  ++steps_;
  return {};
}

std::string NesterovSgd::save_state() const {
  std::string out(kStateMagic);
  put(out, options_.lr);
  put(out, options_.momentum);
  put(out, steps_);
  put(out, static_cast<std::uint64_t>(buffers_.size()));
  for (const std::vector<float>& buf : buffers_) {
    put(out, static_cast<std::uint64_t>(buf.size()));
    if (buf.empty()) continue;
    const auto* bytes = reinterpret_cast<const char*>(buf.data());
    out.append(bytes, buf.size() * sizeof(float));
  }
  return out;
}

Result<NesterovSgd> NesterovSgd::load_state(std::string_view in) {
  auto bad = [](const char* what) {
    return fail(core_errc::bad_state, std::string("outer optimizer state: ") + what);
  };
  if (!in.starts_with(kStateMagic)) return bad("wrong magic");
  in.remove_prefix(kStateMagic.size());
  OuterOptions options;
  std::uint64_t steps = 0;
  std::uint64_t count = 0;
  if (!take(in, options.lr) || !take(in, options.momentum) || !take(in, steps) ||
      !take(in, count)) {
    return bad("truncated header");
  }
  if (!std::isfinite(options.lr) || options.lr <= 0.0 || !std::isfinite(options.momentum) ||
      options.momentum < 0.0 || options.momentum >= 1.0) {
    return bad("lr or momentum out of range");
  }
  if (count > in.size() / sizeof(std::uint64_t)) return bad("tensor count exceeds the blob");
  NesterovSgd opt(options);
  opt.steps_ = steps;
  opt.buffers_.resize(static_cast<std::size_t>(count));
  for (std::vector<float>& buf : opt.buffers_) {
    std::uint64_t n = 0;
    if (!take(in, n)) return bad("truncated tensor header");
    if (n > in.size() / sizeof(float)) return bad("truncated tensor data");
    buf.resize(static_cast<std::size_t>(n));
    if (n > 0) std::memcpy(buf.data(), in.data(), buf.size() * sizeof(float));
    in.remove_prefix(buf.size() * sizeof(float));
  }
  if (!in.empty()) return bad("trailing bytes");
  if (steps > 0 && options.momentum != 0.0 && count == 0) return bad("steps without buffers");
  return opt;
}

}  // namespace shardsync::bridge
