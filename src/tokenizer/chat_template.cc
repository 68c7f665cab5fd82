// Chat templates from GGUF metadata, rendered with the Jinja interpreter.
#include "tokenizer/chat_template.h"

#include <nlohmann/json.hpp>

namespace realm::chat {

const char* const kChatmlTemplate =
    "{%- for message in messages -%}\n"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "{{- '<|im_start|>assistant\\n' -}}\n"
    "{%- endif -%}\n";

namespace {

std::string token_text(const gguf::GgufFile& file, const char* id_key) {
  auto id = file.get_uint(id_key);
  const gguf::Value* tokens = file.find("tokenizer.ggml.tokens");
  if (!id || !tokens || !tokens->is_array() || *id >= tokens->strings().size()) return "";
  return tokens->strings()[*id];
}

Expected<jinja::Value> from_json(const nlohmann::ordered_json& j, int depth) {
  if (depth > 512) return make_error("JSON nested deeper than 512 levels");
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return jinja::Value::none();
    case nlohmann::ordered_json::value_t::boolean:
      return jinja::Value::boolean(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return jinja::Value::integer(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return jinja::Value::number(static_cast<double>(u));
      return jinja::Value::integer(static_cast<int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return jinja::Value::number(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return jinja::Value::string(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      jinja::Array items;
      for (const auto& e : j) {
        auto v = from_json(e, depth + 1);
        if (!v) return v;
        items.push_back(std::move(*v));
      }
      return jinja::Value::array(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      jinja::Value obj = jinja::Value::object();
      for (const auto& [k, e] : j.items()) {
        auto v = from_json(e, depth + 1);
        if (!v) return v;
        obj.set(k, std::move(*v));
      }
      return obj;
    }
    default:
      return make_error("unsupported JSON value");
  }
}

}  // namespace

Expected<ModelChatTemplate> chat_template_from_gguf(const gguf::GgufFile& file,
                                                    std::string_view name) {
  ModelChatTemplate t;
  t.name = std::string(name);
  std::string key = "tokenizer.chat_template";
  if (!name.empty()) key += "." + std::string(name);
  if (auto src = file.get_string(key)) {
    t.source = std::string(*src);
  } else if (const gguf::Value* v = file.find(key)) {
    return make_error(key, " is not a string (", gguf::value_type_name(v->type()), ")");
  } else if (!name.empty()) {
    return make_error("the model has no chat template named '", name, "' (no key ", key, ")");
  } else {
    t.source = kChatmlTemplate;
    t.is_fallback = true;
  }
  t.bos_token = token_text(file, "tokenizer.ggml.bos_token_id");
  t.eos_token = token_text(file, "tokenizer.ggml.eos_token_id");
  return t;
}

Expected<std::string> render_chat(std::string_view source, const ChatInputs& inputs,
                                  const jinja::Limits& limits) {
  auto tmpl = jinja::Template::parse(source, limits);
  if (!tmpl) return tmpl.take_error();
  jinja::Value ctx = jinja::Value::object();
  if (inputs.extra.is_object()) {
    for (const auto& [k, v] : inputs.extra.as_object().items) ctx.set(k, v);
  }
  ctx.set("messages", inputs.messages.is_undefined() ? jinja::Value::array({}) : inputs.messages);
  ctx.set("add_generation_prompt", jinja::Value::boolean(inputs.add_generation_prompt));
  ctx.set("bos_token", jinja::Value::string(inputs.bos_token));
  ctx.set("eos_token", jinja::Value::string(inputs.eos_token));
  return tmpl->render(ctx, limits);
}

Expected<jinja::Value> value_from_json_text(std::string_view json_text) {
  auto j = nlohmann::ordered_json::parse(json_text.begin(), json_text.end(), nullptr,
                                         /*allow_exceptions=*/false);
  if (j.is_discarded()) return make_error("invalid JSON");
  return from_json(j, 0);
}

Expected<jinja::Value> messages_from_json_text(std::string_view json_text, jinja::Value* extra) {
  auto doc = value_from_json_text(json_text);
  if (!doc) return doc;
  jinja::Value messages = *doc;
  if (extra) *extra = jinja::Value::object();
  if (doc->is_object()) {
    const jinja::Value* m = doc->get("messages");
    if (!m) return make_error("messages JSON: the object has no \"messages\" key");
    messages = *m;
    if (extra) {
      for (const auto& [k, v] : doc->as_object().items) {
        if (k != "messages") extra->set(k, v);
      }
    }
  }
  if (!messages.is_array()) return make_error("messages JSON: expected an array of messages");
  const jinja::Array& list = messages.as_array();
  for (size_t i = 0; i < list.size(); ++i) {
    if (!list[i].is_object()) return make_error("messages JSON: message ", i, " is not an object");
    const jinja::Value* role = list[i].get("role");
    if (!role || !role->is_string()) {
      return make_error("messages JSON: message ", i, " has no string \"role\"");
    }
  }
  return messages;
}

}  // namespace realm::chat
