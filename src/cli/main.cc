// The `realm` command.
#include <CLI/CLI.hpp>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"realm: multi-tenant LLM inference runtime"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "realm 0.1.0");
  int exit_code = 0;
  realm::cli::add_info_command(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return exit_code;
}
