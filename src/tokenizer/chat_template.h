// Chat templates: render a model's tokenizer.chat_template (Jinja2) for a list of messages, with
// the Hugging Face variables (messages, add_generation_prompt, bos_token, eos_token, ...).
#pragma once

#include <string>
#include <string_view>

#include "gguf/reader.h"
#include "tokenizer/jinja.h"
#include "util/expected.h"

namespace realm::chat {

// The template used when a model carries none: ChatML, as llama.cpp falls back to.
extern const char* const kChatmlTemplate;

// A model's chat template and the texts of its BOS/EOS tokens.
struct ModelChatTemplate {
  std::string source;        // Jinja2 source
  std::string name;          // "" for tokenizer.chat_template, else the suffix (e.g. "tool_use")
  bool is_fallback = false;  // true when the model has no template and kChatmlTemplate is used
  std::string bos_token;     // text of tokenizer.ggml.bos_token_id ("" when absent)
  std::string eos_token;     // text of tokenizer.ggml.eos_token_id ("" when absent)
};

// Reads tokenizer.chat_template (or tokenizer.chat_template.<name> when name is not empty) and
// the BOS/EOS token texts from the tokenizer.ggml.tokens array. A named template that is absent
// is an error; an absent default template gives the ChatML fallback.
Expected<ModelChatTemplate> chat_template_from_gguf(const gguf::GgufFile& file,
                                                    std::string_view name = "");

struct ChatInputs {
  jinja::Value messages;  // array of {role, content, ...} objects
  bool add_generation_prompt = true;
  std::string bos_token;
  std::string eos_token;
  jinja::Value extra;  // object of more variables (tools, documents, ...), or undefined
};

// Renders `source` with the inputs. Errors (parse errors, raise_exception, limits) carry the
// template line and column.
Expected<std::string> render_chat(std::string_view source, const ChatInputs& inputs,
                                  const jinja::Limits& limits = {});

// JSON text to a template value (objects keep their key order).
Expected<jinja::Value> value_from_json_text(std::string_view json_text);

// Parses a messages file: a JSON array of {role, content} objects, or an object whose "messages"
// key holds that array; the object's other keys are returned in *extra as template variables.
Expected<jinja::Value> messages_from_json_text(std::string_view json_text, jinja::Value* extra);

}  // namespace realm::chat
