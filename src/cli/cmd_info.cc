// `realm info MODEL [--json]`: what a GGUF file holds.
#include <CLI/CLI.hpp>
#include <charconv>
#include <cstdio>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.h"
#include "cli/model_arg.h"
#include "gguf/reader.h"

namespace realm::cli {
namespace {

using gguf::GgufFile;
using gguf::Value;
using gguf::ValueType;
using nlohmann::ordered_json;

// Arrays longer than this are summarized (token lists, scores, merges) instead of printed.
constexpr uint64_t kMaxPrintedArray = 64;

// A FLOAT32 as the shortest decimal that reads back to the same float (1e-05, not 9.99e-06).
double float_for_json(const Value& v) {
  double d = *v.as_float();
  if (v.type() == ValueType::FLOAT32) {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, static_cast<float>(d));
    d = std::strtod(std::string(buf, r.ptr).c_str(), nullptr);
  }
  return d;
}

ordered_json value_to_json(const Value& v) {
  if (v.is_array()) {
    if (v.size() > kMaxPrintedArray) {
      return {{"type", "ARRAY"},
              {"element_type", std::string(gguf::value_type_name(v.elem_type()))},
              {"count", v.size()}};
    }
    ordered_json arr = ordered_json::array();
    for (uint64_t i = 0; i < v.size(); ++i) arr.push_back(value_to_json(v.element(i)));
    return arr;
  }
  if (auto s = v.as_string()) return std::string(*s);
  if (auto b = v.as_bool()) return *b;
  if (v.is_float()) return float_for_json(v);
  if (auto u = v.as_uint()) return *u;
  if (auto i = v.as_int()) return *i;
  return nullptr;
}

// A short human-readable rendering of a value for the text output.
std::string value_to_text(const Value& v) {
  if (v.is_array()) {
    return "[" + std::string(gguf::value_type_name(v.elem_type())) + " x " +
           std::to_string(v.size()) + "]";
  }
  if (auto s = v.as_string()) {
    std::string out(s->substr(0, 80));
    for (char& c : out) {
      if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    }
    return "\"" + out + (s->size() > 80 ? "...\"" : "\"");
  }
  return value_to_json(v).dump();
}

ordered_json build_json(const std::string& path, const GgufFile& f) {
  std::string arch(f.architecture());
  ordered_json j;
  j["file"] = path;
  j["file_size"] = f.file_size();
  j["gguf_version"] = f.version();
  j["alignment"] = f.alignment();
  j["data_offset"] = f.data_offset();
  j["architecture"] = arch;
  j["name"] = std::string(f.get_string("general.name").value_or(""));
  j["n_tensors"] = f.tensors().size();

  std::map<std::string, uint64_t> counts, bytes;
  uint64_t n_params = 0, tensor_bytes = 0;
  for (const auto& t : f.tensors()) {
    std::string name(gguf::type_name(t.type));
    counts[name] += 1;
    bytes[name] += t.n_bytes;
    n_params += t.n_elements;
    tensor_bytes += t.n_bytes;
  }
  j["n_params"] = n_params;
  j["tensor_bytes"] = tensor_bytes;
  j["tensor_type_counts"] = counts;
  j["tensor_type_bytes"] = bytes;

  ordered_json hp = ordered_json::object();
  for (const char* k :
       {"context_length", "embedding_length", "block_count", "feed_forward_length",
        "attention.head_count", "attention.head_count_kv", "attention.key_length",
        "attention.value_length", "attention.layer_norm_rms_epsilon", "rope.dimension_count",
        "rope.freq_base", "rope.scaling.type", "rope.scaling.factor", "vocab_size"}) {
    if (const Value* v = f.find(arch + "." + k)) hp[k] = value_to_json(*v);
  }
  j["hyperparameters"] = hp;

  ordered_json tok = ordered_json::object();
  if (auto m = f.get_string("tokenizer.ggml.model")) tok["model"] = std::string(*m);
  if (auto p = f.get_string("tokenizer.ggml.pre")) tok["pre"] = std::string(*p);
  if (const Value* t = f.find("tokenizer.ggml.tokens")) tok["n_tokens"] = t->size();
  if (const Value* m = f.find("tokenizer.ggml.merges")) tok["n_merges"] = m->size();
  for (const char* k : {"bos_token_id", "eos_token_id", "eot_token_id", "unknown_token_id",
                        "padding_token_id", "add_bos_token", "add_eos_token"}) {
    if (const Value* v = f.find(std::string("tokenizer.ggml.") + k)) tok[k] = value_to_json(*v);
  }
  tok["has_chat_template"] = f.find("tokenizer.chat_template") != nullptr;
  j["tokenizer"] = tok;

  ordered_json md = ordered_json::object();
  for (const auto& kv : f.metadata()) md[kv.key] = value_to_json(kv.value);
  j["metadata"] = md;
  return j;
}

std::string human_bytes(uint64_t n) {
  char buf[64];
  if (n >= (1ull << 30)) {
    std::snprintf(buf, sizeof buf, "%.2f GiB", n / double(1ull << 30));
  } else if (n >= (1ull << 20)) {
    std::snprintf(buf, sizeof buf, "%.2f MiB", n / double(1ull << 20));
  } else if (n >= 1024) {
    std::snprintf(buf, sizeof buf, "%.1f KiB", n / 1024.0);
  } else {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  }
  return buf;
}

void print_text(const ordered_json& j, const GgufFile& f) {
  std::cout << "file:          " << j["file"].get<std::string>() << " ("
            << human_bytes(f.file_size()) << ", GGUF v" << f.version() << ")\n";
  std::cout << "architecture:  " << j["architecture"].get<std::string>() << "\n";
  if (!j["name"].get<std::string>().empty()) {
    std::cout << "name:          " << j["name"].get<std::string>() << "\n";
  }
  std::cout << "parameters:    " << j["n_params"].get<uint64_t>() << "\n";
  std::cout << "tensors:       " << f.tensors().size() << " ("
            << human_bytes(j["tensor_bytes"].get<uint64_t>()) << ")\n";
  for (auto& [type, count] : j["tensor_type_counts"].items()) {
    std::cout << "  " << type << ": " << count.get<uint64_t>() << " tensors, "
              << human_bytes(j["tensor_type_bytes"][type].get<uint64_t>()) << "\n";
  }
  if (!j["hyperparameters"].empty()) {
    std::cout << "hyperparameters:\n";
    for (auto& [k, v] : j["hyperparameters"].items()) {
      std::cout << "  " << k << ": "
                << v.dump(-1, ' ', false, ordered_json::error_handler_t::replace) << "\n";
    }
  }
  std::cout << "tokenizer:\n";
  for (auto& [k, v] : j["tokenizer"].items()) {
    std::cout << "  " << k << ": " << v.dump(-1, ' ', false, ordered_json::error_handler_t::replace)
              << "\n";
  }
  std::cout << "metadata (" << f.metadata().size() << " keys):\n";
  for (const auto& kv : f.metadata()) {
    std::cout << "  " << kv.key << " = " << value_to_text(kv.value) << "\n";
  }
}

}  // namespace

void add_info_command(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("info", "Show what a GGUF model file holds");
  auto path = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  cmd->add_option("MODEL", *path, "GGUF file or pulled model name")->required();
  cmd->add_flag("--json", *json, "Print one JSON object");
  cmd->callback([path, json, &exit_code] {
    if (!resolve_model_arg(*path, exit_code)) return;
    auto f = GgufFile::open(*path);
    if (!f) {
      std::cerr << "realm: error: " << f.error().message << "\n";
      exit_code = 1;
      return;
    }
    ordered_json j = build_json(*path, *f);
    if (*json) {
      std::cout << j.dump(2, ' ', false, ordered_json::error_handler_t::replace) << "\n";
    } else {
      print_text(j, *f);
    }
    exit_code = 0;
  });
}

}  // namespace realm::cli
