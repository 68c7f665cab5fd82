// `realm detokenize -m MODEL [--special] [--stream] ID...`: prints the text of token ids
// (llama_detokenize semantics: SPM's leading space removed, control tokens silent unless
// --special).
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/model_arg.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"

namespace realm::cli {

void add_detokenize_command(CLI::App& app, int& exit_code) {
  struct Args {
    std::string model;
    std::vector<std::string> ids;
    bool special = false;
    bool stream = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("detokenize", "Print the text of token ids");
  cmd->add_option("-m,--model", args->model, "GGUF model or vocab file, or pulled model name")
      ->required();
  cmd->add_option("IDS", args->ids, "Token ids (also accepted as one JSON array)")->required();
  cmd->add_flag("--special", args->special, "Render control tokens such as </s>");
  cmd->add_flag("--stream", args->stream,
                "Decode one token at a time with the streaming decoder (no clean-up pass)");
  cmd->callback([args, &exit_code] {
    if (!resolve_model_arg(args->model, exit_code)) return;
    auto tok = tok::Tokenizer::load(args->model);
    if (!tok) {
      std::cerr << "realm: error: " << tok.error().message << "\n";
      exit_code = 1;
      return;
    }
    // Ids may come as separate arguments or as `[1, 2, 3]` (the output of `realm tokenize`).
    std::string joined;
    for (const std::string& a : args->ids) joined += a + " ";
    for (char& c : joined) {
      if (c == '[' || c == ']' || c == ',') c = ' ';
    }
    std::vector<tok::TokenId> ids;
    std::istringstream in(joined);
    for (std::string word; in >> word;) {
      char* end = nullptr;
      const long long id = std::strtoll(word.c_str(), &end, 10);
      if (*end != '\0') {
        std::cerr << "realm: error: '" << word << "' is not a token id\n";
        exit_code = 1;
        return;
      }
      if (id < 0 || static_cast<size_t>(id) >= tok->vocab().size()) {
        std::cerr << "realm: error: token id " << id << " is out of range (vocab has "
                  << tok->vocab().size() << " tokens)\n";
        exit_code = 1;
        return;
      }
      ids.push_back(static_cast<tok::TokenId>(id));
    }
    std::string text;
    if (args->stream) {
      tok::StreamDecoder dec(tok->vocab(),
                             {.remove_leading_space = -1, .render_special = args->special});
      for (tok::TokenId id : ids) text += dec.push(id);
      text += dec.flush();
    } else {
      text = tok->detokenize(ids, /*remove_special=*/false, /*unparse_special=*/args->special);
    }
    std::cout << text << "\n";
    exit_code = 0;
  });
}

}  // namespace realm::cli
