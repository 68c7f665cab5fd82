#include "engine/perplexity.h"

#include <cmath>

namespace realm::engine {

Expected<PerplexityResult> perplexity(Engine& engine, const tok::Tokenizer& tokenizer,
                                      std::string_view text, int64_t n_ctx,
                                      const std::function<void(int64_t, double)>& on_chunk) {
  if (n_ctx < 4) return make_error("perplexity needs a context of at least 4 tokens, got ", n_ctx);
  std::vector<int32_t> tokens = tokenizer.encode(text, /*add_special=*/true, false);
  PerplexityResult r;
  r.n_tokens = static_cast<int64_t>(tokens.size());
  if (r.n_tokens < 2 * n_ctx) {
    return make_error("the text has ", r.n_tokens, " tokens; perplexity with context ", n_ctx,
                      " needs at least ", 2 * n_ctx);
  }
  const int64_t n_vocab = engine.model().hparams().n_vocab;
  const int64_t n_chunk = r.n_tokens / n_ctx;
  const int64_t first = n_ctx / 2;
  const bool add_bos = tokenizer.vocab().add_bos();
  double nll = 0, nll2 = 0;
  int64_t count = 0;
  for (int64_t c = 0; c < n_chunk; ++c) {
    std::vector<int32_t> chunk(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
    if (add_bos) chunk[0] = tokenizer.vocab().bos();
    auto session = engine.open_session(n_ctx);
    auto step = engine.decode(*session, chunk, /*all_logits=*/true);
    if (!step) return step.take_error();
    for (int64_t j = first; j < n_ctx - 1; ++j) {
      const float* row = step->logits.data() + j * n_vocab;
      const int32_t target = tokens[static_cast<size_t>(c * n_ctx + j + 1)];
      float max_l = row[0];
      for (int64_t v = 1; v < n_vocab; ++v) max_l = std::max(max_l, row[v]);
      double sum_exp = 0;
      for (int64_t v = 0; v < n_vocab; ++v) sum_exp += std::exp(row[v] - max_l);
      const double v = -(row[target] - max_l - std::log(sum_exp));
      nll += v;
      nll2 += v * v;
    }
    count += n_ctx - 1 - first;
    r.running.push_back(std::exp(nll / static_cast<double>(count)));
    if (on_chunk) on_chunk(c + 1, r.running.back());
  }
  r.n_scored = count;
  r.ppl = r.running.back();
  const double mean = nll / static_cast<double>(count);
  const double var = nll2 / static_cast<double>(count) - mean * mean;
  r.stderr_ppl = count > 1 ? std::sqrt(var / static_cast<double>(count - 1)) * r.ppl : 0.0;
  return r;
}

}  // namespace realm::engine
