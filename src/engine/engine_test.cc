#include "engine/engine.h"
#include "util/fault_injection.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "engine/generate.h"
#include "engine/perplexity.h"
#include "util/test_data.h"

namespace realm::engine {
namespace {

using test_data::shared_dir;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Loaded {
  std::shared_ptr<const model::Model> model;
  std::unique_ptr<tok::Tokenizer> tokenizer;
};

Loaded load(const std::string& rel) {
  Loaded l;
  auto m = model::Model::load(shared_dir() + "/" + rel);
  EXPECT_TRUE(m.ok()) << (m ? "" : m.error().message);
  if (m) l.model = *m;
  auto t = tok::Tokenizer::load(shared_dir() + "/" + rel);
  EXPECT_TRUE(t.ok()) << (t ? "" : t.error().message);
  if (t) l.tokenizer = std::make_unique<tok::Tokenizer>(std::move(*t));
  return l;
}

TEST(Generate, Stories260KFromTextMatchesLlamaCpp) {
  Loaded l = load("models/stories260K.gguf");
  ASSERT_TRUE(l.model && l.tokenizer);
  Engine engine(l.model, {2, 512});
  auto ref = nlohmann::json::parse(read_file(shared_dir() + "/models/reference/stories260K.json"));
  for (const auto& p : ref["prompts"]) {
    auto ids = l.tokenizer->encode(p["prompt"].get<std::string>(), true, false);
    EXPECT_EQ(ids, p["prompt_token_ids"].get<std::vector<int32_t>>());
    GenerateParams gp;
    gp.sampling.temperature = 0;
    gp.max_tokens = 64;
    gp.n_ctx = 512;
    std::string streamed;
    auto r = generate(engine, *l.tokenizer, ids, gp, [&](const TokenEvent& ev) {
      streamed += ev.text;
      return true;
    });
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->ids, p["continuation_token_ids"].get<std::vector<int32_t>>()) << p["prompt"];
    EXPECT_EQ(r->text, p["continuation_text"].get<std::string>());
    EXPECT_EQ(streamed, r->text);
    EXPECT_EQ(r->finish, FinishReason::LENGTH);
  }
}

TEST(Generate, StopStringsMaxTokensAndContextErrors) {
  Loaded l = load("models/stories260K.gguf");
  ASSERT_TRUE(l.model && l.tokenizer);
  Engine engine(l.model, {2, 512});
  auto ids = l.tokenizer->encode("Once upon a time", true, false);
  GenerateParams gp;
  gp.sampling.temperature = 0;
  gp.max_tokens = 64;
  gp.stop = {"Lily"};
  auto r = generate(engine, *l.tokenizer, ids, gp);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->finish, FinishReason::STOP);
  EXPECT_EQ(r->text, ", there was a little girl named ");
  gp.stop.clear();
  gp.max_tokens = 3;
  r = generate(engine, *l.tokenizer, ids, gp);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->ids.size(), 3u);
  EXPECT_EQ(r->finish, FinishReason::LENGTH);
  gp.n_ctx = 6;
  r = generate(engine, *l.tokenizer, ids, gp);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("exceed the context size 6"), std::string::npos);
  gp.n_ctx = 0;
  int calls = 0;
  gp.max_tokens = 10;
  r = generate(engine, *l.tokenizer, ids, gp, [&](const TokenEvent&) { return ++calls < 2; });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->finish, FinishReason::CANCELLED);
  EXPECT_EQ(r->ids.size(), 2u);
}

TEST(Perplexity, MatchesLlamaPerplexity) {
  Loaded l = load("models/stories260K.gguf");
  ASSERT_TRUE(l.model && l.tokenizer);
  Engine engine(l.model, {2, 512});
  auto ref = nlohmann::json::parse(read_file(shared_dir() + "/models/reference/perplexity.json"));
  std::string text = read_file(shared_dir() + "/models/reference/perplexity-text.txt");
  for (const auto& [ctx, want] : ref["results"].items()) {
    auto r = perplexity(engine, *l.tokenizer, text, std::stoll(ctx));
    ASSERT_TRUE(r.ok()) << r.error().message;
    auto running = want["running"].get<std::vector<double>>();
    ASSERT_EQ(r->running.size(), running.size()) << "ctx " << ctx;
    for (size_t i = 0; i < running.size(); ++i) {
      EXPECT_NEAR(r->running[i], running[i], 1e-3 * running[i]) << "ctx " << ctx << " chunk " << i;
    }
    EXPECT_NEAR(r->ppl, want["final"].get<double>(), 1e-3 * want["final"].get<double>());
    EXPECT_NEAR(r->stderr_ppl, want["stderr"].get<double>(), 1e-2 * want["stderr"].get<double>());
  }
  auto too_short = perplexity(engine, *l.tokenizer, "Once upon a time", 64);
  ASSERT_FALSE(too_short.ok());
  EXPECT_NE(too_short.error().message.find("needs at least 128"), std::string::npos);
}

// Eight callers submit steps concurrently; the scheduler batches them, and every caller gets
// the same logits as a lone run.
TEST(EngineBatching, ConcurrentCallersGetLoneRunLogits) {
  Loaded l = load("models/quant/synth-256x2.Q4_K_M.gguf");
  ASSERT_TRUE(l.model);
  const int n = 8, steps = 5;
  auto prompt_of = [](int s) {
    std::vector<int32_t> p = {1};
    for (int i = 0; i < 3 + s; ++i) p.push_back((29 * s + 7 * i) % 500 + 3);
    return p;
  };
  // Lone runs, each on its own engine.
  std::vector<std::vector<std::vector<float>>> lone(n);
  for (int s = 0; s < n; ++s) {
    Engine e(l.model, {1, 512});
    auto sess = e.open_session(64);
    auto r = e.decode(*sess, prompt_of(s));
    ASSERT_TRUE(r.ok());
    lone[s].push_back(r->logits);
    for (int i = 1; i < steps; ++i) {
      r = e.decode(*sess, {(s * 13 + i) % 500});
      ASSERT_TRUE(r.ok());
      lone[s].push_back(r->logits);
    }
  }
  Engine engine(l.model, {2, 512});
  std::vector<std::thread> threads;
  std::vector<int> mismatches(n, 0);
  for (int s = 0; s < n; ++s) {
    threads.emplace_back([&, s] {
      auto sess = engine.open_session(64);
      auto r = engine.decode(*sess, prompt_of(s));
      if (!r || r->logits != lone[s][0]) mismatches[s]++;
      for (int i = 1; i < steps; ++i) {
        r = engine.decode(*sess, {(s * 13 + i) % 500});
        if (!r || r->logits != lone[s][static_cast<size_t>(i)]) mismatches[s]++;
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int s = 0; s < n; ++s) EXPECT_EQ(mismatches[s], 0) << "session " << s;
  EXPECT_EQ(engine.tokens_run(), static_cast<uint64_t>(8 * (steps - 1) + 8 * 4 + 28));
  std::printf("%llu forward passes for %d steps\n",
              static_cast<unsigned long long>(engine.batches_run()), n * steps);
}

TEST(EngineBatching, ChunkedPrefillMatchesOneShot) {
  Loaded l = load("models/quant/synth-128x2.Q8_0.gguf");
  ASSERT_TRUE(l.model);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 40; ++i) prompt.push_back((i * 37) % 511 + 1);
  Engine big(l.model, {2, 512}), small(l.model, {2, 7});
  auto a = big.open_session(64), b = small.open_session(64);
  auto ra = big.decode(*a, prompt, true);
  auto rb = small.decode(*b, prompt, true);
  ASSERT_TRUE(ra.ok() && rb.ok());
  EXPECT_EQ(ra->logits, rb->logits);
  EXPECT_EQ(small.batches_run(), 6u);  // ceil(40 / 7)
  EXPECT_EQ(b->size(), 40);
}

TEST(EngineErrors, BadStepsFailThroughTheFuture) {
  Loaded l = load("models/stories260K.gguf");
  ASSERT_TRUE(l.model);
  Engine engine(l.model, {1, 512});
  auto s = engine.open_session(4);
  auto r = engine.decode(*s, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::INVALID_ARGUMENT);
  r = engine.decode(*s, {1, 2, 3, 4, 5});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("context full"), std::string::npos);
  EXPECT_EQ(r.error().code, ErrorCode::LIMIT);
  r = engine.decode(*s, {-1});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("token id -1"), std::string::npos);
  EXPECT_EQ(r.error().code, ErrorCode::INVALID_ARGUMENT);
  r = engine.decode(*s, {1, 2});
  ASSERT_TRUE(r.ok());
  s->truncate(1);
  EXPECT_EQ(s->size(), 1);
  r = engine.decode(*s, {5, 6, 7});
  EXPECT_TRUE(r.ok());
}

// Prompts cut by the engine's per-pass budget while other sessions' steps share the passes (a
// budget-dependent remainder every time) give the same logits, at every position, as one pass.
TEST(EngineBatching, LogitsDoNotDependOnTheBudgetOrTheLoad) {
  Loaded l = load("models/quant/synth-128x2.Q4_K_M.gguf");
  ASSERT_TRUE(l.model);
  const size_t V = static_cast<size_t>(l.model->hparams().n_vocab);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 300; ++i) prompt.push_back((i * 53) % 500 + 3);
  Engine alone(l.model, {2, 4096});
  auto s0 = alone.open_session(512);
  auto want = alone.decode(*s0, prompt, true);
  ASSERT_TRUE(want.ok());
  ASSERT_EQ(want->logits.size(), prompt.size() * V);
  for (int64_t budget : {1, 7, 64, 100, 256}) {
    Engine engine(l.model, {2, budget});
    // Two other sessions keep decoding while the prompt goes through.
    std::atomic<bool> stop{false};
    std::vector<std::thread> noise;
    for (int k = 0; k < 2; ++k) {
      noise.emplace_back([&, k] {
        auto s = engine.open_session(512);
        for (int i = 0; !stop && s->size() < 500; ++i) {
          if (!engine.decode(*s, {(k * 31 + i) % 500 + 3}).ok()) return;
        }
      });
    }
    auto s = engine.open_session(512);
    auto got = engine.decode(*s, prompt, true);
    stop = true;
    for (auto& t : noise) t.join();
    ASSERT_TRUE(got.ok()) << got.error().message;
    EXPECT_EQ(got->logits, want->logits) << "budget " << budget;
  }
}

// A step whose cancel flag is set is withdrawn (CANCELLED) and its session left as before; the
// engine keeps serving.
TEST(EngineErrors, CancelledStepsAreWithdrawn) {
  Loaded l = load("models/quant/synth-128x2.Q4_K_M.gguf");
  ASSERT_TRUE(l.model);
  Engine engine(l.model, {2, 8});  // 8 tokens per pass: a long prompt takes many passes
  auto s = engine.open_session(4096);
  std::vector<int32_t> prompt(2000, 5);
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  auto f = engine.submit(*s, prompt, false, cancel);
  while (engine.batches_run() < 3) std::this_thread::yield();
  cancel->store(true);
  auto r = f.get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::CANCELLED);
  EXPECT_EQ(s->size(), 0);  // the tokens it had run are dropped
  EXPECT_LT(engine.tokens_run(), 2000u);
  // Set before the step runs: never run.
  auto pre = std::make_shared<std::atomic<bool>>(true);
  const uint64_t before = engine.tokens_run();
  r = engine.decode(*s, {1, 2, 3}, false, pre);
  EXPECT_EQ(r.error().code, ErrorCode::CANCELLED);
  EXPECT_EQ(engine.tokens_run(), before);
  r = engine.decode(*s, {1, 2, 3});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(s->size(), 3);
}

// An allocation failure inside a forward pass fails the steps of that pass (INTERNAL), restores
// their sessions, and the next step succeeds with the same logits as if nothing had happened.
TEST(EngineErrors, AFaultInAPassFailsOnlyThatPass) {
  Loaded l = load("models/stories260K.gguf");
  ASSERT_TRUE(l.model);
  Engine engine(l.model, {1, 512});
  auto s = engine.open_session(64);
  auto ok = engine.decode(*s, {1, 400, 401});
  ASSERT_TRUE(ok.ok());
  fault::arm(fault::Site::FORWARD);
  auto r = engine.decode(*s, {402, 403});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::INTERNAL);
  EXPECT_NE(r.error().message.find("bad_alloc"), std::string::npos) << r.error().message;
  EXPECT_EQ(s->size(), 3);
  r = engine.decode(*s, {402, 403});
  ASSERT_TRUE(r.ok()) << r.error().message;
  Engine fresh(l.model, {1, 512});
  auto s2 = fresh.open_session(64);
  auto want = fresh.decode(*s2, {1, 400, 401, 402, 403});
  ASSERT_TRUE(want.ok());
  EXPECT_EQ(r->logits, want->logits);
}

}  // namespace
}  // namespace realm::engine
