// `realm models list [--json]`, `realm models show NAME [--json]`, `realm models rm NAME`: the
// models pulled into the store ($REALM_HOME/models, docs/models.md).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.h"
#include "gguf/reader.h"
#include "gguf/types.h"
#include "hub/progress.h"
#include "hub/store.h"

namespace realm::cli {
namespace {

using nlohmann::ordered_json;

// The manifest (hub::manifest_json) with where the entry is and its size.
ordered_json manifest_to_json(const hub::Manifest& m) {
  ordered_json j = hub::manifest_json(m);
  j.erase("realm_manifest");
  j["path"] = m.entry_dir + "/" + m.files.front().name;
  j["dir"] = m.entry_dir;
  j["size"] = m.total_size();
  return j;
}

std::string source_text(const hub::Manifest& m) {
  if (m.source_kind == "url") return m.url;
  return m.endpoint + " " + m.repo + "@" + m.revision;
}

// What the GGUF file(s) hold: architecture, name, tensor types by bytes, parameters.
Expected<ordered_json> gguf_summary(const hub::Manifest& m) {
  ordered_json j;
  uint64_t n_tensors = 0, n_params = 0;
  std::map<std::string, uint64_t> bytes_by_type;
  for (size_t i = 0; i < m.files.size(); ++i) {
    auto f = gguf::GgufFile::open(m.entry_dir + "/" + m.files[i].name);
    if (!f) return f.take_error();
    if (i == 0) {
      j["architecture"] = std::string(f->architecture());
      j["model_name"] = std::string(f->get_string("general.name").value_or(""));
      std::string arch(f->architecture());
      if (auto ctx = f->get_uint(arch + ".context_length")) j["context_length"] = *ctx;
      if (auto n = f->get_uint(arch + ".block_count")) j["n_layer"] = *n;
      if (auto n = f->get_uint(arch + ".embedding_length")) j["n_embd"] = *n;
      j["gguf_version"] = f->version();
    }
    for (const auto& t : f->tensors()) {
      ++n_tensors;
      n_params += t.n_elements;
      bytes_by_type[std::string(gguf::type_name(t.type))] += t.n_bytes;
    }
  }
  j["n_tensors"] = n_tensors;
  j["n_params"] = n_params;
  // The quant type: the type holding the most tensor bytes.
  std::string quant;
  uint64_t most = 0;
  ordered_json types = ordered_json::object();
  for (const auto& [t, b] : bytes_by_type) {
    types[t] = b;
    if (b > most) {
      most = b;
      quant = t;
    }
  }
  j["quant"] = quant;
  j["tensor_bytes_by_type"] = types;
  return j;
}

void print_list(bool json, int& exit_code) {
  auto list = hub::list_models();
  if (!list) {
    std::cerr << "realm: error: " << list.error().message << "\n";
    exit_code = 1;
    return;
  }
  if (json) {
    ordered_json arr = ordered_json::array();
    for (const auto& m : *list) arr.push_back(manifest_to_json(m));
    std::cout << arr.dump(2) << "\n";
    exit_code = 0;
    return;
  }
  if (list->empty()) {
    std::cout << "no models in " << hub::models_dir() << " (realm pull SPEC adds one)\n";
    exit_code = 0;
    return;
  }
  size_t w = 4;
  for (const auto& m : *list) w = std::max(w, m.name.size());
  std::printf("%-*s  %10s  %5s  %-20s  %s\n", static_cast<int>(w), "NAME", "SIZE", "FILES",
              "PULLED", "SOURCE");
  for (const auto& m : *list) {
    std::printf("%-*s  %10s  %5zu  %-20s  %s\n", static_cast<int>(w), m.name.c_str(),
                hub::format_bytes(m.total_size()).c_str(), m.files.size(), m.pulled_at.c_str(),
                source_text(m).c_str());
  }
  exit_code = 0;
}

void print_show(const std::string& name, bool json, int& exit_code) {
  auto m = hub::find_model(name);
  if (!m) {
    std::cerr << "realm: error: " << m.error().message << "\n";
    exit_code = 1;
    return;
  }
  auto g = gguf_summary(*m);
  if (!g) {
    std::cerr << "realm: error: " << m->name << ": " << g.error().message << "\n";
    exit_code = 1;
    return;
  }
  if (json) {
    ordered_json j = manifest_to_json(*m);
    j["gguf"] = *g;
    std::cout << j.dump(2) << "\n";
    exit_code = 0;
    return;
  }
  const ordered_json& s = *g;
  std::cout << "name:         " << m->name << "\n";
  std::cout << "spec:         " << m->spec << "\n";
  std::cout << "source:       " << source_text(*m) << "\n";
  std::cout << "pulled at:    " << m->pulled_at << "\n";
  std::cout << "path:         " << m->entry_dir << "/" << m->files.front().name << "\n";
  std::cout << "size:         " << hub::format_bytes(m->total_size()) << " (" << m->total_size()
            << " bytes)\n";
  std::cout << "files:\n";
  for (const auto& f : m->files) {
    std::cout << "  " << f.name << "  " << f.size << " bytes  sha256 " << f.sha256 << "\n";
  }
  std::cout << "architecture: " << s["architecture"].get<std::string>() << "\n";
  if (!s["model_name"].get<std::string>().empty()) {
    std::cout << "model name:   " << s["model_name"].get<std::string>() << "\n";
  }
  std::cout << "quant:        " << s["quant"].get<std::string>() << " (tensor bytes by type:";
  for (const auto& [t, b] : s["tensor_bytes_by_type"].items()) {
    std::cout << " " << t << " " << b.get<uint64_t>();
  }
  std::cout << ")\n";
  std::cout << "parameters:   " << s["n_params"].get<uint64_t>() << " in "
            << s["n_tensors"].get<uint64_t>() << " tensors\n";
  const std::pair<const char*, const char*> shape[] = {
      {"n_layer", "layers:"}, {"n_embd", "embedding:"}, {"context_length", "context:"}};
  for (const auto& [k, label] : shape) {
    if (s.contains(k)) {
      std::printf("%-14s%llu\n", label, static_cast<unsigned long long>(s[k].get<uint64_t>()));
    }
  }
  exit_code = 0;
}

}  // namespace

void add_models_command(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("models", "The models pulled into the store ($REALM_HOME/models)");
  cmd->require_subcommand(1);
  auto json = std::make_shared<bool>(false);
  auto name = std::make_shared<std::string>();

  auto* list = cmd->add_subcommand("list", "List the pulled models");
  list->add_flag("--json", *json, "Print a JSON array");
  list->callback([json, &exit_code] { print_list(*json, exit_code); });

  auto* show = cmd->add_subcommand("show", "Show a pulled model: manifest and GGUF summary");
  show->add_option("NAME", *name, "Store name (as realm models list prints it)")->required();
  show->add_flag("--json", *json, "Print one JSON object");
  show->callback([name, json, &exit_code] { print_show(*name, *json, exit_code); });

  auto* rm = cmd->add_subcommand("rm", "Delete a pulled model from the store");
  rm->add_option("NAME", *name, "Store name")->required();
  rm->callback([name, &exit_code] {
    auto m = hub::find_model(*name);
    if (!m) {
      std::cerr << "realm: error: " << m.error().message << "\n";
      exit_code = 1;
      return;
    }
    if (auto st = hub::remove_model(m->name); !st) {
      std::cerr << "realm: error: " << st.error().message << "\n";
      exit_code = 1;
      return;
    }
    std::cout << "removed " << m->name << "\n";
    exit_code = 0;
  });
}

}  // namespace realm::cli
