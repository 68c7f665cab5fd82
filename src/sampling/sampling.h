// The sampler chain: penalties, top-k, top-p, min-p, temperature, then a seeded draw (or greedy
// at temperature 0), plus stop-string detection for streamed text. Freestanding C++ (no
// exceptions, no I/O, no host-only dependencies): the WebAssembly guest compiles this same source.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace realm::sampling {

struct TokenData {
  int32_t id;
  float logit;
  float p;  // probability, valid after softmax()
};

// The candidate set a sampler works on, initialised from one row of logits.
class Candidates {
 public:
  void reset(std::span<const float> logits);
  std::vector<TokenData>& data() { return data_; }
  const std::vector<TokenData>& data() const { return data_; }
  bool sorted() const { return sorted_; }
  // Sorts by logit, descending (ties: lower id first), once.
  void sort();
  // Keeps the first n (after sorting; a partial sort when n is smaller than the set).
  void truncate(size_t n);
  // reset(logits) followed by truncate(k), without building the whole set: one pass over the row.
  void reset_top_k(std::span<const float> logits, size_t k);
  // To be called after changing logits in place.
  void invalidate_order() { sorted_ = false; }
  // Fills p with the softmax of the logits (candidates sorted first).
  void softmax();

 private:
  std::vector<TokenData> data_;
  bool sorted_ = false;
};

// A deterministic 64-bit generator (xoshiro256**, seeded by splitmix64): the same seed gives the
// same draws on every platform, host and guest alike.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0);
  uint64_t next();
  // Uniform in [0, 1).
  double uniform();

 private:
  uint64_t s_[4];
};

// Tokens seen so far (prompt and generated), used by the penalties.
struct History {
  std::span<const int32_t> tokens;
};

// One step of the chain. Implementations must not throw.
class Sampler {
 public:
  virtual ~Sampler() = default;
  virtual const char* name() const = 0;
  virtual void apply(Candidates& c, const History& h) = 0;
};

struct SamplerParams {
  float temperature = 0.8f;     // <= 0: greedy
  int32_t top_k = 40;           // <= 0: off
  float top_p = 0.95f;          // >= 1: off
  float min_p = 0.05f;          // <= 0: off
  float repeat_penalty = 1.0f;  // 1: off (llama.cpp semantics: divide positive logits)
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  int32_t penalty_last_n = 64;  // window of recent tokens the penalties look at; -1: all
  uint64_t seed = 0;
};

// The chain llama.cpp uses by default: penalties -> top-k -> top-p -> min-p -> temperature ->
// draw. At temperature <= 0 the result is the arg-max of the penalized logits (lowest id on ties).
class Penalties;

class SamplerChain {
 public:
  explicit SamplerChain(const SamplerParams& params);
  ~SamplerChain();
  // Appends a custom sampler before the final draw.
  void add(std::unique_ptr<Sampler> s);
  // Samples the next token from one row of logits.
  int32_t sample(std::span<const float> logits, const History& history);
  const SamplerParams& params() const { return params_; }

 private:
  SamplerParams params_;
  std::vector<std::unique_ptr<Sampler>> samplers_;
  Penalties* penalties_ = nullptr;  // samplers_[0]
  size_t n_builtin_ = 0;            // samplers_ before any add()
  Candidates cand_;
  std::vector<float> row_;  // penalized logits (fast paths)
  Rng rng_;
};

// Log-softmax over the full row: the log-probability of `id` and the `n` most likely tokens
// (descending; ties: lower id first).
struct TokenLogprob {
  int32_t id;
  float logprob;
};
float token_logprob(std::span<const float> logits, int32_t id);
std::vector<TokenLogprob> top_logprobs(std::span<const float> logits, size_t n);
// log(sum(exp(logits))), computed stably; the two functions above with it precomputed give the
// same values (one pass over the row instead of two when both are wanted).
double log_sum_exp(std::span<const float> logits);
float token_logprob(std::span<const float> logits, int32_t id, double lse);
std::vector<TokenLogprob> top_logprobs(std::span<const float> logits, size_t n, double lse);

// Finds stop strings in streamed text. feed() takes each new piece and returns the text that is
// safe to emit now: text that could still be the start of a stop string is held back until it
// is disambiguated. After a match, stopped() is true and nothing past the match is returned.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);
  std::string feed(std::string_view piece);
  // The held-back text, to emit when generation ends without a match.
  std::string flush();
  bool stopped() const { return stopped_; }
  const std::string& matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  std::string matched_;
  bool stopped_ = false;
};

}  // namespace realm::sampling
