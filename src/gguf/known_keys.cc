#include "gguf/known_keys.h"

#include <array>
#include <string>
#include <string_view>

#include "gguf/reader.h"

namespace realm::gguf {
namespace {

enum class Kind {
  STRING,
  BOOL,
  UINT,           // any integer type with a non-negative value
  FLOAT,          // FLOAT32 or FLOAT64
  UINT_OR_ARRAY,  // per-layer values may be arrays of integers (llama.cpp get_key_or_arr)
  STRING_ARRAY,
  FLOAT_ARRAY,
  INT_ARRAY,
};

struct KeyRule {
  std::string_view key;  // a leading '.' means "<general.architecture>" + key
  Kind kind;
};

constexpr std::array kRules = {
    KeyRule{"general.architecture", Kind::STRING},
    KeyRule{"general.name", Kind::STRING},
    KeyRule{"general.file_type", Kind::UINT},
    KeyRule{"general.quantization_version", Kind::UINT},
    KeyRule{".context_length", Kind::UINT},
    KeyRule{".embedding_length", Kind::UINT},
    KeyRule{".block_count", Kind::UINT},
    KeyRule{".feed_forward_length", Kind::UINT_OR_ARRAY},
    KeyRule{".vocab_size", Kind::UINT},
    KeyRule{".expert_count", Kind::UINT},
    KeyRule{".expert_used_count", Kind::UINT},
    KeyRule{".attention.head_count", Kind::UINT_OR_ARRAY},
    KeyRule{".attention.head_count_kv", Kind::UINT_OR_ARRAY},
    KeyRule{".attention.key_length", Kind::UINT},
    KeyRule{".attention.value_length", Kind::UINT},
    KeyRule{".attention.layer_norm_epsilon", Kind::FLOAT},
    KeyRule{".attention.layer_norm_rms_epsilon", Kind::FLOAT},
    KeyRule{".attention.sliding_window", Kind::UINT},
    KeyRule{".rope.dimension_count", Kind::UINT},
    KeyRule{".rope.freq_base", Kind::FLOAT},
    KeyRule{".rope.scaling.type", Kind::STRING},
    KeyRule{".rope.scaling.factor", Kind::FLOAT},
    KeyRule{".rope.scaling.original_context_length", Kind::UINT},
    KeyRule{"tokenizer.ggml.model", Kind::STRING},
    KeyRule{"tokenizer.ggml.pre", Kind::STRING},
    KeyRule{"tokenizer.ggml.tokens", Kind::STRING_ARRAY},
    KeyRule{"tokenizer.ggml.scores", Kind::FLOAT_ARRAY},
    KeyRule{"tokenizer.ggml.token_type", Kind::INT_ARRAY},
    KeyRule{"tokenizer.ggml.merges", Kind::STRING_ARRAY},
    KeyRule{"tokenizer.ggml.bos_token_id", Kind::UINT},
    KeyRule{"tokenizer.ggml.eos_token_id", Kind::UINT},
    KeyRule{"tokenizer.ggml.eot_token_id", Kind::UINT},
    KeyRule{"tokenizer.ggml.eom_token_id", Kind::UINT},
    KeyRule{"tokenizer.ggml.unknown_token_id", Kind::UINT},
    KeyRule{"tokenizer.ggml.seperator_token_id", Kind::UINT},
    KeyRule{"tokenizer.ggml.padding_token_id", Kind::UINT},
    KeyRule{"tokenizer.ggml.add_bos_token", Kind::BOOL},
    KeyRule{"tokenizer.ggml.add_eos_token", Kind::BOOL},
    KeyRule{"tokenizer.ggml.add_space_prefix", Kind::BOOL},
    KeyRule{"tokenizer.chat_template", Kind::STRING},
};

std::string_view kind_name(Kind k) {
  switch (k) {
    case Kind::STRING:
      return "STRING";
    case Kind::BOOL:
      return "BOOL";
    case Kind::UINT:
      return "a non-negative integer";
    case Kind::FLOAT:
      return "FLOAT32 or FLOAT64";
    case Kind::UINT_OR_ARRAY:
      return "a non-negative integer or an array of integers";
    case Kind::STRING_ARRAY:
      return "an array of STRING";
    case Kind::FLOAT_ARRAY:
      return "an array of FLOAT32";
    case Kind::INT_ARRAY:
      return "an array of integers";
  }
  return "?";
}

bool matches(const Value& v, Kind k) {
  switch (k) {
    case Kind::STRING:
      return v.is_string();
    case Kind::BOOL:
      return v.type() == ValueType::BOOL;
    case Kind::UINT:
      return v.as_uint().has_value();
    case Kind::FLOAT:
      return v.is_float();
    case Kind::UINT_OR_ARRAY:
      return v.as_uint().has_value() || (v.is_array() && value_type_is_integer(v.elem_type()));
    case Kind::STRING_ARRAY:
      return v.is_array() && v.elem_type() == ValueType::STRING;
    case Kind::FLOAT_ARRAY:
      return v.is_array() && v.elem_type() == ValueType::FLOAT32;
    case Kind::INT_ARRAY:
      return v.is_array() && value_type_is_integer(v.elem_type());
  }
  return false;
}

std::string describe_type(const Value& v) {
  std::string s(value_type_name(v.type()));
  if (v.is_array()) s += " of " + std::string(value_type_name(v.elem_type()));
  if (auto i = v.as_int()) s += " (value " + std::to_string(*i) + ")";
  return s;
}

}  // namespace

Status check_known_keys(const GgufFile& file) {
  const Value* arch_value = file.find("general.architecture");
  if (arch_value && !arch_value->is_string()) {
    return make_error("metadata key 'general.architecture' must be STRING, got ",
                      describe_type(*arch_value));
  }
  std::string arch(file.architecture());
  for (const auto& rule : kRules) {
    std::string key;
    if (rule.key.front() == '.') {
      if (arch.empty()) continue;
      key = arch + std::string(rule.key);
    } else {
      key = std::string(rule.key);
    }
    const Value* v = file.find(key);
    if (v && !matches(*v, rule.kind)) {
      return make_error("metadata key '", key, "' must be ", kind_name(rule.kind), ", got ",
                        describe_type(*v));
    }
  }
  // The per-token arrays describe the same vocabulary and must agree in length.
  const Value* tokens = file.find("tokenizer.ggml.tokens");
  for (std::string_view k : {"tokenizer.ggml.scores", "tokenizer.ggml.token_type"}) {
    const Value* v = file.find(k);
    if (tokens && v && v->size() != tokens->size()) {
      return make_error("metadata key '", k, "' has ", v->size(), " entries but ",
                        "tokenizer.ggml.tokens has ", tokens->size());
    }
  }
  return {};
}

}  // namespace realm::gguf
