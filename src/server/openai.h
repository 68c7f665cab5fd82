// The OpenAI API surface of `realm serve`: request bodies validated into the guest ABI's request
// JSON (docs/abi.md), and the guest's events shaped into OpenAI's responses and stream chunks.
// Pure functions over JSON text, so they are unit-tested and fuzzed without a server.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace realm::server {

// An error as OpenAI's API reports it: HTTP status and {"error": {message, type, param, code}}.
struct ApiError {
  ApiError(int status_ = 400, std::string message_ = "",
           std::string type_ = "invalid_request_error", std::string param_ = "",
           std::string code_ = "")
      : status(status_),
        message(std::move(message_)),
        type(std::move(type_)),
        param(std::move(param_)),
        code(std::move(code_)) {}
  int status;
  std::string message;
  std::string type;
  std::string param;  // "" = null
  std::string code;   // "" = null
};
nlohmann::json error_json(const ApiError& e);
std::string error_body(const ApiError& e);  // error_json, serialized

enum class Endpoint { COMPLETIONS, CHAT, RESPONSES };

// A validated generation request.
struct GenRequest {
  Endpoint endpoint = Endpoint::COMPLETIONS;
  std::string model;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  int64_t max_tokens = -1;     // -1: not given (the context and the tenant's limits decide)
  bool logprobs = false;
  int top_logprobs = 0;
  std::string previous_response_id;  // Responses API
  bool has_instructions = false;     // Responses API: guest.messages[0] is the instructions
  bool store = true;                 // Responses API: keep the response for previous_response_id
  nlohmann::json guest;              // the request for the tenant's guest
};

// Validates a request body for `endpoint`: the OpenAI fields (model, prompt / messages,
// max_tokens / max_completion_tokens, temperature, top_p, stop, seed, n = 1, presence_penalty,
// frequency_penalty, logprobs / top_logprobs, logit_bias, stream, stream_options, user) and the
// llama.cpp extensions top_k, min_p, repeat_penalty; unknown fields are ignored. An error names
// the field and the offending value. For RESPONSES: `input` (a string, or message items with
// string or input_text content), `instructions` (a system message first), `max_output_tokens`,
// `temperature`, `top_p`, `top_logprobs`, `stream`, `store`, `previous_response_id` (the server
// prepends the stored conversation); `tools` and `conversation` are refused by name.
std::variant<GenRequest, ApiError> parse_gen_request(Endpoint endpoint, std::string_view body);

// The Responses API's objects for one response (`id` "resp_...", its message item "msg_...").
struct ResponseShaper {
  std::string id, item_id, model;
  int64_t created = 0;
  int64_t cached_tokens = 0;  // of the input: from the prefix cache (usage)
  // The response object: status "in_progress", "completed" or "incomplete" (by length).
  nlohmann::json response(const std::string& status, const std::string& text, int64_t input_tokens,
                          int64_t output_tokens, bool with_output) const;
  nlohmann::json message_item(const std::string& status, const std::string& text) const;
  // A stream event about the message's one text part: {"type", "item_id", "output_index": 0,
  // "content_index": 0} and `fields`.
  nlohmann::json part_event(const char* type, nlohmann::json fields) const;
};

// OpenAI's finish reason for the guest's ("eos" and "stop" -> "stop", "length").
std::string finish_reason(std::string_view guest_reason);

// Builds responses for one request: `id` ("cmpl-..." / "chatcmpl-..."), `created` (Unix seconds).
struct Shaper {
  Endpoint endpoint;
  std::string id, model;
  int64_t created = 0;
  int64_t cached_tokens = 0;  // of the prompt: from the prefix cache (usage)

  // A stream chunk carrying `text` (the first chat chunk also carries the role) and the choice's
  // `logprobs` (null, or as logprobs_of shapes them).
  nlohmann::json chunk(const std::string& text, bool first,
                       const nlohmann::json& logprobs = nullptr) const;
  // The last choice chunk: empty delta / text and the finish reason.
  nlohmann::json final_chunk(const std::string& finish) const;
  // The usage chunk (no choices), sent last when stream_options.include_usage is set.
  nlohmann::json usage_chunk(int64_t prompt_tokens, int64_t completion_tokens) const;
  // The whole (non-streamed) response.
  nlohmann::json response(const std::string& text, const std::string& finish, int64_t prompt_tokens,
                          int64_t completion_tokens,
                          const nlohmann::json& logprobs = nullptr) const;
  // The choice's logprobs for token entries (token_entry): chat {"content": [...], "refusal"},
  // completions {"tokens", "token_logprobs", "top_logprobs", "text_offset"} (`offset`: the text's
  // length before the first entry).
  nlohmann::json logprobs_of(const nlohmann::json& entries, size_t offset) const;
};

// One token's logprob entry as chat and the Responses API write it: {"token", "logprob", "bytes",
// "top_logprobs": [{"token", "logprob", "bytes"}]}, from a guest token event (`id`, `logprob`,
// `top_logprobs`) and the text of each id.
nlohmann::json token_entry(const nlohmann::json& event,
                           const std::function<std::string(int32_t)>& piece);

}  // namespace realm::server
