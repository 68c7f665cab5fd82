// `realm keys create|list|revoke`: API keys in the store.
//   realm keys create --tenant T [--name LABEL]   a key of tenant T
//   realm keys create --admin [--name LABEL]      an admin key (for /admin/...)
//       The key alone is stdout's first line (KEY=$(realm keys create ...)); its id goes to
//       stderr. The key is shown only this once: the store keeps an HMAC of it.
//   realm keys list [--tenant T] [--json]         id, tenant, name, admin, created_at, revoked_at
//   realm keys revoke KEY_ID
// Every subcommand takes --db FILE and --secret-file FILE.
#include <CLI/CLI.hpp>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.h"
#include "cli/store_cli.h"

namespace realm::cli {

void add_keys_command(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("keys", "Create, list or revoke API keys");
  cmd->require_subcommand(1);

  struct CreateArgs {
    StoreArgs store;
    std::string tenant, name;
    bool admin = false;
  };
  auto create = std::make_shared<CreateArgs>();
  auto* c = cmd->add_subcommand("create", "Create a key (printed once, on stdout)");
  auto* o_tenant = c->add_option("--tenant", create->tenant, "The tenant the key acts as");
  auto* o_admin = c->add_flag("--admin", create->admin, "An admin key (no tenant)");
  o_tenant->excludes(o_admin);
  c->add_option("--name", create->name, "A label for the key");
  add_store_options(c, create->store);
  c->callback([create, &exit_code] {
    if (create->tenant.empty() && !create->admin) {
      return report_error("keys create wants --tenant T or --admin", exit_code, 2);
    }
#if REALM_HAVE_STORE
    auto store = open_store(create->store, exit_code);
    if (!store) return;
    auto k = store->create_key(create->admin ? "" : create->tenant, create->name, create->admin);
    if (!k) return report_error(k.error().message, exit_code);
    std::cout << k->second << std::endl;
    // The id first, so that scripts can take it with `cut -d' ' -f1`.
    std::cerr << k->first.id << " ("
              << (create->admin ? "admin key" : "key of tenant " + create->tenant)
              << "; the key is shown only now: the store keeps its hash)\n";
    exit_code = 0;
#else
    report_no_store(exit_code);
#endif
  });

  struct ListArgs {
    StoreArgs store;
    std::string tenant;
    bool json = false;
  };
  auto list = std::make_shared<ListArgs>();
  auto* l = cmd->add_subcommand("list", "List keys (never the keys themselves)");
  l->add_option("--tenant", list->tenant, "Only this tenant's keys");
  l->add_flag("--json", list->json, "Print one JSON array");
  add_store_options(l, list->store);
  l->callback([list, &exit_code] {
#if REALM_HAVE_STORE
    auto store = open_store(list->store, exit_code);
    if (!store) return;
    if (!list->tenant.empty()) {
      auto t = store->get_tenant(list->tenant);
      if (!t) return report_error(t.error().message, exit_code);
      if (!t->has_value()) return report_error("no tenant '" + list->tenant + "'", exit_code);
    }
    auto keys = store->list_keys(list->tenant);
    if (!keys) return report_error(keys.error().message, exit_code);
    if (list->json) {
      using nlohmann::ordered_json;
      ordered_json arr = ordered_json::array();
      for (const auto& k : *keys) arr.push_back(server::key_json(k));
      print_json(arr);
    } else if (keys->empty()) {
      std::cout << "no keys\n";
    } else {
      std::vector<std::vector<std::string>> rows = {
          {"ID", "TENANT", "NAME", "ADMIN", "CREATED_AT", "REVOKED_AT"}};
      for (const auto& k : *keys) {
        rows.push_back({k.id, k.tenant.empty() ? "-" : k.tenant, k.name.empty() ? "-" : k.name,
                        k.admin ? "yes" : "no", format_time(k.created_at),
                        format_time(k.revoked_at)});
      }
      print_table(rows);
    }
    exit_code = 0;
#else
    report_no_store(exit_code);
#endif
  });

  struct RevokeArgs {
    StoreArgs store;
    std::string id;
  };
  auto revoke = std::make_shared<RevokeArgs>();
  auto* r = cmd->add_subcommand("revoke", "Revoke a key");
  r->add_option("KEY_ID", revoke->id, "The key's id (key_...), as keys list shows")->required();
  add_store_options(r, revoke->store);
  r->callback([revoke, &exit_code] {
#if REALM_HAVE_STORE
    auto store = open_store(revoke->store, exit_code);
    if (!store) return;
    if (auto st = store->revoke_key(revoke->id); !st) {
      return report_error(st.error().message, exit_code);
    }
    std::cout << "revoked " << revoke->id << "\n";
    exit_code = 0;
#else
    report_no_store(exit_code);
#endif
  });
}

}  // namespace realm::cli
