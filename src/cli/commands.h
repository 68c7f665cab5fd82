// Subcommands of the `realm` CLI. Each cmd_<name>.cc defines add_<name>_command, which registers
// one subcommand on the app; its callback sets `exit_code` (0 ok, 1 error, 2 usage). The build
// generates command_list.inc (one REALM_COMMAND(name) per cmd_*.cc file).
#pragma once

#include <algorithm>
#include <thread>

namespace CLI {
class App;
}

namespace realm::cli {

#define REALM_COMMAND(name) void add_##name##_command(CLI::App& app, int& exit_code);
#include "command_list.inc"
#undef REALM_COMMAND

// The -t/--threads value: as given when positive, else every core.
// The largest -t any command accepts.
inline constexpr int kMaxThreads = 512;

// -t N: N threads, 0 (the default) every core.
inline int resolve_threads(int requested) {
  return requested > 0 ? requested
                       : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace realm::cli
