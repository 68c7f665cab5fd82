#include "engine/generate.h"

#include <chrono>

#include "tokenizer/stream_decoder.h"

namespace realm::engine {

std::string_view finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::EOS:
      return "eos";
    case FinishReason::LENGTH:
      return "length";
    case FinishReason::STOP:
      return "stop";
    case FinishReason::CANCELLED:
      return "cancelled";
  }
  return "?";
}

namespace {
double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

Expected<GenerateResult> generate(Engine& engine, const tok::Tokenizer& tokenizer,
                                  std::vector<int32_t> prompt_ids, const GenerateParams& params,
                                  const TokenCallback& on_token) {
  if (prompt_ids.empty()) return make_error("the prompt has no tokens");
  if (params.max_tokens < 0) return make_error("max tokens must be >= 0, got ", params.max_tokens);
  const int64_t need = static_cast<int64_t>(prompt_ids.size()) + params.max_tokens;
  const int64_t n_ctx = params.n_ctx > 0 ? params.n_ctx : need;
  if (need > n_ctx) {
    return make_error("prompt (", prompt_ids.size(), " tokens) + requested tokens (",
                      params.max_tokens, ") exceed the context size ", n_ctx);
  }
  auto session = engine.open_session(n_ctx, params.kv_type);
  GenerateResult r;
  r.prompt_ids = prompt_ids;
  sampling::SamplerChain chain(params.sampling);
  sampling::StopMatcher stops(params.stop);
  // The output continues the prompt, so its first piece keeps its leading space (llama.cpp's
  // server does the same); only a whole-text detokenize strips it.
  tok::StreamDecoderOptions dec_opts;
  dec_opts.remove_leading_space = 0;
  tok::StreamDecoder decoder(tokenizer.vocab(), dec_opts);
  std::vector<int32_t> history = prompt_ids;

  auto t0 = std::chrono::steady_clock::now();
  auto step = engine.decode(*session, prompt_ids);
  if (!step) return step.take_error();
  r.prompt_ms = ms_since(t0);
  std::vector<float> logits = std::move(step->logits);
  r.prompt_logits = logits;

  auto t1 = std::chrono::steady_clock::now();
  for (int32_t i = 0; i < params.max_tokens; ++i) {
    if (i > 0) {
      auto next = engine.decode(*session, {history.back()});
      if (!next) return next.take_error();
      logits = std::move(next->logits);
      r.n_gen_timed++;
    }
    const int32_t id = chain.sample(logits, {history});
    if (id < 0) return make_error("sampling produced no token");
    TokenEvent ev;
    ev.id = id;
    if (params.logprobs || params.n_logprobs > 0) {  // one log-sum-exp pass, only when asked
      const double lse = sampling::log_sum_exp(logits);
      ev.logprob = sampling::token_logprob(logits, id, lse);
      if (params.n_logprobs > 0) {
        ev.top = sampling::top_logprobs(logits, static_cast<size_t>(params.n_logprobs), lse);
      }
    }
    const bool eog = tokenizer.vocab().is_eog(id) && !params.ignore_eos;
    r.ids.push_back(id);
    history.push_back(id);
    if (eog) {
      r.finish = FinishReason::EOS;
      ev.text = stops.flush();
      ev.text += decoder.flush();
    } else {
      ev.text = stops.feed(decoder.push(id));
      if (stops.stopped()) r.finish = FinishReason::STOP;
    }
    r.text += ev.text;
    if (on_token && !on_token(ev)) {
      r.finish = FinishReason::CANCELLED;
      break;
    }
    if (eog || stops.stopped()) break;
  }
  if (r.finish == FinishReason::LENGTH) {
    std::string tail = stops.feed(decoder.flush());
    if (!stops.stopped()) tail += stops.flush();
    if (stops.stopped()) r.finish = FinishReason::STOP;
    r.text += tail;
    if (on_token && !tail.empty()) {
      TokenEvent ev{-1, tail, 0.0f, {}};
      on_token(ev);
    }
  }
  r.gen_ms = ms_since(t1);
  return r;
}

}  // namespace realm::engine
