#include "shardsync/bridge/outer.hpp"

#include <algorithm>
#include <bit>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <ios>
#include <iterator>
#include <memory>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "shardsync/bridge/schedule.hpp"
#include "shardsync/sitemap/digest.hpp"

namespace bridge = shardsync::bridge;
using bridge::core_errc;
using bridge::Pattern;
using bridge::RunConfig;
using bridge::Schedule;

namespace {

Schedule make_schedule(RunConfig c) {
  auto s = Schedule::create(std::move(c));
  REQUIRE(s);
  return *s;
}

std::string sha256_of(const std::vector<float>& v) {
  shardsync::sitemap::Hasher h;
  h.update(std::string_view(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float)));
  return std::string(h.finish().get(shardsync::sitemap::HashAlgorithm::sha256));
}

std::vector<std::int64_t> syncs_of(const Schedule& s, std::int64_t fragment, std::int64_t last) {
  std::vector<std::int64_t> out;
  for (std::int64_t t = 1; t <= last; ++t) {
    if (s.fragment_at(t) == fragment) out.push_back(t);
  }
  return out;
}

bool same_bits(float a, float b) {
  return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b);
}

}  // namespace

TEST_CASE("every core error code has a message", "[bridge]") {
  for (int v = 1; v <= static_cast<int>(core_errc::bad_state); ++v) {
    const std::error_code ec = bridge::make_error_code(static_cast<core_errc>(v));
    CHECK(ec.category().name() == std::string("shardsync.bridge.core"));
    CHECK(ec.message().find("unknown") == std::string::npos);
  }
}

TEST_CASE("default offsets are torchft's and fragments sync every H steps", "[bridge][schedule]") {
  RunConfig c;
  c.h = 100;
  c.p = 2;
  const Schedule s = make_schedule(c);
  CHECK(c.offsets_for(100) == std::vector<std::int64_t>{50, 100});
  CHECK(syncs_of(s, 0, 400) == std::vector<std::int64_t>{50, 150, 250, 350});
  CHECK(syncs_of(s, 1, 400) == std::vector<std::int64_t>{100, 200, 300, 400});
  CHECK_FALSE(s.fragment_at(0));
  CHECK_FALSE(s.fragment_at(1));
  CHECK_FALSE(s.fragment_at(99));
  CHECK(s.round_of(100).index == 0);
  CHECK(s.round_of(101).index == 1);
  CHECK(s.round_of(101).first_step == 101);
  CHECK(s.next_sync(0, 50) == 150);
  CHECK(s.next_sync(1, 0) == 100);

  SECTION("P = 1 is plain DiLoCo: one sync at the end of every round") {
    RunConfig d;
    d.h = 30;
    const Schedule plain = make_schedule(d);
    CHECK(syncs_of(plain, 0, 100) == std::vector<std::int64_t>{30, 60, 90});
  }
  SECTION("torchft's float formula, not the exact integer one") {
    // 15 / 11 * 11 == 14.999999999999998 in double: torchft puts the last fragment at 14.
    RunConfig d;
    d.h = 15;
    d.p = 11;
    REQUIRE(d.validate());
    const auto offs = d.offsets_for(15);
    CHECK(offs.back() == 14);
    CHECK(offs.front() == 1);
  }
  SECTION("explicit offsets") {
    RunConfig d;
    d.h = 100;
    d.p = 2;
    d.offsets = {10, 60};
    const Schedule e = make_schedule(d);
    CHECK(syncs_of(e, 0, 250) == std::vector<std::int64_t>{10, 110, 210});
    CHECK(syncs_of(e, 1, 250) == std::vector<std::int64_t>{60, 160});
  }
}

TEST_CASE("overlap: an update lands tau steps after it was sent", "[bridge][schedule]") {
  RunConfig c;
  c.h = 100;
  c.p = 4;
  c.tau = 5;
  const Schedule s = make_schedule(c);
  // offsets 25, 50, 75, 100
  auto e = s.events_at(25);
  CHECK(e.send == 0);
  CHECK_FALSE(e.land);
  e = s.events_at(30);
  CHECK_FALSE(e.send);
  CHECK(e.land == 0);
  CHECK(s.events_at(105).land == 3);
  CHECK_FALSE(s.events_at(3).land);
  // Never more than one update in flight: between a send and its landing nothing else is sent.
  for (std::int64_t t = 1; t <= 400; ++t) {
    if (s.events_at(t).send) {
      for (std::int64_t u = t + 1; u < t + c.tau; ++u) CHECK_FALSE(s.events_at(u).send);
    }
  }
  SECTION("tau = 0 lands at the send step") {
    RunConfig d = c;
    d.tau = 0;
    const Schedule z = make_schedule(d);
    CHECK(z.events_at(50).send == 1);
    CHECK(z.events_at(50).land == 1);
  }
}

TEST_CASE("parameters are assigned to fragments by pattern", "[bridge][schedule]") {
  RunConfig c;
  c.h = 60;
  c.p = 3;
  c.n_layers = 6;
  c.tensors.push_back({"tok.weight", 1000, 0});
  for (std::int64_t l = 0; l < 6; ++l) {
    c.tensors.push_back({"blocks." + std::to_string(l) + ".w", 64, l});
  }
  c.tensors.push_back({"lnf.weight", 16, 5});
  using Frags = std::vector<std::vector<std::size_t>>;
  SECTION("strided: block i -> i mod P") {
    const Schedule s = make_schedule(c);
    CHECK(s.assignment() == Frags{{0, 1, 4}, {2, 5}, {3, 6, 7}});
  }
  SECTION("sequential: block i -> floor(i*P/L)") {
    c.pattern = Pattern::sequential;
    const Schedule s = make_schedule(c);
    CHECK(s.assignment() == Frags{{0, 1, 2}, {3, 4}, {5, 6, 7}});
  }
}

TEST_CASE("QSR: H grows as the learning rate decays", "[bridge][schedule][qsr]") {
  SECTION("lr schedule values") {
    bridge::LrSchedule lr;
    lr.peak = 0.1;
    lr.warmup_steps = 10;
    lr.total_steps = 1010;
    lr.min_ratio = 0.1;
    CHECK(lr.at(1) == Approx(0.01));
    CHECK(lr.at(10) == Approx(0.1));
    CHECK(lr.at(11) == Approx(0.1));
    CHECK(lr.at(511) == Approx(0.055));
    CHECK(lr.at(1011) == Approx(0.01));
    CHECK(lr.at(5000) == Approx(0.01));
  }
  SECTION("constant lr: H = max(h_base, floor((alpha/lr)^2))") {
    RunConfig c;
    c.h = 50;
    c.qsr = bridge::QsrOptions{50, 0.5, {bridge::LrSchedule::Kind::constant, 0.0625, 0, 0, 0.1}};
    const Schedule s = make_schedule(c);
    CHECK(s.round_of(1).h == 64);  // (0.5 / 0.0625)^2 = 64 > 50
    CHECK(syncs_of(s, 0, 200) == std::vector<std::int64_t>{64, 128, 192});
    c.qsr->h_base = 100;
    const Schedule floor_wins = make_schedule(c);
    CHECK(floor_wins.round_of(1).h == 100);
  }
  SECTION("cosine: rounds get longer, fragments keep their relative offsets") {
    RunConfig c;
    c.p = 2;
    c.qsr = bridge::QsrOptions{4, 0.2, {bridge::LrSchedule::Kind::cosine, 0.1, 0, 1000, 0.1}};
    const Schedule s = make_schedule(c);
    CHECK(s.round_of(1).h == 4);  // (0.2 / 0.1)^2
    bridge::Round r = s.round_of(1);
    std::int64_t prev_h = 0;
    std::vector<std::int64_t> expect0;
    std::vector<std::int64_t> expect1;
    while (r.first_step <= 3000) {
      const double lr = c.qsr->lr.at(r.first_step);
      const auto want =
          std::max<std::int64_t>(4, static_cast<std::int64_t>(std::floor((0.2 / lr) * (0.2 / lr))));
      CHECK(r.h == want);
      CHECK(r.h >= prev_h);
      prev_h = r.h;
      expect0.push_back(r.first_step - 1 + r.h / 2);
      expect1.push_back(r.first_step - 1 + r.h);
      r = s.round_of(r.first_step + r.h);
    }
    // The lr bottoms out at 0.1 * 0.1 = 0.010000000000000002 in double, so H ends at
    // floor(399.99...) = 399, not 400.
    CHECK(prev_h == 399);
    expect0.erase(std::remove_if(expect0.begin(), expect0.end(), [](auto t) { return t > 3000; }),
                  expect0.end());
    expect1.erase(std::remove_if(expect1.begin(), expect1.end(), [](auto t) { return t > 3000; }),
                  expect1.end());
    CHECK(syncs_of(s, 0, 3000) == expect0);
    CHECK(syncs_of(s, 1, 3000) == expect1);
    CHECK(s.next_sync(1, expect1[3]) == expect1[4]);
  }
}

TEST_CASE("run.json round trip", "[bridge][config]") {
  RunConfig c;
  c.h = 100;
  c.p = 4;
  c.pattern = Pattern::sequential;
  c.offsets = {20, 45, 70, 100};
  c.tau = 5;
  c.alpha = 0.25;
  c.outer_lr = 0.4;
  c.outer_momentum = 0.8;
  c.token_weighted = true;
  c.wire_format = "fp4-e3m0";
  c.block_size = 128;
  c.n_layers = 4;
  for (std::int64_t l = 0; l < 4; ++l) c.tensors.push_back({"b" + std::to_string(l), 10, l});
  const std::string text = bridge::serialize_run_config(c);
  auto back = bridge::parse_run_config(text);
  REQUIRE(back);
  CHECK(bridge::serialize_run_config(*back) == text);
  CHECK(back->offsets == c.offsets);
  CHECK(back->outer_lr == 0.4);
  CHECK(back->alpha == 0.25);
  CHECK(back->pattern == Pattern::sequential);
  CHECK(back->tensors.size() == 4);

  SECTION("with QSR") {
    RunConfig q;
    q.p = 2;
    q.qsr = bridge::QsrOptions{10, 0.03, {bridge::LrSchedule::Kind::cosine, 4e-4, 100, 5000, 0.1}};
    q.h = 10;
    auto qb = bridge::parse_run_config(bridge::serialize_run_config(q));
    REQUIRE(qb);
    REQUIRE(qb->qsr);
    CHECK(qb->qsr->alpha == 0.03);
    CHECK(qb->qsr->lr.peak == 4e-4);
    CHECK(qb->qsr->lr.total_steps == 5000);
  }
  SECTION("defaults fill a minimal file") {
    auto m = bridge::parse_run_config(R"({"H": 30})");
    REQUIRE(m);
    CHECK(m->h == 30);
    CHECK(m->p == 1);
    CHECK(m->outer_lr == 0.7);
    CHECK(m->outer_momentum == 0.9);
  }
}

TEST_CASE("bad run.json is rejected with a clear error", "[bridge][config]") {
  using Row = std::tuple<std::string, core_errc, std::string>;
  auto [text, code, mention] = GENERATE(table<std::string, core_errc, std::string>({
      Row{"{", core_errc::malformed_json, "not valid JSON"},
      Row{"[]", core_errc::malformed_json, "object"},
      Row{R"({"H": 10, "Hh": 3})", core_errc::malformed_json, "run.Hh"},
      Row{R"({"H": "10"})", core_errc::malformed_json, "run.H"},
      Row{R"({"H": 0})", core_errc::invalid_config, "H must be"},
      Row{R"({"H": 10, "P": 11})", core_errc::invalid_config, "H must be >= P"},
      Row{R"({"H": 10, "P": 2, "tau": 5})", core_errc::invalid_config, "tau*P"},
      Row{R"({"H": 10, "alpha": 1.5})", core_errc::invalid_config, "alpha"},
      Row{R"({"H": 10, "outer": {"lr": 0}})", core_errc::invalid_config, "outer.lr"},
      Row{R"({"H": 10, "outer": {"momentum": 1.0}})", core_errc::invalid_config, "momentum"},
      Row{R"({"H": 10, "outer": {"nesterov": true}})", core_errc::malformed_json, "outer.nesterov"},
      Row{R"({"H": 10, "pattern": "zigzag"})", core_errc::invalid_config, "zigzag"},
      Row{R"({"H": 10, "P": 2, "offsets": [5]})", core_errc::invalid_config, "offsets"},
      Row{R"({"H": 10, "P": 2, "offsets": [5, 5]})", core_errc::invalid_config, "distinct"},
      Row{R"({"H": 10, "P": 2, "offsets": [5, 11]})", core_errc::invalid_config, "outside"},
      Row{R"({"H": 10, "wire": {"format": "fp3"}})", core_errc::invalid_config, "fp3"},
      Row{R"({"H": 10, "wire": {"block_size": -1}})", core_errc::malformed_json, "block_size"},
      Row{R"({"H": 10, "weights": "loss"})", core_errc::invalid_config, "weights"},
      Row{R"({"version": 2})", core_errc::invalid_config, "version"},
      Row{R"({"qsr": {"h_base": 10, "alpha": 0.1}})", core_errc::invalid_config, "qsr.lr"},
      Row{R"({"qsr": {"h_base": 10, "alpha": 0.1, "lr": {"kind": "cosine", "peak": 1e-3,
          "total_steps": 100, "min_ratio": 0}}})",
          core_errc::invalid_config, "min_ratio"},
      Row{R"({"qsr": {"h_base": 10, "alpha": 0.1, "lr": {"kind": "constant", "peak": 1e-3}},
          "P": 2, "offsets": [5, 10]})",
          core_errc::invalid_config, "QSR"},
      Row{R"({"H": 10, "P": 2, "n_layers": 2, "tensors": [{"name": "a", "numel": 1, "layer": 0}]})",
          core_errc::invalid_config, "fragment 1 has no tensor"},
      Row{R"({"H": 10, "n_layers": 2, "tensors": [{"name": "a", "numel": 1, "layer": 2}]})",
          core_errc::invalid_config, "layer 2"},
      Row{R"({"H": 10, "n_layers": 1, "tensors": [{"name": "a", "numel": 1, "layer": 0},
          {"name": "a", "numel": 1, "layer": 0}]})",
          core_errc::invalid_config, "duplicate tensor"},
  }));
  CAPTURE(text);
  auto r = bridge::parse_run_config(text);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == bridge::make_error_code(code));
  CHECK_THAT(r.error().detail, Catch::Contains(mention));
}

TEST_CASE("pseudo-gradient is old minus new", "[bridge][outer]") {
  const std::vector<float> base{1.0f, 2.0f, -3.0f};
  const std::vector<float> local{0.5f, 2.5f, -3.0f};
  auto d = bridge::pseudo_gradient(base, local);
  REQUIRE(d);
  CHECK(*d == std::vector<float>{0.5f, -0.5f, 0.0f});
  // A plain SGD outer step with lr 1 on it is parameter averaging: it lands on the local model.
  std::vector<float> theta = base;
  bridge::NesterovSgd sgd({1.0, 0.0});
  std::vector<std::span<float>> ps{theta};
  std::vector<std::span<const float>> gs{*d};
  REQUIRE(sgd.step(ps, gs));
  CHECK(theta == local);
  std::vector<float> shorter(2);
  auto bad = bridge::pseudo_gradient(base, shorter);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == bridge::make_error_code(core_errc::size_mismatch));
}

TEST_CASE("reduction is bit-identical whatever the arrival order", "[bridge][reduce]") {
  constexpr std::size_t kWorkers = 5;
  constexpr std::size_t kN = 4099;
  std::mt19937 rng(7);
  std::vector<std::vector<float>> deltas(kWorkers, std::vector<float>(kN));
  for (std::size_t m = 0; m < kWorkers; ++m) {
    // Magnitudes spread over decades so fp32 addition is visibly non-associative.
    std::normal_distribution<float> dist(0.0f, std::pow(10.0f, static_cast<float>(m) - 2.0f));
    for (float& v : deltas[m]) v = dist(rng);
  }
  const bool weighted = GENERATE(false, true);
  std::vector<bridge::Contribution> arrival;
  for (std::size_t m = 0; m < kWorkers; ++m) {
    arrival.push_back({"worker-" + std::to_string(m), deltas[m], 1000 + 37 * m});
  }
  auto first = bridge::reduce_mean(arrival, weighted);
  REQUIRE(first);
  const std::string want = sha256_of(*first);

  std::vector<std::size_t> order(kWorkers);
  std::iota(order.begin(), order.end(), std::size_t{0});
  bool naive_differs = false;  // proves the check below could fail
  int permutations = 0;
  do {
    std::vector<bridge::Contribution> shuffled;
    std::vector<float> naive(kN, 0.0f);
    for (std::size_t m : order) {
      shuffled.push_back(arrival[m]);
      for (std::size_t i = 0; i < kN; ++i) naive[i] += deltas[m][i];
    }
    auto r = bridge::reduce_mean(shuffled, weighted);
    REQUIRE(r);
    CHECK(sha256_of(*r) == want);
    for (float& v : naive) v /= static_cast<float>(kWorkers);
    if (!weighted && sha256_of(naive) != want) naive_differs = true;
    ++permutations;
  } while (std::next_permutation(order.begin(), order.end()));
  CHECK(permutations == 120);
  CHECK((naive_differs || weighted));

  SECTION("uniform mean of two") {
    const std::vector<float> a{1.0f, 3.0f};
    const std::vector<float> b{2.0f, -1.0f};
    auto r = bridge::reduce_mean({{"b", b, 1}, {"a", a, 3}}, weighted);
    REQUIRE(r);
    if (weighted) {
      CHECK(*r == std::vector<float>{1.25f, 2.0f});
    } else {
      CHECK(*r == std::vector<float>{1.5f, 1.0f});
    }
  }
}

TEST_CASE("reduction rejects bad input", "[bridge][reduce]") {
  const std::vector<float> a{1.0f, 2.0f};
  const std::vector<float> b{1.0f};
  auto none = bridge::reduce_mean({});
  REQUIRE_FALSE(none);
  CHECK(none.error().code == bridge::make_error_code(core_errc::empty_input));
  auto dup = bridge::reduce_mean({{"w1", a, 1}, {"w1", a, 1}});
  REQUIRE_FALSE(dup);
  CHECK(dup.error().code == bridge::make_error_code(core_errc::duplicate_worker));
  auto sizes = bridge::reduce_mean({{"w1", a, 1}, {"w2", b, 1}});
  REQUIRE_FALSE(sizes);
  CHECK(sizes.error().code == bridge::make_error_code(core_errc::size_mismatch));
  auto zero = bridge::reduce_mean({{"w1", a, 0}}, true);
  REQUIRE_FALSE(zero);
  CHECK(zero.error().code == bridge::make_error_code(core_errc::empty_input));
}

TEST_CASE("overlap merge mixes local and global", "[bridge][outer]") {
  const std::vector<float> global{0.0f, 4.0f, -2.0f};
  const std::vector<float> start{2.0f, 0.0f, -2.0f};
  std::vector<float> local = start;
  REQUIRE(bridge::merge_overlap(local, global, 0.5));
  CHECK(local == std::vector<float>{1.0f, 2.0f, -2.0f});
  local = start;
  REQUIRE(bridge::merge_overlap(local, global, 0.0));
  CHECK(local == global);
  local = start;
  REQUIRE(bridge::merge_overlap(local, global, 1.0));
  CHECK(local == start);
  local = start;
  REQUIRE(bridge::merge_overlap(local, global, 0.25));
  CHECK(local == std::vector<float>{0.5f, 3.0f, -2.0f});
  std::vector<float> shorter(2);
  CHECK_FALSE(bridge::merge_overlap(shorter, global, 0.5));
}

TEST_CASE("Nesterov SGD follows torch's update rule and its state round-trips", "[bridge][outer]") {
  // Values exact in fp32, so the expected trajectory is exact too.
  std::vector<float> theta{1.0f, -2.0f};
  bridge::NesterovSgd opt({0.5, 0.5});
  const std::vector<float> g1{1.0f, 2.0f};
  const std::vector<float> g2{2.0f, 0.0f};
  std::vector<std::span<float>> ps{theta};
  std::vector<std::span<const float>> gs{g1};
  REQUIRE(opt.step(ps, gs));
  // buf = g = (1, 2); d = g + 0.5*buf = (1.5, 3); theta -= 0.5*d
  CHECK(theta == std::vector<float>{0.25f, -3.5f});
  const std::string state = opt.save_state();
  auto restored = bridge::NesterovSgd::load_state(state);
  REQUIRE(restored);
  CHECK(restored->steps() == 1);
  CHECK(restored->momentum_buffers() == opt.momentum_buffers());
  gs = {g2};
  REQUIRE(restored->step(ps, gs));
  // buf = 0.5*(1, 2) + (2, 0) = (2.5, 1); d = (2, 0) + 0.5*buf = (3.25, 0.5)
  CHECK(theta == std::vector<float>{0.25f - 1.625f, -3.75f});

  SECTION("bad state is rejected") {
    CHECK_FALSE(bridge::NesterovSgd::load_state("nope"));
    CHECK_FALSE(bridge::NesterovSgd::load_state(state.substr(0, state.size() - 1)));
    CHECK_FALSE(bridge::NesterovSgd::load_state(state + "x"));
    auto r = bridge::NesterovSgd::load_state(state.substr(0, 20));
    REQUIRE_FALSE(r);
    CHECK(r.error().code == bridge::make_error_code(core_errc::bad_state));
  }
  SECTION("shape changes are refused and change nothing") {
    std::vector<float> other(3, 1.0f);
    std::vector<float> og(3, 1.0f);
    std::vector<std::span<float>> ps2{other};
    std::vector<std::span<const float>> gs2{og};
    auto r = restored->step(ps2, gs2);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == bridge::make_error_code(core_errc::size_mismatch));
    CHECK(other == std::vector<float>(3, 1.0f));
  }
}

// ---- replay of tests/bridge/torch_outer_check.py (ctest bridge.torch_outer) ----

namespace {

class Reader {
 public:
  explicit Reader(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    bytes_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  template <typename T>
  T get() {
    REQUIRE(pos_ + sizeof(T) <= bytes_.size());
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::vector<float> floats(std::size_t n) {
    REQUIRE(pos_ + n * sizeof(float) <= bytes_.size());
    std::vector<float> v(n);
    if (n > 0) std::memcpy(v.data(), bytes_.data() + pos_, n * sizeof(float));
    pos_ += n * sizeof(float);
    return v;
  }
  std::string take(std::size_t n) {
    REQUIRE(pos_ + n <= bytes_.size());
    std::string s(bytes_.data() + pos_, n);
    pos_ += n;
    return s;
  }
  bool done() const { return pos_ == bytes_.size(); }

 private:
  std::vector<char> bytes_;
  std::size_t pos_ = 0;
};

// Counts elements whose bits differ; prints the first one.
std::size_t bit_mismatches(const std::vector<float>& got, const std::vector<float>& want,
                           const std::string& what) {
  REQUIRE(got.size() == want.size());
  std::size_t bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!same_bits(got[i], want[i])) {
      if (bad == 0) {
        UNSCOPED_INFO(what << "[" << i << "]: ours " << std::hexfloat << got[i] << " torch "
                           << want[i] << std::defaultfloat);
      }
      ++bad;
    }
  }
  return bad;
}

}  // namespace

TEST_CASE("outer SGD and merge match torch bit for bit", "[bridge][.torch]") {
  const char* path = std::getenv("SHARDSYNC_TORCH_VECTORS");
  REQUIRE(path != nullptr);  // run through torch_outer_check.py
  Reader in(path);
  REQUIRE(in.take(8) == "SSTORCH1");
  const auto runs = in.get<std::uint32_t>();
  REQUIRE(runs > 0);
  std::size_t compared = 0;
  for (std::uint32_t run = 0; run < runs; ++run) {
    const auto lr = in.get<double>();
    const auto momentum = in.get<double>();
    const auto steps = in.get<std::uint32_t>();
    const auto count = in.get<std::uint32_t>();
    std::vector<std::uint32_t> sizes(count);
    for (auto& s : sizes) s = in.get<std::uint32_t>();
    std::vector<std::vector<float>> params;
    for (auto s : sizes) params.push_back(in.floats(s));
    auto opt = std::make_unique<bridge::NesterovSgd>(bridge::OuterOptions{lr, momentum});
    for (std::uint32_t step = 0; step < steps; ++step) {
      std::vector<std::vector<float>> grads;
      for (auto s : sizes) grads.push_back(in.floats(s));
      std::vector<std::span<float>> ps(params.begin(), params.end());
      std::vector<std::span<const float>> gs(grads.begin(), grads.end());
      REQUIRE(opt->step(ps, gs));
      const std::string ctx = "lr " + std::to_string(lr) + " mu " + std::to_string(momentum) +
                              " step " + std::to_string(step);
      for (std::uint32_t t = 0; t < count; ++t) {
        CHECK(bit_mismatches(params[t], in.floats(sizes[t]), ctx + " param " + std::to_string(t)) ==
              0);
        compared += sizes[t];
      }
      if (momentum > 0) {
        for (std::uint32_t t = 0; t < count; ++t) {
          CHECK(bit_mismatches(opt->momentum_buffers()[t], in.floats(sizes[t]),
                               ctx + " buf " + std::to_string(t)) == 0);
        }
      }
      if (step == steps / 2) {
        // Resume from a checkpoint mid-run: the trajectory must not change.
        auto restored = bridge::NesterovSgd::load_state(opt->save_state());
        REQUIRE(restored);
        opt = std::make_unique<bridge::NesterovSgd>(std::move(*restored));
      }
    }
  }
  const auto merges = in.get<std::uint32_t>();
  REQUIRE(merges > 0);
  for (std::uint32_t k = 0; k < merges; ++k) {
    const auto alpha = in.get<double>();
    const auto n = in.get<std::uint32_t>();
    const std::vector<float> global = in.floats(n);
    std::vector<float> local = in.floats(n);
    REQUIRE(bridge::merge_overlap(local, global, alpha));
    CHECK(bit_mismatches(local, in.floats(n), "merge alpha " + std::to_string(alpha)) == 0);
    compared += n;
  }
  CHECK(in.done());
  WARN("compared " << compared << " fp32 values with torch bit for bit");
}
