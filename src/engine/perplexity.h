// Perplexity exactly as llama-perplexity computes it: the tokenized text (BOS added per the
// vocab) is cut into chunks of n_ctx tokens; each chunk is evaluated from an empty cache with its
// first token replaced by BOS (when the vocab adds one), and only the second half of each chunk
// is scored: for positions j in [n_ctx/2, n_ctx - 1), -log softmax(logits_j)[token_{j+1}].
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "engine/engine.h"
#include "tokenizer/tokenizer.h"
#include "util/expected.h"

namespace realm::engine {

struct PerplexityResult {
  std::vector<double> running;  // the estimate after each chunk
  double ppl = 0;
  double stderr_ppl = 0;  // llama-perplexity's uncertainty estimate
  int64_t n_tokens = 0;   // tokens in the text
  int64_t n_scored = 0;
};

// Needs at least 2 * n_ctx tokens. `on_chunk` (optional) sees the running estimate.
Expected<PerplexityResult> perplexity(Engine& engine, const tok::Tokenizer& tokenizer,
                                      std::string_view text, int64_t n_ctx,
                                      const std::function<void(int64_t, double)>& on_chunk = {});

}  // namespace realm::engine
