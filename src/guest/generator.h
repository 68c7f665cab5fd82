// The generation loop of the default guest, written against the guest SDK imports
// (realm_guest.h): parse the request, build the prompt through the host (chat template,
// tokenizer), open a host session, then decode -> sample -> emit until max tokens, a stop string,
// an end-of-generation token, or the client going away. It mirrors the host's
// engine::generate() step for step (same sampler chain source, same stop and EOG rules, same
// UTF-8 holding), so the sandboxed and native paths give identical tokens.
//
// Custom guests derive from Generator and override its hooks (see src/guest/examples/).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "guest/guest_json.h"
#include "sampling/sampling.h"

namespace realm::guest {

// A request (docs/abi.md "Request JSON"), defaults as documented there.
struct Request {
  std::string model;
  bool has_prompt = false;
  std::string prompt;
  bool has_messages = false;
  std::string messages_json;  // the "messages" array, re-serialized for the host
  int32_t max_tokens = 128;
  sampling::SamplerParams sampling;  // seed defaults to 42 here
  std::vector<std::string> stop;
  bool logprobs = false;
  int32_t top_logprobs = 0;
  int64_t n_ctx = 0;  // 0: prompt + max_tokens
  bool ignore_eos = false;
  // "logit_bias": {"token id": bias in [-100, 100]}, added to the logits before sampling (and
  // before logprobs, as OpenAI's API does).
  std::vector<std::pair<int32_t, float>> logit_bias;
};

// Parses and validates a request; REALM_OK, or REALM_E_INVALID with a message in `error`.
int32_t parse_request(const json::Value& doc, Request& out, std::string& error);

// What model_info reports.
struct ModelInfo {
  int32_t n_vocab = 0;
  int32_t n_ctx_train = 0;
  int32_t bos = -1;
  int32_t eos = -1;
  std::vector<int32_t> eog;
  bool add_bos = false;
  bool is_eog(int32_t id) const;
};
int32_t parse_model_info(std::string_view json, ModelInfo& out, std::string& error);

enum class Finish { EOS, LENGTH, STOP, CANCELLED };
const char* finish_name(Finish f);

// One guest object (realm_new). Not thread-safe (a wasm instance is single-threaded).
class Generator {
 public:
  Generator();
  virtual ~Generator();
  Generator(const Generator&) = delete;
  Generator& operator=(const Generator&) = delete;

  // Runs one request to completion, streaming events through realm_emit. Returns a status code;
  // the message of a failure is in last_error().
  int32_t generate(std::string_view request_json);
  const std::string& last_error() const { return error_; }

 protected:
  // Hook: called once per request after the default parsing, with the whole request document
  // (custom fields) and the sampler chain (chain.add() appends a sampler before the draw).
  // Return REALM_OK or a status (fail() sets the message).
  virtual int32_t configure(const json::Value& request, const Request& req,
                            sampling::SamplerChain& chain) {
    return 0;
  }
  // Hook: called after each generated token's text was released (stop strings applied), with
  // all the text released so far; return true to end the request with finish_reason "stop".
  virtual bool should_stop(std::string_view text_so_far, int32_t id) { return false; }

  // Records `message` as the last error and returns `code`.
  int32_t fail(int32_t code, std::string message);

 private:
  struct OpenModel {
    std::string name;
    int32_t handle;
    ModelInfo info;
  };
  int32_t open_model(const std::string& name, const OpenModel*& out);
  int32_t build_prompt(const OpenModel& m, const Request& req, std::vector<int32_t>& ids);
  int32_t run(const OpenModel& m, const Request& req, const json::Value& doc,
              const std::vector<int32_t>& prompt);
  int32_t emit(int32_t kind, const std::string& json, bool& client_gone);

  std::vector<OpenModel> models_;
  std::string error_;
  std::vector<float> logits_;
  std::string piece_;
  std::string event_;
};

}  // namespace realm::guest
