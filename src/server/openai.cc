#include "server/openai.h"

#include <cmath>
#include <limits>

namespace realm::server {

using Json = nlohmann::json;

Json error_json(const ApiError& e) {
  return {{"error",
           {{"message", e.message},
            {"type", e.type},
            {"param", e.param.empty() ? Json() : Json(e.param)},
            {"code", e.code.empty() ? Json() : Json(e.code)}}}};
}

std::string error_body(const ApiError& e) {
  return error_json(e).dump(-1, ' ', false, Json::error_handler_t::replace);
}

namespace {

// A short, valid-UTF-8 rendering of an offending value for an error message.
std::string shown(const Json& v) {
  std::string s = v.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (s.size() > 100) s = s.substr(0, 100) + "...";
  return s;
}

ApiError bad(const std::string& param, const std::string& message) {
  ApiError e;
  e.message = message;
  e.param = param;
  return e;
}

ApiError bad_type(const std::string& param, const char* want, const Json& got) {
  return bad(param, "'" + param + "' must be " + want + ", got " + shown(got));
}

// A number field within [lo, hi] (null = absent).
std::optional<ApiError> get_number(const Json& doc, const char* key, double lo, double hi,
                                   Json& guest, const char* guest_key) {
  auto it = doc.find(key);
  if (it == doc.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) return bad_type(key, "a number", *it);
  const double v = it->get<double>();
  if (!std::isfinite(v) || v < lo || v > hi) {
    return bad(key, "'" + std::string(key) + "' must be in [" + shown(lo) + ", " + shown(hi) +
                        "], got " + shown(*it));
  }
  guest[guest_key] = v;
  return std::nullopt;
}

std::optional<ApiError> get_int(const Json& doc, const char* key, int64_t lo, int64_t hi,
                                Json& guest, const char* guest_key) {
  auto it = doc.find(key);
  if (it == doc.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer()) return bad_type(key, "an integer", *it);
  const int64_t v = it->get<int64_t>();
  if ((it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(hi)) || v < lo ||
      v > hi) {
    return bad(key, "'" + std::string(key) + "' must be in [" + std::to_string(lo) + ", " +
                        std::to_string(hi) + "], got " + shown(*it));
  }
  guest[guest_key] = v;
  return std::nullopt;
}

// A message's content: a string, or an array of {"type": "text", "text": ...} parts.
std::variant<std::string, ApiError> content_text(const Json& c, const std::string& param) {
  if (c.is_string()) return c.get<std::string>();
  if (c.is_null()) return std::string();
  if (!c.is_array()) return bad_type(param, "a string or an array of content parts", c);
  std::string out;
  for (size_t i = 0; i < c.size(); ++i) {
    const Json& part = c[i];
    const std::string p = param + "[" + std::to_string(i) + "]";
    if (!part.is_object() || part.value("type", Json()) != "text" || !part.contains("text") ||
        !part["text"].is_string()) {
      return bad(
          p, "'" + p + "' must be a {\"type\": \"text\", \"text\": ...} part, got " + shown(part));
    }
    out += part["text"].get<std::string>();
  }
  return out;
}

}  // namespace

std::variant<GenRequest, ApiError> parse_gen_request(Endpoint endpoint, std::string_view body) {
  const Json doc = Json::parse(body.begin(), body.end(), nullptr, false);
  if (doc.is_discarded()) {
    return bad("", "the request body is not valid JSON");
  }
  if (!doc.is_object()) return bad("", "the request body must be a JSON object");
  GenRequest r;
  r.endpoint = endpoint;
  Json& g = r.guest;
  auto model = doc.find("model");
  if (model == doc.end() || !model->is_string() || model->get_ref<const std::string&>().empty()) {
    return model == doc.end() ? bad("model", "'model' is required")
                              : bad_type("model", "a non-empty string", *model);
  }
  r.model = model->get<std::string>();
  g["model"] = r.model;

  if (endpoint == Endpoint::RESPONSES) {
    for (const char* key : {"previous_response_id", "tools", "conversation"}) {
      auto it = doc.find(key);
      if (it != doc.end() && !it->is_null() && !(it->is_array() && it->empty())) {
        return bad(key, "'" + std::string(key) + "' is not served yet");
      }
    }
    if (auto st = doc.find("store"); st != doc.end() && *st == true) {
      return bad("store", "'store': true is not served yet (responses are not kept)");
    }
    Json msgs = Json::array();
    if (auto ins = doc.find("instructions"); ins != doc.end() && !ins->is_null()) {
      if (!ins->is_string()) return bad_type("instructions", "a string", *ins);
      msgs.push_back({{"role", "system"}, {"content", *ins}});
    }
    auto in = doc.find("input");
    if (in == doc.end()) return bad("input", "'input' is required");
    if (in->is_string()) {
      msgs.push_back({{"role", "user"}, {"content", *in}});
    } else if (in->is_array() && !in->empty()) {
      for (size_t i = 0; i < in->size(); ++i) {
        const Json& item = (*in)[i];
        const std::string p = "input[" + std::to_string(i) + "]";
        if (!item.is_object() || (item.contains("type") && item["type"] != "message")) {
          return bad(p, "'" + p + "' must be a message item, got " + shown(item));
        }
        auto role = item.find("role");
        if (role == item.end() || !role->is_string() ||
            (*role != "system" && *role != "developer" && *role != "user" &&
             *role != "assistant")) {
          return bad(p + ".role", "'" + p + ".role' must be system, developer, user or assistant");
        }
        std::string text;
        const Json content = item.value("content", Json());
        if (content.is_string()) {
          text = content.get<std::string>();
        } else if (content.is_array()) {
          for (size_t k = 0; k < content.size(); ++k) {
            const Json& part = content[k];
            const std::string pp = p + ".content[" + std::to_string(k) + "]";
            const Json type = part.is_object() ? part.value("type", Json()) : Json();
            if ((type != "input_text" && type != "output_text" && type != "text") ||
                !part.contains("text") || !part["text"].is_string()) {
              return bad(pp, "'" + pp + "' must be an input_text part, got " + shown(part));
            }
            text += part["text"].get<std::string>();
          }
        } else {
          return bad_type(p + ".content", "a string or an array of input_text parts", content);
        }
        msgs.push_back({{"role", *role == "developer" ? "system" : role->get<std::string>()},
                        {"content", text}});
      }
    } else {
      return bad_type("input", "a string or a non-empty array of message items", *in);
    }
    g["messages"] = std::move(msgs);
  } else if (endpoint == Endpoint::COMPLETIONS) {
    auto p = doc.find("prompt");
    if (p == doc.end()) return bad("prompt", "'prompt' is required");
    if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) {
      g["prompt"] = (*p)[0];
    } else if (p->is_string()) {
      g["prompt"] = *p;
    } else {
      return bad_type("prompt", "a string (or an array of one string)", *p);
    }
  } else {
    auto m = doc.find("messages");
    if (m == doc.end()) return bad("messages", "'messages' is required");
    if (!m->is_array() || m->empty()) return bad_type("messages", "a non-empty array", *m);
    Json msgs = Json::array();
    for (size_t i = 0; i < m->size(); ++i) {
      const Json& msg = (*m)[i];
      const std::string p = "messages[" + std::to_string(i) + "]";
      if (!msg.is_object()) return bad_type(p, "an object", msg);
      auto role = msg.find("role");
      if (role == msg.end() || !role->is_string()) {
        return bad(p + ".role", "'" + p + ".role' must be a string");
      }
      const std::string& rs = role->get_ref<const std::string&>();
      if (rs != "system" && rs != "user" && rs != "assistant" && rs != "developer" &&
          rs != "tool") {
        return bad(p + ".role", "'" + p +
                                    ".role' must be system, developer, user, assistant or "
                                    "tool, got " +
                                    shown(*role));
      }
      auto text = content_text(msg.value("content", Json()), p + ".content");
      if (auto* e = std::get_if<ApiError>(&text)) return *e;
      msgs.push_back(
          {{"role", rs == "developer" ? "system" : rs}, {"content", std::get<std::string>(text)}});
    }
    g["messages"] = std::move(msgs);
  }

  // max_tokens (legacy) or max_completion_tokens: a non-negative integer; absent: the model's
  // context decides (the guest's default).
  for (const char* key : {"max_output_tokens", "max_completion_tokens", "max_tokens"}) {
    if (auto e = get_int(doc, key, 0, std::numeric_limits<int32_t>::max(), g, "max_tokens")) {
      return *e;
    }
    if (g.contains("max_tokens")) break;
  }
  if (auto e = get_number(doc, "temperature", 0, 2, g, "temperature")) return *e;
  if (auto e = get_number(doc, "top_p", 0, 1, g, "top_p")) return *e;
  if (g.contains("top_p") && g["top_p"].get<double>() <= 0) {
    return bad("top_p", "'top_p' must be in (0, 1], got " + shown(doc["top_p"]));
  }
  if (auto e = get_number(doc, "presence_penalty", -2, 2, g, "presence_penalty")) return *e;
  if (auto e = get_number(doc, "frequency_penalty", -2, 2, g, "frequency_penalty")) return *e;
  if (auto e = get_number(doc, "min_p", 0, 1, g, "min_p")) return *e;
  if (auto e = get_number(doc, "repeat_penalty", 0, 100, g, "repeat_penalty")) return *e;
  if (g.contains("repeat_penalty") && g["repeat_penalty"].get<double>() <= 0) {
    return bad("repeat_penalty", "'repeat_penalty' must be > 0");
  }
  if (auto e = get_int(doc, "top_k", 0, std::numeric_limits<int32_t>::max(), g, "top_k")) {
    return *e;
  }
  if (auto e = get_int(doc, "seed", std::numeric_limits<int64_t>::min(),
                       std::numeric_limits<int64_t>::max(), g, "seed")) {
    return *e;
  }
  if (auto n = doc.find("n"); n != doc.end() && !n->is_null() && *n != 1) {
    return bad("n", "'n' must be 1 (several choices are not served yet), got " + shown(*n));
  }
  if (auto s = doc.find("stop"); s != doc.end() && !s->is_null()) {
    Json stops = Json::array();
    if (s->is_string()) {
      stops.push_back(*s);
    } else if (s->is_array() && s->size() <= 4) {
      for (const Json& x : *s) {
        if (!x.is_string()) return bad_type("stop", "a string or an array of up to 4 strings", *s);
        stops.push_back(x);
      }
    } else {
      return bad_type("stop", "a string or an array of up to 4 strings", *s);
    }
    for (const Json& x : stops) {
      if (x.get_ref<const std::string&>().empty())
        return bad("stop", "'stop' strings must not be empty");
    }
    g["stop"] = std::move(stops);
  }
  for (const char* key : {"logprobs", "top_logprobs", "logit_bias"}) {
    auto it = doc.find(key);
    if (it == doc.end() || it->is_null() || *it == false || (*it == 0 && it->is_number())) continue;
    if (it->is_object() && it->empty()) continue;
    return bad(key, "'" + std::string(key) + "' is not served yet");
  }
  if (auto s = doc.find("stream"); s != doc.end() && !s->is_null()) {
    if (!s->is_boolean()) return bad_type("stream", "a boolean", *s);
    r.stream = s->get<bool>();
  }
  if (auto so = doc.find("stream_options"); so != doc.end() && !so->is_null()) {
    if (!so->is_object()) return bad_type("stream_options", "an object", *so);
    if (auto u = so->find("include_usage"); u != so->end() && !u->is_null()) {
      if (!u->is_boolean()) return bad_type("stream_options.include_usage", "a boolean", *u);
      r.include_usage = u->get<bool>();
    }
  }
  if (auto u = doc.find("user"); u != doc.end() && !u->is_null() && !u->is_string()) {
    return bad_type("user", "a string", *u);
  }
  return r;
}

Json ResponseShaper::message_item(const std::string& status, const std::string& text) const {
  Json content = Json::array();
  if (status != "in_progress") {
    content.push_back({{"type", "output_text"}, {"text", text}, {"annotations", Json::array()}});
  }
  return {{"type", "message"},
          {"id", item_id},
          {"status", status},
          {"role", "assistant"},
          {"content", std::move(content)}};
}

Json ResponseShaper::part_event(const char* type, Json fields) const {
  fields["type"] = type;
  fields["item_id"] = item_id;
  fields["output_index"] = 0;
  fields["content_index"] = 0;
  return fields;
}

Json ResponseShaper::response(const std::string& status, const std::string& text,
                              int64_t input_tokens, int64_t output_tokens, bool with_output) const {
  Json output = Json::array();
  if (with_output)
    output.push_back(message_item(status == "in_progress" ? status : "completed", text));
  Json r = {{"id", id},
            {"object", "response"},
            {"created_at", created},
            {"status", status},
            {"error", nullptr},
            {"incomplete_details",
             status == "incomplete" ? Json{{"reason", "max_output_tokens"}} : Json()},
            {"model", model},
            {"output", std::move(output)},
            {"parallel_tool_calls", false},
            {"tool_choice", "none"},
            {"tools", Json::array()},
            {"usage", nullptr}};
  if (status != "in_progress") {
    r["usage"] = {{"input_tokens", input_tokens},
                  {"input_tokens_details", {{"cached_tokens", 0}}},
                  {"output_tokens", output_tokens},
                  {"output_tokens_details", {{"reasoning_tokens", 0}}},
                  {"total_tokens", input_tokens + output_tokens}};
  }
  return r;
}

std::string finish_reason(std::string_view guest_reason) {
  return guest_reason == "length" ? "length" : "stop";
}

Json Shaper::chunk(const std::string& text, bool first) const {
  Json choice = {{"index", 0}};
  if (endpoint == Endpoint::CHAT) {
    Json delta = Json::object();
    if (first) delta["role"] = "assistant";
    delta["content"] = text;
    choice["delta"] = std::move(delta);
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = nullptr;
  return {{"id", id},
          {"object", endpoint == Endpoint::CHAT ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", Json::array({choice})},
          {"usage", nullptr}};
}

Json Shaper::final_chunk(const std::string& finish) const {
  Json j = chunk("", false);
  auto& choice = j["choices"][0];
  if (endpoint == Endpoint::CHAT) choice["delta"] = Json::object();
  choice["finish_reason"] = finish;
  return j;
}

Json Shaper::usage_chunk(int64_t prompt_tokens, int64_t completion_tokens) const {
  Json j = chunk("", false);
  j["choices"] = Json::array();
  j["usage"] = {{"prompt_tokens", prompt_tokens},
                {"completion_tokens", completion_tokens},
                {"total_tokens", prompt_tokens + completion_tokens}};
  return j;
}

Json Shaper::response(const std::string& text, const std::string& finish, int64_t prompt_tokens,
                      int64_t completion_tokens) const {
  Json choice = {{"index", 0}};
  if (endpoint == Endpoint::CHAT) {
    choice["message"] = {{"role", "assistant"}, {"content", text}, {"refusal", nullptr}};
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = finish;
  return {{"id", id},
          {"object", endpoint == Endpoint::CHAT ? "chat.completion" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", Json::array({choice})},
          {"usage",
           {{"prompt_tokens", prompt_tokens},
            {"completion_tokens", completion_tokens},
            {"total_tokens", prompt_tokens + completion_tokens}}}};
}

}  // namespace realm::server
