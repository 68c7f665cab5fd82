// The `realm` command.
#include <CLI/CLI.hpp>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"realm: multi-tenant LLM inference runtime"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "realm 0.1.0");
  int exit_code = 0;
#define REALM_COMMAND(name) realm::cli::add_##name##_command(app, exit_code);
#include "command_list.inc"
#undef REALM_COMMAND
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return exit_code;
}
