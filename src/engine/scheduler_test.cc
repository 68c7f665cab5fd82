// The scheduler's contract (engine.h): paged KV within a budget, prefix reuse per namespace,
// preemption and recompute, copy-on-write, the Virtual Token Counter. Every result is compared
// bit for bit with the same tokens run alone on a private cache.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <random>
#include <thread>

#include "engine/engine.h"
#include "util/test_data.h"

namespace realm::engine {
namespace {

using model::kKvBlockTokens;

std::shared_ptr<const model::Model> stories() {
  static auto m = [] {
    auto r = model::Model::load(test_data::shared_dir() + "/models/stories260K.gguf");
    EXPECT_TRUE(r.ok()) << (r ? "" : r.error().message);
    return r ? *r : nullptr;
  }();
  return m;
}

std::vector<int32_t> random_tokens(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> d(3, 500);
  std::vector<int32_t> v(n);
  for (auto& t : v) t = d(rng);
  return v;
}

// The last position's logits of `tokens` run alone in one pass on a private cache.
std::vector<float> alone(const std::vector<int32_t>& tokens) {
  auto m = stories();
  model::Workspace ws(1);
  model::KvCache cache(m->hparams(), static_cast<int64_t>(tokens.size()), model::KvType::F16);
  std::vector<float> logits(static_cast<size_t>(m->hparams().n_vocab));
  model::SequenceStep st{&cache, tokens, false, logits};
  EXPECT_TRUE(m->forward({&st, 1}, ws).ok());
  return logits;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

int32_t argmax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

SessionOptions tenant(const std::string& name, bool prefix = true, double weight = 1.0) {
  SessionOptions o;
  o.tenant = name;
  o.weight = weight;
  if (prefix) o.prefix_namespace = name;
  return o;
}

// Greedy continuation of `prompt` by n tokens, one step at a time.
std::vector<int32_t> greedy(Engine& e, Session& s, std::vector<int32_t> prompt, int n) {
  std::vector<int32_t> out;
  auto r = e.decode(s, std::move(prompt));
  EXPECT_TRUE(r.ok()) << r.error().message;
  if (!r) return out;
  for (int i = 0; i < n; ++i) {
    out.push_back(argmax(r->logits));
    if (i + 1 == n) break;
    r = e.decode(s, {out.back()});
    EXPECT_TRUE(r.ok()) << r.error().message;
    if (!r) break;
  }
  return out;
}

TEST(SchedulerPrefix, ReusedPerTenantAndBitIdentical) {
  Engine e(stories(), {2, 64});
  const auto prompt = random_tokens(100, 1);
  const auto want = alone(prompt);
  auto a1 = e.open_session(256, tenant("a"));
  auto r1 = e.decode(*a1, prompt);
  ASSERT_TRUE(r1.ok()) << r1.error().message;
  EXPECT_EQ(r1->cached_tokens, 0);
  EXPECT_TRUE(same_bits(r1->logits, want));
  // The same tenant again: every full block before the last token is reused.
  auto a2 = e.open_session(256, tenant("a"));
  auto r2 = e.decode(*a2, prompt);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->cached_tokens, 96);
  EXPECT_TRUE(same_bits(r2->logits, want));
  // Another tenant: nothing.
  auto b = e.open_session(256, tenant("b"));
  auto rb = e.decode(*b, prompt);
  ASSERT_TRUE(rb.ok());
  EXPECT_EQ(rb->cached_tokens, 0);
  EXPECT_TRUE(same_bits(rb->logits, want));
  // A longer conversation of tenant a: the history comes from the cache.
  auto longer = prompt;
  const auto more = random_tokens(40, 2);
  longer.insert(longer.end(), more.begin(), more.end());
  auto a3 = e.open_session(256, tenant("a"));
  auto r3 = e.decode(*a3, longer);
  ASSERT_TRUE(r3.ok());
  EXPECT_EQ(r3->cached_tokens, 96);
  EXPECT_TRUE(same_bits(r3->logits, alone(longer)));
  // No namespace: no reuse.
  auto plain = e.open_session(256, tenant("a", false));
  auto rp = e.decode(*plain, prompt);
  ASSERT_TRUE(rp.ok());
  EXPECT_EQ(rp->cached_tokens, 0);
  const EngineStats st = e.stats();
  EXPECT_EQ(st.prefix_hits, 192u);
  EXPECT_EQ(st.prefix_queries, 100u * 4 + 40);
}

TEST(SchedulerPrefix, TruncatingIntoASharedBlockCopiesIt) {
  Engine e(stories(), {2, 512});
  const auto prompt = random_tokens(80, 3);
  auto a = e.open_session(256, tenant("t"));
  ASSERT_TRUE(e.decode(*a, prompt).ok());
  auto b = e.open_session(256, tenant("t"));
  auto rb = e.decode(*b, prompt);
  ASSERT_TRUE(rb.ok());
  EXPECT_EQ(rb->cached_tokens, 64);
  // b rewrites from position 40 (inside its second, shared block).
  b->truncate(40);
  auto other = random_tokens(30, 4);
  auto rb2 = e.decode(*b, other);
  ASSERT_TRUE(rb2.ok());
  std::vector<int32_t> b_tokens(prompt.begin(), prompt.begin() + 40);
  b_tokens.insert(b_tokens.end(), other.begin(), other.end());
  EXPECT_TRUE(same_bits(rb2->logits, alone(b_tokens)));
  // a's blocks are untouched: its continuation is the cold one.
  auto ra = e.decode(*a, {7});
  ASSERT_TRUE(ra.ok());
  auto a_tokens = prompt;
  a_tokens.push_back(7);
  EXPECT_TRUE(same_bits(ra->logits, alone(a_tokens)));
}

// Sessions that need more blocks than the budget has are preempted and recomputed: every one
// gives the tokens it gives alone.
TEST(SchedulerPreemption, EveryRequestGivesItsTokensAlone) {
  auto m = stories();
  constexpr int kSeqs = 6, kGen = 70;
  std::vector<std::vector<int32_t>> prompts, want;
  {
    Engine big(m, {2, 512});
    for (int i = 0; i < kSeqs; ++i) {
      prompts.push_back(random_tokens(20 + 7 * i, 10 + i));
      auto s = big.open_session(256);
      want.push_back(greedy(big, *s, prompts.back(), kGen));
    }
  }
  EngineOptions o{2, 512};
  // 8 blocks: any one session fits (at most 4 blocks), all six together do not.
  o.kv_budget_bytes = 8 * model::KvPool::block_bytes(m->hparams(), model::KvType::F16);
  for (bool prefix : {false, true}) {
    Engine e(m, o);
    std::vector<std::vector<int32_t>> got(kSeqs);
    std::vector<std::thread> threads;
    for (int i = 0; i < kSeqs; ++i) {
      threads.emplace_back([&, i] {
        auto s = e.open_session(256, tenant("t" + std::to_string(i % 2), prefix));
        got[static_cast<size_t>(i)] = greedy(e, *s, prompts[static_cast<size_t>(i)], kGen);
      });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < kSeqs; ++i) EXPECT_EQ(got[i], want[i]) << "sequence " << i;
    EXPECT_GT(e.stats().preemptions, 0u);
    EXPECT_LE(e.stats().kv_blocks, 8);
  }
}

TEST(SchedulerLimits, ASessionLargerThanTheBudgetFailsClearly) {
  auto m = stories();
  EngineOptions o{2, 512};
  o.kv_budget_bytes = 2 * model::KvPool::block_bytes(m->hparams(), model::KvType::F16);
  Engine e(m, o);
  EXPECT_EQ(e.max_session_tokens(), 2 * kKvBlockTokens);
  auto s = e.open_session(1000);
  auto r = e.decode(*s, random_tokens(100, 5));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::LIMIT);
  EXPECT_NE(r.error().message.find("KV budget"), std::string::npos) << r.error().message;
  // The session is unchanged and usable within the budget.
  EXPECT_EQ(s->size(), 0);
  auto ok = e.decode(*s, random_tokens(60, 6));
  EXPECT_TRUE(ok.ok());
}

// The Virtual Token Counter: prompt tokens and 2 per decoded token, divided by the weight.
TEST(SchedulerFairness, CountersChargeInputAndTwicePerDecodedToken) {
  Engine e(stories(), {2, 512});
  auto a = e.open_session(256, tenant("a", false, 1.0));
  greedy(e, *a, random_tokens(30, 7), 11);  // 30 input + 10 decode steps
  EXPECT_DOUBLE_EQ(e.tenant_counter("a"), 30 + 2 * 10);
  a.reset();  // a is no longer backlogged
  auto b = e.open_session(256, tenant("b", false, 2.0));
  greedy(e, *b, random_tokens(30, 7), 11);
  EXPECT_DOUBLE_EQ(e.tenant_counter("b"), (30 + 2 * 10) / 2.0);
  // A tenant that becomes backlogged is lifted to the lowest backlogged counter (b's: b's
  // session is open).
  auto c = e.open_session(256, tenant("c", false));
  EXPECT_TRUE(e.decode(*c, {5, 6}).ok());
  EXPECT_DOUBLE_EQ(e.tenant_counter("c"), (30 + 2 * 10) / 2.0 + 2);
}

// Two slots, tenant "flood" with eight streams and "quiet" with two (both always backlogged):
// with VTC each tenant gets about half the decoded tokens; FIFO gives the flood what it asks for.
TEST(SchedulerFairness, OneSlotEachUnderVtcNotUnderFifo) {
  for (SchedulePolicy policy : {SchedulePolicy::VTC, SchedulePolicy::FIFO}) {
    EngineOptions o{2, 512};
    o.max_seqs = 2;
    o.policy = policy;
    Engine e(stories(), o);
    std::atomic<bool> stop{false};
    std::atomic<int64_t> served[2] = {0, 0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 10; ++i) {
      const int t = i < 2 ? 1 : 0;  // threads 0 and 1 are the quiet tenant
      threads.emplace_back([&, i, t] {
        uint32_t seed = 100 + i;
        while (!stop) {
          auto s = e.open_session(256, tenant(t ? "quiet" : "flood", false));
          served[t] += static_cast<int64_t>(greedy(e, *s, random_tokens(8, seed++), 24).size());
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    stop = true;
    for (auto& t : threads) t.join();
    const double ratio = static_cast<double>(served[0]) / static_cast<double>(served[1]);
    if (policy == SchedulePolicy::VTC) {
      EXPECT_GT(ratio, 0.6) << served[0] << " vs " << served[1];
      EXPECT_LT(ratio, 1.6) << served[0] << " vs " << served[1];
    } else {
      EXPECT_GT(ratio, 2.0) << served[0] << " vs " << served[1];
    }
  }
}

}  // namespace
}  // namespace realm::engine
