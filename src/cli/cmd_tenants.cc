// `realm tenants create|update|show|list|delete`: the tenants in the store (docs/server.md).
//   realm tenants create T [--guest FILE.wasm] [--models a,b] [--rpm N] [--tpm N]
//                          [--concurrency N] [--daily-tokens N] [--memory-mb N] [--weight W]
//                          [--json]
//   realm tenants update T [the same options; only those given change]
//   realm tenants show T [--json]
//   realm tenants list [--json]
//   realm tenants delete T          (its keys are revoked; its usage rows stay)
// Every subcommand takes --db FILE and --secret-file FILE.
#include <CLI/CLI.hpp>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/store_cli.h"

namespace realm::cli {
namespace {

using nlohmann::ordered_json;

// The options of create and update; an option's CLI::Option counts whether it was given.
struct TenantArgs {
  StoreArgs store;
  std::string id;
  std::string guest, models;
  int64_t rpm = 0, tpm = 0, daily_tokens = 0, memory_mb = 0;
  int32_t concurrency = 0;
  double weight = 0;
  bool json = false;
  CLI::Option *o_guest = nullptr, *o_models = nullptr, *o_rpm = nullptr, *o_tpm = nullptr,
              *o_daily = nullptr, *o_memory = nullptr, *o_concurrency = nullptr,
              *o_weight = nullptr;
};

void add_config_options(CLI::App* cmd, TenantArgs& a) {
  a.o_guest =
      cmd->add_option("--guest", a.guest, "Guest module (.wasm) of the tenant ('': default)");
  a.o_models = cmd->add_option("--models", a.models,
                               "Allowed models, comma-separated ('' or '*': every one)");
  a.o_rpm = cmd->add_option("--rpm", a.rpm, "Requests per minute (0: unlimited)");
  a.o_tpm = cmd->add_option("--tpm", a.tpm, "Tokens per minute (0: unlimited)");
  a.o_concurrency =
      cmd->add_option("--concurrency", a.concurrency, "Requests running at once (default 4)");
  a.o_daily =
      cmd->add_option("--daily-tokens", a.daily_tokens, "Tokens per UTC day (0: unlimited)");
  a.o_memory =
      cmd->add_option("--memory-mb", a.memory_mb, "Guest memory cap in MiB, 1..4096 (default 64)");
  a.o_weight = cmd->add_option("--weight", a.weight, "Scheduling weight, > 0 (default 1)");
  cmd->add_flag("--json", a.json, "Print the tenant as JSON");
}

#if REALM_HAVE_STORE
// The shortest decimal that reads back to `v` (1.5, not 1.500000).
std::string format_double(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

// "--models a,b": the names; "" or "*": every model (an empty list).
Expected<std::vector<std::string>> parse_models(const std::string& text) {
  std::vector<std::string> out;
  if (text.empty() || text == "*") return out;
  size_t pos = 0;
  for (;;) {
    const size_t comma = text.find(',', pos);
    std::string name =
        text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    const size_t b = name.find_first_not_of(" \t");
    const size_t e = name.find_last_not_of(" \t");
    name = b == std::string::npos ? "" : name.substr(b, e - b + 1);
    if (name.empty()) {
      return make_error("--models: empty model name in '", text,
                        "' (want a,b; '' or '*' for every model)");
    }
    if (name == "*") return make_error("--models: '*' means every model; give it alone");
    if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

// "--guest FILE": the file's absolute path after checking that it reads as a wasm module; "": the
// default guest.
Expected<std::string> check_guest(const std::string& path) {
  if (path.empty()) return std::string();
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return make_error("--guest ", path, ": is a folder, not a .wasm file");
  }
  std::ifstream f(path, std::ios::binary);
  char magic[4] = {};
  if (!f) return make_error(ErrorCode::NOT_FOUND, "--guest ", path, ": cannot read the file");
  if (!f.read(magic, 4) || std::string_view(magic, 4) != std::string_view("\0asm", 4)) {
    return make_error("--guest ", path, ": not a wasm module (no \\0asm header)");
  }
  auto abs = std::filesystem::absolute(path, ec);
  return ec ? path : abs.lexically_normal().string();
}

// Copies the options that were given onto `t`. Usage errors (a malformed --models) exit 2.
Status apply_options(const TenantArgs& a, server::TenantConfig& t, int& usage_status) {
  usage_status = 1;
  if (a.o_models->count()) {
    auto m = parse_models(a.models);
    if (!m) {
      usage_status = 2;
      return m.take_error();
    }
    t.models = std::move(*m);
  }
  if (a.o_guest->count()) {
    auto g = check_guest(a.guest);
    if (!g) return g.take_error();
    t.guest = std::move(*g);
  }
  if (a.o_rpm->count()) t.rpm = a.rpm;
  if (a.o_tpm->count()) t.tpm = a.tpm;
  if (a.o_daily->count()) t.daily_tokens = a.daily_tokens;
  if (a.o_memory->count()) t.memory_mb = a.memory_mb;
  if (a.o_concurrency->count()) t.concurrency = a.concurrency;
  if (a.o_weight->count()) t.weight = a.weight;
  return {};
}

std::string models_text(const server::TenantConfig& t) {
  if (t.models.empty()) return "*";
  std::string out;
  for (const std::string& m : t.models) out += (out.empty() ? "" : ",") + m;
  return out;
}

std::string limit_text(int64_t v) {
  return v == 0 ? "unlimited" : std::to_string(v);
}

void print_tenant(const server::TenantConfig& t) {
  print_table({
      {"id:", t.id},
      {"models:", t.models.empty() ? "* (every model)" : models_text(t)},
      {"guest:", t.guest.empty() ? "(default)" : t.guest},
      {"rpm:", limit_text(t.rpm)},
      {"tpm:", limit_text(t.tpm)},
      {"concurrency:", std::to_string(t.concurrency)},
      {"daily_tokens:", limit_text(t.daily_tokens)},
      {"memory_mb:", std::to_string(t.memory_mb)},
      {"weight:", format_double(t.weight)},
      {"created_at:", format_time(t.created_at)},
      {"updated_at:", format_time(t.updated_at)},
  });
}

void print_tenant_list(const std::vector<server::TenantConfig>& tenants) {
  if (tenants.empty()) {
    std::cout << "no tenants\n";
    return;
  }
  std::vector<std::vector<std::string>> rows = {{"ID", "MODELS", "RPM", "TPM", "CONCURRENCY",
                                                 "DAILY_TOKENS", "MEMORY_MB", "WEIGHT", "GUEST"}};
  for (const auto& t : tenants) {
    rows.push_back({t.id, models_text(t), limit_text(t.rpm), limit_text(t.tpm),
                    std::to_string(t.concurrency), limit_text(t.daily_tokens),
                    std::to_string(t.memory_mb), format_double(t.weight),
                    t.guest.empty() ? "(default)" : t.guest});
  }
  print_table(rows, {2, 3, 4, 5, 6, 7});
}

// create (update == false) or update.
void run_write(const TenantArgs& a, bool update, int& exit_code) {
  auto store = open_store(a.store, exit_code);
  if (!store) return;
  server::TenantConfig t;
  t.id = a.id;
  if (update) {
    auto got = store->get_tenant(a.id);
    if (!got) return report_error(got.error().message, exit_code);
    if (!got->has_value()) return report_error("no tenant '" + a.id + "'", exit_code);
    t = **got;
  }
  int usage_status = 1;
  if (auto st = apply_options(a, t, usage_status); !st) {
    return report_error(st.error().message, exit_code, usage_status);
  }
  Status st = update ? store->update_tenant(t) : store->create_tenant(t);
  if (!st) return report_error(st.error().message, exit_code);
  auto got = store->get_tenant(a.id);
  if (!got || !got->has_value()) {
    return report_error(got ? "tenant '" + a.id + "' vanished" : got.error().message, exit_code);
  }
  if (a.json) {
    print_json(server::tenant_json(**got));
  } else {
    std::cout << (update ? "updated" : "created") << " tenant " << a.id << "\n";
  }
  exit_code = 0;
}
#endif

}  // namespace

void add_tenants_command(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("tenants", "Create, change, show, list or delete tenants");
  cmd->require_subcommand(1);

  auto create = std::make_shared<TenantArgs>();
  auto* c = cmd->add_subcommand("create", "Create a tenant");
  c->add_option("TENANT", create->id, "Tenant id ([A-Za-z0-9_.-], 1 to 64)")->required();
  add_config_options(c, *create);
  add_store_options(c, create->store);
  c->callback([create, &exit_code] {
#if REALM_HAVE_STORE
    run_write(*create, /*update=*/false, exit_code);
#else
    report_no_store(exit_code);
#endif
  });

  auto update = std::make_shared<TenantArgs>();
  auto* u = cmd->add_subcommand("update", "Change a tenant (only the options given)");
  u->add_option("TENANT", update->id, "Tenant id")->required();
  add_config_options(u, *update);
  add_store_options(u, update->store);
  u->callback([update, &exit_code] {
#if REALM_HAVE_STORE
    run_write(*update, /*update=*/true, exit_code);
#else
    report_no_store(exit_code);
#endif
  });

  struct ShowArgs {
    StoreArgs store;
    std::string id;
    bool json = false;
  };
  auto show = std::make_shared<ShowArgs>();
  auto* s = cmd->add_subcommand("show", "Show a tenant");
  s->add_option("TENANT", show->id, "Tenant id")->required();
  s->add_flag("--json", show->json, "Print one JSON object");
  add_store_options(s, show->store);
  s->callback([show, &exit_code] {
#if REALM_HAVE_STORE
    auto store = open_store(show->store, exit_code);
    if (!store) return;
    auto t = store->get_tenant(show->id);
    if (!t) return report_error(t.error().message, exit_code);
    if (!t->has_value()) return report_error("no tenant '" + show->id + "'", exit_code);
    if (show->json) {
      print_json(server::tenant_json(**t));
    } else {
      print_tenant(**t);
    }
    exit_code = 0;
#else
    report_no_store(exit_code);
#endif
  });

  auto list = std::make_shared<ShowArgs>();
  auto* l = cmd->add_subcommand("list", "List the tenants");
  l->add_flag("--json", list->json, "Print one JSON array");
  add_store_options(l, list->store);
  l->callback([list, &exit_code] {
#if REALM_HAVE_STORE
    auto store = open_store(list->store, exit_code);
    if (!store) return;
    auto tenants = store->list_tenants();
    if (!tenants) return report_error(tenants.error().message, exit_code);
    if (list->json) {
      ordered_json arr = ordered_json::array();
      for (const auto& t : *tenants) arr.push_back(server::tenant_json(t));
      print_json(arr);
    } else {
      print_tenant_list(*tenants);
    }
    exit_code = 0;
#else
    report_no_store(exit_code);
#endif
  });

  auto del = std::make_shared<ShowArgs>();
  auto* d = cmd->add_subcommand("delete", "Delete a tenant and revoke its keys (usage stays)");
  d->add_option("TENANT", del->id, "Tenant id")->required();
  add_store_options(d, del->store);
  d->callback([del, &exit_code] {
#if REALM_HAVE_STORE
    auto store = open_store(del->store, exit_code);
    if (!store) return;
    auto keys = store->list_keys(del->id);
    if (!keys) return report_error(keys.error().message, exit_code);
    size_t active = 0;
    for (const auto& k : *keys) active += k.revoked_at == 0;
    if (auto st = store->delete_tenant(del->id); !st) {
      return report_error(st.error().message, exit_code);
    }
    std::cout << "deleted tenant " << del->id << " (" << active << " active key"
              << (active == 1 ? "" : "s") << " revoked)\n";
    exit_code = 0;
#else
    report_no_store(exit_code);
#endif
  });
}

}  // namespace realm::cli
