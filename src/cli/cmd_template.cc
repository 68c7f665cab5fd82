// `realm template -m MODEL -f MESSAGES.json [--no-generation-prompt]`: renders the model's chat
// template for a list of messages and prints the prompt exactly (no newline is added).
#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "cli/commands.h"
#include "cli/model_arg.h"
#include "gguf/reader.h"
#include "tokenizer/chat_template.h"

namespace realm::cli {
namespace {

struct TemplateOptions {
  std::string model;
  std::string messages_file;
  std::string template_name;
  std::string template_file;
  bool no_generation_prompt = false;
};

Expected<std::string> read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error("cannot open ", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return make_error("cannot read ", path);
  return ss.str();
}

Expected<std::string> run_template(const TemplateOptions& o) {
  auto file = gguf::GgufFile::open(o.model);
  if (!file) return file.take_error();
  auto tmpl = chat::chat_template_from_gguf(*file, o.template_name);
  if (!tmpl) return tmpl.take_error();
  if (!o.template_file.empty()) {
    auto src = read_text(o.template_file);
    if (!src) return src.take_error();
    tmpl->source = std::move(*src);
    tmpl->is_fallback = false;
  }
  auto text = read_text(o.messages_file);
  if (!text) return text.take_error();
  chat::ChatInputs inputs;
  auto messages = chat::messages_from_json_text(*text, &inputs.extra);
  if (!messages) return make_error(o.messages_file, ": ", messages.error().message);
  inputs.messages = std::move(*messages);
  inputs.add_generation_prompt = !o.no_generation_prompt;
  inputs.bos_token = tmpl->bos_token;
  inputs.eos_token = tmpl->eos_token;
  auto out = chat::render_chat(tmpl->source, inputs);
  if (!out) return make_error("chat template: ", out.error().message);
  return out;
}

}  // namespace

void add_template_command(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("template",
                                 "Render the model's chat template for a JSON list of messages");
  auto o = std::make_shared<TemplateOptions>();
  cmd->add_option("-m,--model", o->model, "GGUF file or pulled model name")->required();
  cmd->add_option("-f,--file", o->messages_file,
                  "JSON: [{\"role\":..,\"content\":..},..] or {\"messages\": [..], more variables}")
      ->required();
  cmd->add_flag("--no-generation-prompt", o->no_generation_prompt,
                "Render with add_generation_prompt = false");
  cmd->add_option("--template-name", o->template_name,
                  "Use tokenizer.chat_template.NAME (e.g. tool_use, rag)");
  cmd->add_option("--template-file", o->template_file,
                  "Use this Jinja file instead of the model's template (BOS/EOS still from MODEL)");
  cmd->callback([o, &exit_code] {
    if (!resolve_model_arg(o->model, exit_code)) return;
    auto out = run_template(*o);
    if (!out) {
      std::cerr << "realm: error: " << out.error().message << "\n";
      exit_code = 1;
      return;
    }
    std::cout << *out << std::flush;
    exit_code = 0;
  });
}

}  // namespace realm::cli
