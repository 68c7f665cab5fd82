#include "sampling/sampling.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

namespace realm::sampling {

namespace {

bool by_logit(const TokenData& a, const TokenData& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

// Index of the largest value, lowest index on ties (NaNs are never the largest; 0 when all are).
// Eight independent running maxima (vectorizable, no loop-carried load), then the first index
// holding the maximum: the same answer as a strict-greater scan, several times faster.
size_t argmax(std::span<const float> row) {
  constexpr size_t kLanes = 8;
  float m[kLanes];
  for (auto& v : m) v = -INFINITY;
  const size_t n = row.size();
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (size_t j = 0; j < kLanes; ++j) m[j] = row[i + j] > m[j] ? row[i + j] : m[j];
  }
  float best = -INFINITY;
  for (size_t j = 0; j < kLanes; ++j) best = m[j] > best ? m[j] : best;
  for (; i < n; ++i) best = row[i] > best ? row[i] : best;
  for (size_t k = 0; k < n; ++k) {
    if (row[k] == best) return k;
  }
  return 0;
}

}  // namespace

void Candidates::reset(std::span<const float> logits) {
  data_.resize(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    data_[i] = {static_cast<int32_t>(i), logits[i], 0.0f};
  }
  sorted_ = false;
}

void Candidates::sort() {
  if (!sorted_) std::sort(data_.begin(), data_.end(), by_logit);
  sorted_ = true;
}

void Candidates::truncate(size_t n) {
  if (!sorted_ && n < data_.size()) {
    // The order is total (ties broken by id), so a partial sort keeps exactly the first n of a
    // full sort, in the same order.
    std::partial_sort(data_.begin(), data_.begin() + static_cast<std::ptrdiff_t>(n), data_.end(),
                      by_logit);
    sorted_ = true;
  }
  sort();
  if (n < data_.size()) data_.resize(n);
}

void Candidates::reset_top_k(std::span<const float> logits, size_t k) {
  k = std::min(k, logits.size());
  data_.clear();
  sorted_ = true;
  if (k == 0) return;
  // A heap of the best k so far with the worst on top. A later token with a logit equal to the
  // worst kept one loses on id, so only logits strictly above `worst` can enter: most of the row
  // is rejected eight at a time by a vectorizable comparison.
  auto worse = [](const TokenData& a, const TokenData& b) { return by_logit(a, b); };
  const size_t n = logits.size();
  for (size_t i = 0; i < k; ++i) data_.push_back({static_cast<int32_t>(i), logits[i], 0.0f});
  std::make_heap(data_.begin(), data_.end(), worse);
  float worst = data_.front().logit;
  auto consider = [&](size_t i) {
    if (!(logits[i] > worst)) return;
    std::pop_heap(data_.begin(), data_.end(), worse);
    data_.back() = {static_cast<int32_t>(i), logits[i], 0.0f};
    std::push_heap(data_.begin(), data_.end(), worse);
    worst = data_.front().logit;
  };
  size_t i = k;
  constexpr size_t kBlock = 8;
  for (; i + kBlock <= n; i += kBlock) {
    bool any = false;
    for (size_t j = 0; j < kBlock; ++j) any |= logits[i + j] > worst;
    if (!any) continue;
    for (size_t j = 0; j < kBlock; ++j) consider(i + j);
  }
  for (; i < n; ++i) consider(i);
  std::sort_heap(data_.begin(), data_.end(), worse);
}

void Candidates::softmax() {
  sort();
  if (data_.empty()) return;
  const float max_l = data_.front().logit;
  double sum = 0.0;
  for (auto& t : data_) {
    t.p = std::exp(t.logit - max_l);
    sum += t.p;
  }
  for (auto& t : data_) t.p = static_cast<float>(t.p / sum);
}

Rng::Rng(uint64_t seed) {
  uint64_t x = seed;
  for (auto& s : s_) {
    x += 0x9e3779b97f4a7c15ull;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    s = z ^ (z >> 31);
  }
}

uint64_t Rng::next() {
  auto rotl = [](uint64_t v, int k) { return (v << k) | (v >> (64 - k)); };
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() {
  return static_cast<double>(next() >> 11) * 0x1.0p-53;
}

// Declared in the header (the chain's fast paths call it directly); not part of the public API.
class Penalties : public Sampler {
 public:
  explicit Penalties(const SamplerParams& p) : p_(p) {}
  const char* name() const override { return "penalties"; }
  void apply(Candidates& c, const History& h) override {
    if (!active() || !count_window(h)) return;
    for (auto& t : c.data()) {
      auto it = counts_.find(t.id);
      if (it != counts_.end()) penalize(t.logit, it->second);
    }
    c.invalidate_order();  // logits changed
  }
  bool active() const {
    return !(p_.repeat_penalty == 1.0f && p_.frequency_penalty == 0.0f &&
             p_.presence_penalty == 0.0f);
  }
  // The same penalties applied to a full row of logits indexed by token id.
  void apply_to_row(std::vector<float>& row, const History& h) {
    if (!active() || !count_window(h)) return;
    for (const auto& [id, count] : counts_) {
      if (id >= 0 && static_cast<size_t>(id) < row.size()) {
        penalize(row[static_cast<size_t>(id)], count);
      }
    }
  }

 private:
  // Counts the tokens of the penalty window into counts_; false when it is empty.
  bool count_window(const History& h) {
    size_t n = h.tokens.size();
    if (p_.penalty_last_n >= 0) n = std::min(n, static_cast<size_t>(p_.penalty_last_n));
    counts_.clear();
    for (size_t i = h.tokens.size() - n; i < h.tokens.size(); ++i) counts_[h.tokens[i]]++;
    return !counts_.empty();
  }
  void penalize(float& l, int count) const {
    if (l <= 0) {
      l *= p_.repeat_penalty;
    } else {
      l /= p_.repeat_penalty;
    }
    l -= static_cast<float>(count) * p_.frequency_penalty + p_.presence_penalty;
  }

  SamplerParams p_;
  std::unordered_map<int32_t, int> counts_;
};

namespace {

class TopK : public Sampler {
 public:
  explicit TopK(int32_t k) : k_(k) {}
  const char* name() const override { return "top-k"; }
  void apply(Candidates& c, const History&) override {
    if (k_ > 0) c.truncate(static_cast<size_t>(k_));
  }

 private:
  int32_t k_;
};

class TopP : public Sampler {
 public:
  explicit TopP(float p) : p_(p) {}
  const char* name() const override { return "top-p"; }
  void apply(Candidates& c, const History&) override {
    if (p_ >= 1.0f) return;
    c.softmax();
    double cum = 0.0;
    size_t keep = c.data().size();
    for (size_t i = 0; i < c.data().size(); ++i) {
      cum += c.data()[i].p;
      if (cum >= p_) {
        keep = i + 1;
        break;
      }
    }
    c.truncate(keep);
  }

 private:
  float p_;
};

class MinP : public Sampler {
 public:
  explicit MinP(float p) : p_(p) {}
  const char* name() const override { return "min-p"; }
  void apply(Candidates& c, const History&) override {
    if (p_ <= 0.0f || c.data().empty()) return;
    c.sort();
    const float threshold = c.data().front().logit + std::log(p_);
    size_t keep = 1;
    while (keep < c.data().size() && c.data()[keep].logit >= threshold) ++keep;
    c.truncate(keep);
  }

 private:
  float p_;
};

class Temperature : public Sampler {
 public:
  explicit Temperature(float t) : t_(t) {}
  const char* name() const override { return "temperature"; }
  void apply(Candidates& c, const History&) override {
    for (auto& d : c.data()) d.logit /= t_;
  }

 private:
  float t_;
};

}  // namespace

SamplerChain::SamplerChain(const SamplerParams& params) : params_(params), rng_(params.seed) {
  auto penalties = std::make_unique<Penalties>(params);
  penalties_ = penalties.get();
  samplers_.push_back(std::move(penalties));
  if (params.temperature > 0.0f) {
    samplers_.push_back(std::make_unique<TopK>(params.top_k));
    samplers_.push_back(std::make_unique<TopP>(params.top_p));
    samplers_.push_back(std::make_unique<MinP>(params.min_p));
    samplers_.push_back(std::make_unique<Temperature>(params.temperature));
  }
  n_builtin_ = samplers_.size();
}

SamplerChain::~SamplerChain() = default;

void SamplerChain::add(std::unique_ptr<Sampler> s) {
  samplers_.push_back(std::move(s));
}

int32_t SamplerChain::sample(std::span<const float> logits, const History& history) {
  // Fast paths for the built-in chain (no custom samplers), with results identical to the
  // general path below: the candidate order is total (logit, then id), so the arg-max and the
  // top k are unique, and the penalties give the same floats on a row as on candidates.
  const bool builtin = samplers_.size() == n_builtin_;
  std::span<const float> row = logits;
  if (builtin && penalties_->active()) {
    row_.assign(logits.begin(), logits.end());
    penalties_->apply_to_row(row_, history);
    row = row_;
  }
  if (builtin && params_.temperature <= 0.0f) {
    if (row.empty()) return -1;
    // Greedy: a linear arg-max, lowest id on ties.
    return static_cast<int32_t>(argmax(row));
  }
  size_t first = 0;
  if (builtin && params_.top_k > 0 && static_cast<size_t>(params_.top_k) < row.size()) {
    cand_.reset_top_k(row, static_cast<size_t>(params_.top_k));  // penalties applied: skip them
    first = 1;
  } else {
    cand_.reset(row);  // with the built-in chain, penalties are already in row
    first = builtin ? 1 : 0;
  }
  for (size_t i = first; i < samplers_.size(); ++i) samplers_[i]->apply(cand_, history);
  if (cand_.data().empty()) return -1;
  if (params_.temperature <= 0.0f) {
    cand_.sort();
    return cand_.data().front().id;
  }
  cand_.softmax();
  const double r = rng_.uniform();
  double cum = 0.0;
  for (const auto& t : cand_.data()) {
    cum += t.p;
    if (r < cum) return t.id;
  }
  return cand_.data().back().id;
}

double log_sum_exp(std::span<const float> logits) {
  float max_l = -INFINITY;
  for (float l : logits) max_l = std::max(max_l, l);
  double sum = 0.0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - max_l);
  return max_l + std::log(sum);
}

float token_logprob(std::span<const float> logits, int32_t id) {
  if (id < 0 || static_cast<size_t>(id) >= logits.size()) return -INFINITY;
  return token_logprob(logits, id, log_sum_exp(logits));
}

float token_logprob(std::span<const float> logits, int32_t id, double lse) {
  if (id < 0 || static_cast<size_t>(id) >= logits.size()) return -INFINITY;
  return static_cast<float>(logits[static_cast<size_t>(id)] - lse);
}

std::vector<TokenLogprob> top_logprobs(std::span<const float> logits, size_t n) {
  return top_logprobs(logits, n, log_sum_exp(logits));
}

std::vector<TokenLogprob> top_logprobs(std::span<const float> logits, size_t n, double lse) {
  // The n best in (logit desc, id asc) order, selected in one pass.
  Candidates best;
  best.reset_top_k(logits, n);
  std::vector<TokenLogprob> out;
  out.reserve(best.data().size());
  for (const auto& t : best.data()) {
    out.push_back({t.id, static_cast<float>(logits[static_cast<size_t>(t.id)] - lse)});
  }
  return out;
}

StopMatcher::StopMatcher(std::vector<std::string> stops) {
  for (auto& s : stops) {
    if (!s.empty()) stops_.push_back(std::move(s));
  }
}

std::string StopMatcher::feed(std::string_view piece) {
  if (stopped_) return {};
  pending_.append(piece);
  // Earliest complete match wins.
  size_t best = std::string::npos;
  for (const auto& s : stops_) {
    size_t at = pending_.find(s);
    if (at != std::string::npos && at < best) {
      best = at;
      matched_ = s;
    }
  }
  if (best != std::string::npos) {
    stopped_ = true;
    std::string out = pending_.substr(0, best);
    pending_.clear();
    return out;
  }
  // Hold back the longest suffix that is a prefix of some stop string.
  size_t hold = 0;
  for (const auto& s : stops_) {
    for (size_t k = std::min(s.size() - 1, pending_.size()); k > hold; --k) {
      if (pending_.compare(pending_.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
    }
  }
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string StopMatcher::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace realm::sampling
