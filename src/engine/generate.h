// Text generation on the host: prompt ids -> prefill -> sample -> stream text, until max tokens,
// an end-of-generation token or a stop string. The WebAssembly guest runs the same loop with the
// same sampling source; this host version backs `realm run --no-sandbox` and the tests.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/engine.h"
#include "sampling/sampling.h"
#include "tokenizer/tokenizer.h"
#include "util/expected.h"

namespace realm::engine {

struct GenerateParams {
  sampling::SamplerParams sampling;
  int32_t max_tokens = 128;
  std::vector<std::string> stop;  // stop strings (not included in the output)
  bool ignore_eos = false;
  bool logprobs = false;   // the sampled token's log-probability in each TokenEvent
  int32_t n_logprobs = 0;  // top logprobs per generated token
  int64_t n_ctx = 0;       // session context; 0: prompt + max_tokens
  model::KvType kv_type = model::KvType::F16;
};

enum class FinishReason { EOS, LENGTH, STOP, CANCELLED };
// "eos", "length", "stop", "cancelled" (the token callback asked to stop).
std::string_view finish_reason_name(FinishReason r);

struct TokenEvent {
  int32_t id;
  std::string text;      // the text this token released (may be empty: partial UTF-8, held stop)
  float logprob = 0.0f;  // set when logprobs or n_logprobs > 0
  std::vector<sampling::TokenLogprob> top;  // n_logprobs entries
};

struct GenerateResult {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> ids;
  std::string text;
  FinishReason finish = FinishReason::LENGTH;
  std::vector<float> prompt_logits;  // logits of the last prompt position
  double prompt_ms = 0, gen_ms = 0;
  int64_t n_gen_timed = 0;  // generated tokens whose decode is counted in gen_ms
};

// Called for each generated token; return false to stop (the client went away).
using TokenCallback = std::function<bool(const TokenEvent&)>;

Expected<GenerateResult> generate(Engine& engine, const tok::Tokenizer& tokenizer,
                                  std::vector<int32_t> prompt_ids, const GenerateParams& params,
                                  const TokenCallback& on_token = nullptr);

}  // namespace realm::engine
