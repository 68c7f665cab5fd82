// The API layer: request validation (every field, its errors naming the field and the value) and
// the shapes of responses and stream chunks.
#include "server/openai.h"

#include <gtest/gtest.h>

namespace realm::server {
namespace {

using Json = nlohmann::json;

ApiError error_of(Endpoint ep, const std::string& body) {
  auto r = parse_gen_request(ep, body);
  EXPECT_TRUE(std::holds_alternative<ApiError>(r)) << body;
  return std::holds_alternative<ApiError>(r) ? std::get<ApiError>(r) : ApiError{};
}

GenRequest ok(Endpoint ep, const std::string& body) {
  auto r = parse_gen_request(ep, body);
  EXPECT_TRUE(std::holds_alternative<GenRequest>(r))
      << body << ": " << (std::holds_alternative<ApiError>(r) ? std::get<ApiError>(r).message : "");
  return std::holds_alternative<GenRequest>(r) ? std::get<GenRequest>(r) : GenRequest{};
}

TEST(OpenAiRequest, CompletionFieldsBecomeTheGuestRequest) {
  GenRequest r = ok(Endpoint::COMPLETIONS,
                    R"({"model":"m","prompt":"Once","max_tokens":7,"temperature":0,"top_p":0.5,
                        "stop":"x","seed":3,"n":1,"presence_penalty":0.1,"frequency_penalty":-0.2,
                        "top_k":5,"min_p":0.1,"repeat_penalty":1.1,"stream":true,
                        "stream_options":{"include_usage":true},"user":"u","unknown":[1]})");
  EXPECT_EQ(r.model, "m");
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.guest["prompt"], "Once");
  EXPECT_EQ(r.guest["max_tokens"], 7);
  EXPECT_EQ(r.guest["temperature"], 0.0);
  EXPECT_EQ(r.guest["stop"], Json::array({"x"}));
  EXPECT_EQ(r.guest["seed"], 3);
  EXPECT_EQ(r.guest["top_k"], 5);
  EXPECT_FALSE(r.guest.contains("unknown"));
  EXPECT_EQ(ok(Endpoint::COMPLETIONS, R"({"model":"m","prompt":["a"]})").guest["prompt"], "a");
  EXPECT_EQ(ok(Endpoint::COMPLETIONS, R"({"model":"m","prompt":"a","max_completion_tokens":3})")
                .guest["max_tokens"],
            3);
}

TEST(OpenAiRequest, ChatMessagesWithTextParts) {
  GenRequest r = ok(Endpoint::CHAT, R"({"model":"m","messages":[
      {"role":"developer","content":"be brief"},
      {"role":"user","content":[{"type":"text","text":"hi "},{"type":"text","text":"there"}]}]})");
  EXPECT_EQ(r.guest["messages"], Json::parse(R"([{"role":"system","content":"be brief"},
                            {"role":"user","content":"hi there"}])"));
}

TEST(OpenAiRequest, ErrorsNameTheFieldAndTheValue) {
  const auto E = Endpoint::COMPLETIONS, C = Endpoint::CHAT;
  EXPECT_EQ(error_of(E, "{").message, "the request body is not valid JSON");
  EXPECT_EQ(error_of(E, "[1]").message, "the request body must be a JSON object");
  EXPECT_EQ(error_of(E, R"({"prompt":"x"})").param, "model");
  EXPECT_EQ(error_of(E, R"({"model":"m"})").param, "prompt");
  EXPECT_EQ(error_of(E, R"({"model":"m","prompt":5})").message,
            "'prompt' must be a string (or an array of one string), got 5");
  ApiError e = error_of(E, R"({"model":"m","prompt":"x","temperature":"hot"})");
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.param, "temperature");
  EXPECT_EQ(e.message, "'temperature' must be a number, got \"hot\"");
  EXPECT_EQ(error_of(E, R"({"model":"m","prompt":"x","temperature":3})").message,
            "'temperature' must be in [0.0, 2.0], got 3");
  EXPECT_EQ(error_of(E, R"({"model":"m","prompt":"x","n":2})").param, "n");
  EXPECT_EQ(error_of(E, R"({"model":"m","prompt":"x","max_tokens":-1})").param, "max_tokens");
  EXPECT_EQ(error_of(E, R"({"model":"m","prompt":"x","max_tokens":1e30})").param, "max_tokens");
  EXPECT_EQ(error_of(E, R"({"model":"m","prompt":"x","top_p":0})").param, "top_p");
  EXPECT_EQ(error_of(E, R"({"model":"m","prompt":"x","stop":["a","b","c","d","e"]})").param,
            "stop");
  EXPECT_EQ(error_of(E, R"({"model":"m","prompt":"x","stream":"yes"})").param, "stream");
  // logprobs: an integer 0..5 for completions, a boolean (+ top_logprobs <= 20) for chat.
  EXPECT_EQ(error_of(E, R"({"model":"m","prompt":"x","logprobs":true})").param, "logprobs");
  EXPECT_EQ(error_of(E, R"({"model":"m","prompt":"x","logprobs":6})").param, "logprobs");
  GenRequest lp = ok(E, R"({"model":"m","prompt":"x","logprobs":3})");
  EXPECT_EQ(lp.guest["logprobs"], true);
  EXPECT_EQ(lp.guest["top_logprobs"], 3);
  lp = ok(C, R"({"model":"m","messages":[{"role":"user","content":"x"}],"logprobs":true,
                 "top_logprobs":2})");
  EXPECT_EQ(lp.guest["top_logprobs"], 2);
  EXPECT_EQ(error_of(C, R"({"model":"m","messages":[{"role":"user","content":"x"}],
                            "top_logprobs":21,"logprobs":true})")
                .param,
            "top_logprobs");
  EXPECT_EQ(error_of(C, R"({"model":"m","messages":[{"role":"user","content":"x"}],
                            "top_logprobs":2})")
                .param,
            "top_logprobs");
  // logit_bias: token ids to biases in [-100, 100], passed to the guest.
  EXPECT_EQ(ok(E, R"({"model":"m","prompt":"x","logit_bias":{"5":-100}})").guest["logit_bias"],
            Json::parse(R"({"5":-100})"));
  EXPECT_EQ(error_of(E, R"({"model":"m","prompt":"x","logit_bias":{"a":1}})").param, "logit_bias");
  EXPECT_EQ(error_of(E, R"({"model":"m","prompt":"x","logit_bias":{"5":101}})").param,
            "logit_bias");
  EXPECT_EQ(ok(E, R"({"model":"m","prompt":"x","max_tokens":7})").max_tokens, 7);
  EXPECT_EQ(ok(E, R"({"model":"m","prompt":"x"})").max_tokens, -1);
  EXPECT_EQ(error_of(C, R"({"model":"m","messages":[]})").param, "messages");
  EXPECT_EQ(error_of(C, R"({"model":"m","messages":[{"role":"robot","content":"x"}]})").param,
            "messages[0].role");
  EXPECT_EQ(
      error_of(C, R"({"model":"m","messages":[{"role":"user","content":[{"type":"image"}]}]})")
          .param,
      "messages[0].content[0]");
  // Invalid UTF-8 in a body is refused as invalid JSON, not passed on.
  EXPECT_EQ(error_of(E, "{\"model\":\"m\",\"prompt\":\"\xff\"}").message,
            "the request body is not valid JSON");
}

TEST(OpenAiRequest, ResponsesInputAndInstructions) {
  GenRequest r =
      ok(Endpoint::RESPONSES,
         R"({"model":"m","instructions":"be brief","input":"hi","max_output_tokens":4})");
  EXPECT_EQ(r.guest["messages"], Json::parse(R"([{"role":"system","content":"be brief"},
                                                 {"role":"user","content":"hi"}])"));
  EXPECT_EQ(r.guest["max_tokens"], 4);
  r = ok(Endpoint::RESPONSES, R"({"model":"m","input":[{"type":"message","role":"user",
      "content":[{"type":"input_text","text":"a"},{"type":"input_text","text":"b"}]}]})");
  EXPECT_EQ(r.guest["messages"][0]["content"], "ab");
  EXPECT_EQ(error_of(Endpoint::RESPONSES, R"({"model":"m"})").param, "input");
  r = ok(Endpoint::RESPONSES, R"({"model":"m","input":"x","previous_response_id":"resp_1",
                                  "store":false})");
  EXPECT_EQ(r.previous_response_id, "resp_1");
  EXPECT_FALSE(r.store);
  EXPECT_TRUE(ok(Endpoint::RESPONSES, R"({"model":"m","input":"x"})").store);
  EXPECT_EQ(
      error_of(Endpoint::RESPONSES, R"({"model":"m","input":"x","previous_response_id":5})").param,
      "previous_response_id");
  EXPECT_EQ(error_of(Endpoint::RESPONSES, R"({"model":"m","input":"x","store":"yes"})").param,
            "store");
  EXPECT_EQ(error_of(Endpoint::RESPONSES, R"({"model":"m","input":"x","tools":[{}]})").param,
            "tools");
  EXPECT_EQ(
      error_of(Endpoint::RESPONSES, R"({"model":"m","input":[{"type":"function_call"}]})").param,
      "input[0]");
  ResponseShaper rs{"resp_1", "msg_1", "m", 5};
  Json done = rs.response("completed", "hey", 3, 2, true);
  EXPECT_EQ(done["output"][0]["content"][0]["text"], "hey");
  EXPECT_EQ(done["usage"]["total_tokens"], 5);
  EXPECT_TRUE(rs.response("in_progress", "", 0, 0, false)["usage"].is_null());
  EXPECT_EQ(rs.response("incomplete", "x", 1, 1, true)["incomplete_details"]["reason"],
            "max_output_tokens");
}

TEST(OpenAiResponse, ShapesFollowTheSdksStreamRules) {
  Shaper chat{Endpoint::CHAT, "chatcmpl-1", "m", 100};
  Json first = chat.chunk("Hi", true), next = chat.chunk(" there", false);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"], Json::parse(R"({"role":"assistant","content":"Hi"})"));
  EXPECT_FALSE(next["choices"][0]["delta"].contains("role"));
  EXPECT_TRUE(first["usage"].is_null());
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  Json fin = chat.final_chunk("length");
  EXPECT_EQ(fin["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(fin["usage"].is_null());
  Json usage = chat.usage_chunk(5, 7);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["total_tokens"], 12);
  Json full = Shaper{Endpoint::COMPLETIONS, "cmpl-1", "m", 100}.response("abc", "stop", 2, 3);
  EXPECT_EQ(full["object"], "text_completion");
  EXPECT_EQ(full["choices"][0]["text"], "abc");
  EXPECT_EQ(full["usage"]["prompt_tokens"], 2);
  EXPECT_EQ(finish_reason("eos"), "stop");
  EXPECT_EQ(finish_reason("length"), "length");
  EXPECT_EQ(
      Json::parse(error_body({404, "no", "invalid_request_error", "model", "model_not_found"})),
      Json::parse(R"({"error":{"message":"no","type":"invalid_request_error","param":"model",
                                     "code":"model_not_found"}})"));
}

}  // namespace
}  // namespace realm::server
