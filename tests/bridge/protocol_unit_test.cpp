// The bridge protocol's pure parts: resource layout, commit records, error messages, and the
// replicated run state (reduction order, checkpoint round trip).
#include <catch2/catch.hpp>

#include "run_state.hpp"
#include "shardsync/bridge/bridge.hpp"
#include "shardsync/bridge/protocol.hpp"

using namespace shardsync::bridge;

TEST_CASE("run resources live at the documented paths", "[bridge][protocol]") {
  CHECK(run_json_path("r1") == "runs/r1/run.json");
  CHECK(init_model_path("r1") == "runs/r1/init/model.safetensors");
  CHECK(payload_path("r1", 2, 7, "w3") == "runs/r1/frag/2/00000007/worker/w3.safetensors");
  CHECK(commit_path("r1", 0, 12) == "runs/r1/frag/0/00000012/commit.json");
  CHECK(reduced_path("r1", 1, 3) == "runs/r1/frag/1/00000003/reduced.safetensors");
  CHECK(checkpoint_global_path("r1", 4) == "runs/r1/ckpt/00000004/global.safetensors");
  CHECK(checkpoint_state_path("r1", 4) == "runs/r1/ckpt/00000004/outer_state.safetensors");
  CHECK(worker_state_path("r1", "w0") == "runs/r1/workers/w0/state.json");
  CHECK(final_model_path("r1") == "runs/r1/final/model.safetensors");

  const auto payload = parse_run_path("r1", payload_path("r1", 2, 7, "w3"));
  REQUIRE(payload);
  CHECK(payload->kind == RunPath::Kind::payload);
  CHECK(payload->fragment == 2);
  CHECK(payload->sync == 7);
  CHECK(payload->worker == "w3");
  CHECK(parse_run_path("r1", commit_path("r1", 0, 12))->kind == RunPath::Kind::commit);
  CHECK(parse_run_path("r1", checkpoint_state_path("r1", 4))->sync == 4);
  CHECK_FALSE(parse_run_path("r2", commit_path("r1", 0, 1)));
  CHECK(parse_run_path("r1", "runs/r1/frag/x/00000001/commit.json")->kind == RunPath::Kind::other);
  CHECK(parse_run_path("r1", "runs/r1/frag/0/1/worker/../x.safetensors")->kind ==
        RunPath::Kind::other);
}

TEST_CASE("ids are short and path-safe", "[bridge][protocol]") {
  CHECK(valid_id("w-0.a_B"));
  CHECK_FALSE(valid_id(""));
  CHECK_FALSE(valid_id(".."));
  CHECK_FALSE(valid_id("a/b"));
  CHECK_FALSE(valid_id(std::string(65, 'a')));
}

TEST_CASE("commit records round-trip and malformed ones are refused", "[bridge][protocol]") {
  CommitRecord r;
  r.run_id = "r1";
  r.fragment = 1;
  r.sync = 5;
  r.send_step = 50;
  r.reason = "deadline";
  r.quorum = 2;
  r.base_sha256 = std::string(64, 'a');
  r.global_sha256 = std::string(64, 'b');
  r.included = {{"w0", "n0", std::string(64, 'c'), 16, "http://h/x"},
                {"w2", "n2", std::string(64, 'd'), 16, "http://h/y"}};
  r.committer = "w0";
  r.created = "2026-11-25T00:00:00Z";
  const std::string text = serialize_commit(r);
  auto back = parse_commit(text);
  REQUIRE(back);
  CHECK(*back == r);

  SECTION("workers out of order") {
    std::swap(r.included[0], r.included[1]);
    CHECK(parse_commit(serialize_commit(r)).error().code == bridge_errc::bad_payload);
  }
  SECTION("a bad worker id") {
    r.included[0].worker = "../w";
    CHECK(parse_commit(serialize_commit(r)).error().code == bridge_errc::bad_payload);
  }
  SECTION("not JSON, or a key missing") {
    CHECK_FALSE(parse_commit("{"));
    CHECK_FALSE(parse_commit(R"({"format":"shardsync.diloco.commit/1"})"));
  }
}

TEST_CASE("every bridge error code has its own message", "[bridge][protocol]") {
  for (int code = 1; code <= static_cast<int>(bridge_errc::bad_state); ++code) {
    const std::error_code ec = make_error_code(static_cast<bridge_errc>(code));
    CHECK(ec.category().name() == std::string("shardsync.bridge"));
    CHECK(ec.message().find("unknown") == std::string::npos);
  }
}

namespace {

using shardsync::bridge::detail::RunState;

RunConfig two_fragments() {
  RunConfig c;
  c.h = 10;
  c.p = 2;
  c.n_layers = 2;
  c.tensors = {{"a", 3, 0}, {"b", 2, 1}};
  return c;
}

DecodedFragment payload(std::string worker, std::vector<float> values) {
  DecodedFragment d;
  d.meta.worker_id = std::move(worker);
  d.tensors.push_back({"a", {3}, std::move(values)});
  return d;
}

}  // namespace

TEST_CASE("the run state reduces in worker order, whatever the arrival order",
          "[bridge][protocol]") {
  const auto model = shardsync::bridge::detail::write_f32_tensors(
      {{"a", {3}, {1.0f, 2.0f, 3.0f}}, {"b", {2}, {4.0f, 5.0f}}});
  REQUIRE(model);
  auto first = RunState::create(two_fragments(), *model);
  REQUIRE(first);
  RunState second = *first;
  CHECK(first->fragments() == 2);
  CHECK(first->global(0)[0].name == "a");
  CHECK(first->global(1)[0].name == "b");
  const std::string base = first->global_sha256(0);

  const DecodedFragment x = payload("w0", {0.1f, 1e-8f, -0.3f});
  const DecodedFragment y = payload("w1", {1e8f, 0.2f, 0.3f});
  const DecodedFragment z = payload("w2", {-1e8f, -0.2f, 0.7f});
  REQUIRE(first->apply_payloads(0, {&x, &y, &z}, false));
  REQUIRE(second.apply_payloads(0, {&z, &x, &y}, false));
  CHECK(first->global_sha256(0) == second.global_sha256(0));
  CHECK(first->global_sha256(0) != base);
  CHECK(first->global(1)[0].values == std::vector<float>{4.0f, 5.0f});  // fragment 1 untouched

  SECTION("a payload that does not fit the fragment is refused, the state unchanged") {
    const std::string before = first->global_sha256(0);
    const DecodedFragment bad = payload("w3", {1.0f, 2.0f});
    CHECK(first->apply_payloads(0, {&x, &bad}, false).error().code == bridge_errc::bad_payload);
    CHECK(first->global_sha256(0) == before);
  }
  SECTION("global + outer state survive a checkpoint round trip") {
    first->set_committed(0, 1);
    first->resume_step = 5;
    const auto global = first->encode_global();
    const auto outer = first->encode_outer_state();
    REQUIRE(global);
    REQUIRE(outer);
    auto restored = RunState::create(two_fragments(), *model);
    REQUIRE(restored);
    REQUIRE(restored->load_global(*global));
    REQUIRE(restored->load_outer_state(*outer));
    CHECK(restored->global_sha256(0) == first->global_sha256(0));
    CHECK(restored->committed(0) == 1);
    CHECK(restored->resume_step == 5);
    // The momentum came along: the next step gives the same result on both.
    REQUIRE(first->apply_payloads(0, {&x}, false));
    REQUIRE(restored->apply_payloads(0, {&x}, false));
    CHECK(restored->global_sha256(0) == first->global_sha256(0));
  }
}
