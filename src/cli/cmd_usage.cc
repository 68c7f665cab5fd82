// `realm usage [--tenant T] [--since DATE] [--json]`: requests and tokens per tenant and model,
// from the store's usage rows. DATE: YYYY-MM-DD (UTC midnight), YYYY-MM-DDTHH:MM:SSZ, Unix
// seconds, or a time back from now: 30m, 24h, 7d (also s and w); server::parse_since reads it.
// Without --since: every row. --json prints server::usage_json, the object GET /admin/usage
// returns: {since, since_ms, tenant, rows, total}.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/store_cli.h"

namespace realm::cli {

void add_usage_command(CLI::App& app, int& exit_code) {
  struct Args {
    StoreArgs store;
    std::string tenant, since;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("usage", "Requests and tokens per tenant and model");
  auto* o_since = cmd->add_option(
      "--since", a->since,
      "From this time: YYYY-MM-DD (UTC), YYYY-MM-DDTHH:MM:SSZ, Unix seconds, or 30m/24h/7d");
  cmd->add_option("--tenant", a->tenant, "Only this tenant");
  cmd->add_flag("--json", a->json, "Print one JSON object");
  add_store_options(cmd, a->store);
  cmd->callback([a, o_since, &exit_code] {
#if REALM_HAVE_STORE
    std::optional<int64_t> since_ms;  // nullopt: every row
    if (o_since->count() > 0) {
      auto s = server::parse_since(a->since);
      if (!s) return report_error("--since: " + s.error().message, exit_code, 2);
      since_ms = *s;
    }
    auto store = open_store(a->store, exit_code);
    if (!store) return;
    auto rows = store->usage_summary(a->tenant, since_ms.value_or(0));
    if (!rows) return report_error(rows.error().message, exit_code);
    const nlohmann::ordered_json j = server::usage_json(*rows, a->tenant, since_ms);
    if (a->json) {
      print_json(j);
    } else {
      // The table shows the JSON's numbers, so that the two never disagree.
      std::cout << "usage " << (since_ms ? "since " + j["since"].get<std::string>() : "of all time")
                << (a->tenant.empty() ? "" : ", tenant " + a->tenant) << "\n";
      auto line = [](const std::string& tenant, const std::string& model,
                     const nlohmann::ordered_json& u) {
        std::vector<std::string> cells = {tenant, model};
        for (const char* k :
             {"requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens"}) {
          cells.push_back(std::to_string(u[k].get<int64_t>()));
        }
        return cells;
      };
      std::vector<std::vector<std::string>> table = {
          {"TENANT", "MODEL", "REQUESTS", "ERRORS", "PROMPT", "COMPLETION", "CACHED"}};
      for (const auto& r : j["rows"]) {
        table.push_back(line(r["tenant"].get<std::string>(), r["model"].get<std::string>(), r));
      }
      table.push_back(line("total", "", j["total"]));
      print_table(table, {2, 3, 4, 5, 6});
    }
    exit_code = 0;
#else
    (void)a;
    (void)o_since;
    report_no_store(exit_code);
#endif
  });
}

}  // namespace realm::cli
