// `realm pull SPEC [--revision R] [--quiet]`: downloads a GGUF model from the Hugging Face hub (or
// a mirror, HF_ENDPOINT; or an https:// URL) into the model store and prints its store name.
// SPEC: owner/repo[:QUANT] (default Q4_K_M), owner/repo/path/file.gguf, or a URL (docs/models.md).
#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "hub/spec.h"
#include "hub/store.h"

namespace realm::cli {

void add_pull_command(CLI::App& app, int& exit_code) {
  struct Args {
    std::string spec, revision;
    bool quiet = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("pull", "Download a GGUF model into the model store");
  cmd->add_option("SPEC", a->spec,
                  "owner/repo[:QUANT] (default Q4_K_M), owner/repo/FILE.gguf or URL")
      ->required();
  cmd->add_option("--revision", a->revision, "Branch, tag or commit of the repo (default main)");
  cmd->add_flag("-q,--quiet", a->quiet, "No progress output");
  cmd->callback([a, &exit_code] {
    if (auto spec = hub::parse_spec(a->spec, a->revision); !spec) {
      std::cerr << "realm: error: " << spec.error().message << "\n";
      exit_code = 2;
      return;
    }
    auto r = hub::pull(a->spec, {a->revision, a->quiet});
    if (!r) {
      std::cerr << "realm: error: " << r.error().message << "\n";
      exit_code = 1;
      return;
    }
    if (r->already && !a->quiet) {
      std::cerr << r->manifest.name << " is already pulled (" << r->manifest.entry_dir
                << "); nothing to do\n";
    }
    std::cout << r->manifest.name << "\n";
    exit_code = 0;
  });
}

}  // namespace realm::cli
