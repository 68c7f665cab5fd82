// What the store commands (`realm tenants|keys|usage`) share: the --db / --secret-file options,
// opening the store, error reporting, JSON, times and plain-text tables. The JSON forms of the
// records and the --since parser are the admin API's (server/admin.h), so both agree.
#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <ctime>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "util/expected.h"

#if REALM_HAVE_STORE
#include "server/admin.h"  // the JSON forms (tenant_json, key_json, usage_json) and parse_since
#include "server/store.h"
#endif

namespace realm::cli {

// Prints "realm: error: MESSAGE" and sets the exit status (1: an error, 2: a usage error).
inline void report_error(std::string_view message, int& exit_code, int status = 1) {
  std::cerr << "realm: error: " << message << "\n";
  exit_code = status;
}

struct StoreArgs {
  std::string db;      // "": default_db_path()
  std::string secret;  // "": db + ".secret"
};

inline void add_store_options(CLI::App* cmd, StoreArgs& a) {
  cmd->add_option("--db", a.db,
                  "Database file (default $REALM_HOME/realm.db, else ~/.cache/realm/realm.db)");
  cmd->add_option("--secret-file", a.secret,
                  "Key-hashing secret (default: the database + .secret)");
}

#if REALM_HAVE_STORE
// The store at the options' paths, or nullptr after reporting why.
inline std::unique_ptr<server::Store> open_store(const StoreArgs& a, int& exit_code) {
  auto s = server::Store::open(a.db.empty() ? server::default_db_path() : a.db, a.secret);
  if (!s) {
    report_error(s.error().message, exit_code);
    return nullptr;
  }
  return std::move(s).value();
}
#endif

// Prints `j` indented, as every --json output is.
inline void print_json(const nlohmann::ordered_json& j) {
  std::cout << j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
}

// Unix seconds as "2024-05-01T12:00:00Z"; `zero` for 0.
inline std::string format_time(int64_t unix_s, const char* zero = "-") {
  if (unix_s == 0) return zero;
  const time_t t = static_cast<time_t>(unix_s);
  tm parts{};
  if (!gmtime_r(&t, &parts)) return std::to_string(unix_s);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &parts);
  return buf;
}

// Prints rows as aligned columns; rows[0] is the header. Columns named in `right` (by index) are
// right-aligned (numbers).
inline void print_table(const std::vector<std::vector<std::string>>& rows,
                        const std::vector<size_t>& right = {}) {
  std::vector<size_t> width;
  for (const auto& r : rows) {
    if (width.size() < r.size()) width.resize(r.size(), 0);
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      const size_t pad = width[i] - r[i].size();
      const bool is_right = std::find(right.begin(), right.end(), i) != right.end();
      if (i > 0) line += "  ";
      if (is_right) line += std::string(pad, ' ');
      line += r[i];
      if (!is_right && i + 1 < r.size()) line += std::string(pad, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::cout << line << "\n";
  }
}

// The message of commands run in a build without the store.
inline void report_no_store(int& exit_code) {
  report_error("this build has no store (SQLite or OpenSSL was missing when it was built)",
               exit_code);
}

}  // namespace realm::cli
