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
    for (const char* key : {"tools", "conversation"}) {
      auto it = doc.find(key);
      if (it != doc.end() && !it->is_null() && !(it->is_array() && it->empty())) {
        return bad(key, "'" + std::string(key) + "' is not served yet");
      }
    }
    if (auto st = doc.find("store"); st != doc.end() && !st->is_null()) {
      if (!st->is_boolean()) return bad_type("store", "a boolean", *st);
      r.store = st->get<bool>();
    }
    if (auto p = doc.find("previous_response_id"); p != doc.end() && !p->is_null()) {
      if (!p->is_string() || p->get_ref<const std::string&>().empty()) {
        return bad_type("previous_response_id", "a response id", *p);
      }
      r.previous_response_id = p->get<std::string>();
    }
    Json msgs = Json::array();
    if (auto ins = doc.find("instructions"); ins != doc.end() && !ins->is_null()) {
      if (!ins->is_string()) return bad_type("instructions", "a string", *ins);
      msgs.push_back({{"role", "system"}, {"content", *ins}});
      r.has_instructions = true;
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
  if (g.contains("max_tokens")) r.max_tokens = g["max_tokens"].get<int64_t>();
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
  // logprobs: a boolean with top_logprobs 0..20 (chat), an integer 0..5 (completions: the number
  // of alternatives), absent in the Responses API (top_logprobs alone).
  if (auto lp = doc.find("logprobs"); lp != doc.end() && !lp->is_null()) {
    if (endpoint == Endpoint::COMPLETIONS) {
      if (!lp->is_number_integer() || *lp < 0 || *lp > 5) {
        return bad_type("logprobs", "an integer in [0, 5]", *lp);
      }
      r.logprobs = true;
      r.top_logprobs = lp->get<int>();
    } else if (endpoint == Endpoint::CHAT) {
      if (!lp->is_boolean()) return bad_type("logprobs", "a boolean", *lp);
      r.logprobs = lp->get<bool>();
    }
  }
  if (endpoint != Endpoint::COMPLETIONS) {
    if (auto tl = doc.find("top_logprobs"); tl != doc.end() && !tl->is_null()) {
      if (!tl->is_number_integer() || *tl < 0 || *tl > 20) {
        return bad_type("top_logprobs", "an integer in [0, 20]", *tl);
      }
      if (endpoint == Endpoint::CHAT && !r.logprobs && *tl != 0) {
        return bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");
      }
      r.top_logprobs = tl->get<int>();
      if (endpoint == Endpoint::RESPONSES) r.logprobs = r.top_logprobs > 0;
    }
  }
  if (r.logprobs) {
    g["logprobs"] = true;
    g["top_logprobs"] = r.top_logprobs;
  }
  if (auto lb = doc.find("logit_bias"); lb != doc.end() && !lb->is_null()) {
    if (!lb->is_object() || lb->size() > 1024) {
      return bad_type("logit_bias", "an object of at most 1024 token ids and biases", *lb);
    }
    for (const auto& [key, bias] : lb->items()) {
      const bool digits = !key.empty() && key.size() <= 10 &&
                          key.find_first_not_of("0123456789") == std::string::npos;
      if (!digits || std::stoll(key) > std::numeric_limits<int32_t>::max()) {
        return bad("logit_bias", "'logit_bias' keys must be token ids, got " + shown(key));
      }
      if (!bias.is_number() || !(bias.get<double>() >= -100 && bias.get<double>() <= 100)) {
        return bad("logit_bias",
                   "'logit_bias' values must be numbers in [-100, 100], got " + shown(bias));
      }
    }
    if (!lb->empty()) g["logit_bias"] = *lb;
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
            {"incomplete_details", status == "incomplete"  ? Json{{"reason", "max_output_tokens"}}
                                   : status == "cancelled" ? Json{{"reason", "cancelled"}}
                                                           : Json()},
            {"model", model},
            {"output", std::move(output)},
            {"parallel_tool_calls", false},
            {"tool_choice", "none"},
            {"tools", Json::array()},
            {"usage", nullptr}};
  if (status != "in_progress") {
    r["usage"] = {{"input_tokens", input_tokens},
                  {"input_tokens_details", {{"cached_tokens", cached_tokens}}},
                  {"output_tokens", output_tokens},
                  {"output_tokens_details", {{"reasoning_tokens", 0}}},
                  {"total_tokens", input_tokens + output_tokens}};
  }
  return r;
}

std::string finish_reason(std::string_view guest_reason) {
  return guest_reason == "length" ? "length" : "stop";
}

Json token_entry(const Json& event, const std::function<std::string(int32_t)>& piece) {
  auto entry = [&](int32_t id, double lp) {
    const std::string text = piece(id);
    Json bytes = Json::array();
    for (unsigned char c : text) bytes.push_back(int{c});
    return Json{{"token", text}, {"logprob", lp}, {"bytes", std::move(bytes)}};
  };
  Json e = entry(event.value("id", -1), event.value("logprob", 0.0));
  Json top = Json::array();
  if (auto t = event.find("top_logprobs"); t != event.end() && t->is_array()) {
    for (const Json& x : *t) top.push_back(entry(x.value("id", -1), x.value("logprob", 0.0)));
  }
  e["top_logprobs"] = std::move(top);
  return e;
}

Json Shaper::logprobs_of(const Json& entries, size_t offset) const {
  if (endpoint == Endpoint::CHAT) return {{"content", entries}, {"refusal", nullptr}};
  Json tokens = Json::array(), lps = Json::array(), tops = Json::array(), offs = Json::array();
  for (const Json& e : entries) {
    tokens.push_back(e["token"]);
    lps.push_back(e["logprob"]);
    Json top = Json::object();
    for (const Json& t : e["top_logprobs"]) top[t["token"].get<std::string>()] = t["logprob"];
    tops.push_back(std::move(top));
    offs.push_back(offset);
    offset += e["token"].get_ref<const std::string&>().size();
  }
  return {
      {"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offs}};
}

Json Shaper::chunk(const std::string& text, bool first, const Json& logprobs) const {
  Json choice = {{"index", 0}};
  if (endpoint == Endpoint::CHAT) {
    Json delta = Json::object();
    if (first) delta["role"] = "assistant";
    delta["content"] = text;
    choice["delta"] = std::move(delta);
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = logprobs;
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
                {"total_tokens", prompt_tokens + completion_tokens},
                {"prompt_tokens_details", {{"cached_tokens", cached_tokens}}}};
  return j;
}

Json Shaper::response(const std::string& text, const std::string& finish, int64_t prompt_tokens,
                      int64_t completion_tokens, const Json& logprobs) const {
  Json choice = {{"index", 0}};
  if (endpoint == Endpoint::CHAT) {
    choice["message"] = {{"role", "assistant"}, {"content", text}, {"refusal", nullptr}};
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = logprobs;
  choice["finish_reason"] = finish;
  return {{"id", id},
          {"object", endpoint == Endpoint::CHAT ? "chat.completion" : "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", Json::array({choice})},
          {"usage",
           {{"prompt_tokens", prompt_tokens},
            {"completion_tokens", completion_tokens},
            {"total_tokens", prompt_tokens + completion_tokens},
            {"prompt_tokens_details", {{"cached_tokens", cached_tokens}}}}}};
}

}  // namespace realm::server
