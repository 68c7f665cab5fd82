// Subcommands of the `realm` CLI. Each add_*_command registers one subcommand on the app; the
// callback it installs returns the process exit code through `exit_code` (0 ok, 1 error, 2 usage).
#pragma once

namespace CLI {
class App;
}

namespace realm::cli {

void add_info_command(CLI::App& app, int& exit_code);

}  // namespace realm::cli
