// `realm tokenize -m MODEL (-p TEXT | -f FILE) [--add-special] [--parse-special]`: prints one JSON
// array of token ids. Defaults match the ../shared/vocab vectors: no BOS/EOS added, special-token
// text not parsed.
#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>

#include "cli/commands.h"
#include "cli/model_arg.h"
#include "tokenizer/tokenizer.h"

namespace realm::cli {

void add_tokenize_command(CLI::App& app, int& exit_code) {
  struct Args {
    std::string model, prompt, file;
    bool add_special = false, parse_special = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("tokenize", "Print the token ids of a text as a JSON array");
  cmd->add_option("-m,--model", args->model, "GGUF model or vocab file, or pulled model name")
      ->required();
  auto* p = cmd->add_option("-p,--prompt", args->prompt, "Text to tokenize");
  auto* f = cmd->add_option("-f,--file", args->file, "File whose bytes are tokenized");
  p->excludes(f);
  cmd->add_flag("--add-special", args->add_special, "Add BOS/EOS as the model's metadata says");
  cmd->add_flag("--parse-special", args->parse_special,
                "Turn special-token text (e.g. <|im_end|>) into special tokens");
  cmd->callback([args, p, f, &exit_code] {
    if (!resolve_model_arg(args->model, exit_code)) return;
    if (p->count() == 0 && f->count() == 0) {
      std::cerr << "realm: error: tokenize needs -p TEXT or -f FILE\n";
      exit_code = 2;
      return;
    }
    std::string text = args->prompt;
    if (f->count() > 0) {
      std::ifstream in(args->file, std::ios::binary);
      if (!in) {
        std::cerr << "realm: error: cannot read " << args->file << "\n";
        exit_code = 1;
        return;
      }
      std::stringstream ss;
      ss << in.rdbuf();
      text = ss.str();
    }
    auto tok = tok::Tokenizer::load(args->model);
    if (!tok) {
      std::cerr << "realm: error: " << tok.error().message << "\n";
      exit_code = 1;
      return;
    }
    const auto ids = tok->encode(text, args->add_special, args->parse_special);
    std::string out = "[";
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) out += ", ";
      out += std::to_string(ids[i]);
    }
    out += "]\n";
    std::cout << out;
    exit_code = 0;
  });
}

}  // namespace realm::cli
