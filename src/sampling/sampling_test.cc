#include "sampling/sampling.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>

namespace realm::sampling {
namespace {

TEST(Sampling, GreedyIsArgmaxLowestIdOnTies) {
  SamplerParams p;
  p.temperature = 0;
  SamplerChain chain(p);
  std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f};
  EXPECT_EQ(chain.sample(logits, {}), 1);
}

// A sampler that changes nothing: adding it makes the chain take its general path (every
// candidate built and sorted), which the fast paths (linear arg-max, one-pass top-k) must match.
class Identity : public Sampler {
 public:
  const char* name() const override { return "identity"; }
  void apply(Candidates&, const History&) override {}
};

TEST(Sampling, FastPathsMatchTheGeneralPath) {
  uint64_t x = 12345;
  auto next = [&] {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<uint32_t>(x >> 33);
  };
  struct Case {
    float temperature;
    int32_t top_k;
    float top_p, min_p, repeat_penalty, frequency_penalty, presence_penalty;
  };
  const Case cases[] = {
      {0.0f, 40, 0.95f, 0.05f, 1.0f, 0.0f, 0.0f},  {0.0f, 40, 0.95f, 0.05f, 1.3f, 0.1f, 0.2f},
      {0.8f, 40, 0.95f, 0.05f, 1.0f, 0.0f, 0.0f},  {0.8f, 40, 0.95f, 0.05f, 1.1f, 0.0f, 0.0f},
      {1.5f, 5, 1.0f, 0.0f, 1.0f, 0.5f, 0.5f},     {0.7f, 1, 0.9f, 0.1f, 1.0f, 0.0f, 0.0f},
      {1.0f, 1000, 0.99f, 0.0f, 1.2f, 0.0f, 0.0f}, {1.0f, 0, 0.9f, 0.05f, 1.0f, 0.0f, 0.0f},
      {1.0f, 0, 0.9f, 0.05f, 1.2f, 0.1f, 0.1f},
  };
  for (const Case& c : cases) {
    SamplerParams p;
    p.temperature = c.temperature;
    p.top_k = c.top_k;
    p.top_p = c.top_p;
    p.min_p = c.min_p;
    p.repeat_penalty = c.repeat_penalty;
    p.frequency_penalty = c.frequency_penalty;
    p.presence_penalty = c.presence_penalty;
    p.penalty_last_n = 16;
    p.seed = 7;
    SamplerChain fast(p), general(p);
    general.add(std::make_unique<Identity>());
    std::vector<int32_t> history = {3, 3, 9, 2000};
    for (int step = 0; step < 60; ++step) {
      // Coarse logits (many exact ties) over a 3000-token vocab.
      std::vector<float> logits(3000);
      for (auto& l : logits) l = static_cast<float>(next() % 64) * 0.25f - 6.0f;
      logits[static_cast<size_t>(history.back())] = 9.0f;  // a penalized favourite
      const int32_t a = fast.sample(logits, {history});
      const int32_t b = general.sample(logits, {history});
      ASSERT_EQ(a, b) << "temperature " << c.temperature << " top_k " << c.top_k << " step "
                      << step;
      history.push_back(a);
    }
  }
}

TEST(Sampling, TopKSelectionKeepsTheSortedBest) {
  std::vector<float> logits = {1.0f, 5.0f, 3.0f, 5.0f, -2.0f, 3.0f, 4.0f};
  Candidates c;
  c.reset_top_k(logits, 4);
  ASSERT_EQ(c.data().size(), 4u);
  EXPECT_TRUE(c.sorted());
  const int32_t want[] = {1, 3, 6, 2};
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(c.data()[i].id, want[i]);
  c.reset_top_k(logits, 0);
  EXPECT_TRUE(c.data().empty());
  c.reset_top_k(logits, 100);
  EXPECT_EQ(c.data().size(), logits.size());
  c.reset(logits);
  c.truncate(3);
  EXPECT_EQ(c.data()[2].id, 6);
}

TEST(Sampling, SameSeedSameDraws) {
  std::vector<float> logits(50);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(static_cast<float>(i));
  SamplerParams p;
  p.temperature = 1.5f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 42;
  SamplerChain a(p), b(p);
  std::vector<int32_t> ra, rb;
  for (int i = 0; i < 200; ++i) {
    ra.push_back(a.sample(logits, {}));
    rb.push_back(b.sample(logits, {}));
  }
  EXPECT_EQ(ra, rb);
  p.seed = 43;
  SamplerChain c(p);
  std::vector<int32_t> rc;
  for (int i = 0; i < 200; ++i) rc.push_back(c.sample(logits, {}));
  EXPECT_NE(ra, rc);
}

TEST(Sampling, DrawFollowsTheDistribution) {
  // p = softmax(log(0.5), log(0.3), log(0.2)) = (0.5, 0.3, 0.2).
  std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  SamplerParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 7;
  SamplerChain chain(p);
  std::map<int32_t, int> counts;
  const int n = 20000;
  for (int i = 0; i < n; ++i) counts[chain.sample(logits, {})]++;
  EXPECT_NEAR(counts[0] / double(n), 0.5, 0.02);
  EXPECT_NEAR(counts[1] / double(n), 0.3, 0.02);
  EXPECT_NEAR(counts[2] / double(n), 0.2, 0.02);
}

TEST(Sampling, TopKTopPMinPRestrictTheSet) {
  std::vector<float> logits = {std::log(0.4f), std::log(0.3f), std::log(0.2f), std::log(0.1f)};
  auto support = [&](SamplerParams p) {
    p.temperature = 1.0f;
    SamplerChain chain(p);
    std::map<int32_t, int> seen;
    for (int i = 0; i < 3000; ++i) seen[chain.sample(logits, {})]++;
    return seen.size();
  };
  SamplerParams k;
  k.top_k = 2;
  k.top_p = 1;
  k.min_p = 0;
  EXPECT_EQ(support(k), 2u);
  SamplerParams tp;
  tp.top_k = 0;
  tp.top_p = 0.65f;  // 0.4 + 0.3 >= 0.65
  tp.min_p = 0;
  EXPECT_EQ(support(tp), 2u);
  SamplerParams mp;
  mp.top_k = 0;
  mp.top_p = 1;
  mp.min_p = 0.45f;  // keeps p >= 0.18: three tokens
  EXPECT_EQ(support(mp), 3u);
}

TEST(Sampling, RepeatPenaltyDividesPositiveAndMultipliesNegative) {
  SamplerParams p;
  p.temperature = 0;
  p.repeat_penalty = 2.0f;
  SamplerChain chain(p);
  std::vector<float> logits = {3.0f, 2.0f, -1.0f};
  std::vector<int32_t> seen = {0};
  EXPECT_EQ(chain.sample(logits, {seen}), 1);  // 3 / 2 = 1.5 < 2
  p.repeat_penalty = 1.0f;
  p.presence_penalty = 1.5f;
  SamplerChain pres(p);
  EXPECT_EQ(pres.sample(logits, {seen}), 1);  // 3 - 1.5 < 2
  p.presence_penalty = 0;
  p.frequency_penalty = 0.6f;
  SamplerChain freq(p);
  std::vector<int32_t> twice = {0, 0};
  EXPECT_EQ(freq.sample(logits, {twice}), 1);  // 3 - 1.2 < 2
  p.penalty_last_n = 1;
  SamplerChain window(p);
  std::vector<int32_t> old = {0, 1};
  EXPECT_EQ(window.sample(logits, {old}), 0);  // only the last token (1) is penalized
}

TEST(Sampling, Logprobs) {
  std::vector<float> logits = {1.0f, 3.0f, 2.0f, 3.0f};
  auto top = top_logprobs(logits, 3);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].id, 1);
  EXPECT_EQ(top[1].id, 3);
  EXPECT_EQ(top[2].id, 2);
  double total = 0;
  for (int i = 0; i < 4; ++i) total += std::exp(token_logprob(logits, i));
  EXPECT_NEAR(total, 1.0, 1e-6);
  EXPECT_FLOAT_EQ(top[0].logprob, token_logprob(logits, 1));
}

TEST(Sampling, TopLogprobsMatchAFullSort) {
  std::vector<float> logits(5000);
  for (size_t i = 0; i < logits.size(); ++i) {
    logits[i] = static_cast<float>((i * 7919) % 97) * 0.125f;  // many exact ties
  }
  std::vector<int32_t> ids(logits.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
  std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
    return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)];
  });
  for (size_t n : {0, 1, 5, 40, 5000, 6000}) {
    const auto top = top_logprobs(logits, n);
    ASSERT_EQ(top.size(), std::min(n, logits.size()));
    for (size_t i = 0; i < top.size(); ++i) {
      ASSERT_EQ(top[i].id, ids[i]) << n << " " << i;
      ASSERT_EQ(top[i].logprob, token_logprob(logits, ids[i]));
    }
  }
}

TEST(StopMatcher, HoldsBackPartialMatchesAcrossPieces) {
  StopMatcher m({"</end>", "STOP"});
  std::string out;
  for (const char* piece : {"Hello ", "wor", "ld </", "en", "d> never"}) out += m.feed(piece);
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(out, "Hello world ");
  EXPECT_EQ(m.matched(), "</end>");
}

TEST(StopMatcher, FlushReleasesHeldTextWhenNoMatch) {
  StopMatcher m({"\n\nUser:"});
  std::string out = m.feed("answer\n");
  EXPECT_EQ(out, "answer");
  out += m.feed("\nUs");
  EXPECT_EQ(out, "answer");
  out += m.feed("ually");
  EXPECT_EQ(out, "answer\n\nUsually");
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, EarliestMatchWins) {
  StopMatcher m({"bc", "abcd"});
  EXPECT_EQ(m.feed("xabcd"), "x");  // "abcd" starts before "bc"
  EXPECT_EQ(m.matched(), "abcd");
}

}  // namespace
}  // namespace realm::sampling
