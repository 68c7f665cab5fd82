// The admin HTTP API (`/admin/...`, admin keys only) over the store, and the JSON form of the
// store's records that it and the CLI's --json output share (one implementation of each).
//
//   GET /admin/tenants               list
//   POST /admin/tenants              create (body: a tenant)
//   GET /admin/tenants/{id}          show
//   PATCH /admin/tenants/{id}        update (the fields given)
//   DELETE /admin/tenants/{id}       delete (its keys are revoked)
//   GET /admin/keys[?tenant=T]       list
//   POST /admin/keys                 create {tenant, name, admin}
//   DELETE /admin/keys/{id}          revoke
//   GET /admin/usage[?tenant=T&since=S]  sums (S: what parse_since takes), as `realm usage --json`
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/store.h"

namespace realm::server {

// The JSON forms below are ordered_json, fields in the order `realm ... --json` prints them.
nlohmann::ordered_json tenant_json(const TenantConfig& t);
// Applies the fields present in `j` (id, models, guest, rpm, tpm, concurrency, daily_tokens,
// memory_mb, weight) to `t`; an error names a field of the wrong type.
Status apply_tenant_json(const nlohmann::json& j, TenantConfig& t);
// {id, tenant, name, admin, created_at, revoked_at}; tenant null for an admin key, revoked_at null
// while active. Never the key or its hash.
nlohmann::ordered_json key_json(const KeyInfo& k);
// {since, since_ms, tenant, rows: [{tenant, model, requests, errors, prompt_tokens,
// completion_tokens, cached_tokens}], total: {requests, ...}}. since: "YYYY-MM-DDTHH:MM:SSZ", or
// null when `since_ms` is nullopt (every row; since_ms is then 0); tenant: the filter, null for "".
nlohmann::ordered_json usage_json(const std::vector<UsageSummary>& rows, const std::string& tenant,
                                  std::optional<int64_t> since_ms);

struct AdminReply {
  int status = 200;
  nlohmann::json body;
  bool changed = false;  // tenants or keys changed: the server reloads them
};
AdminReply admin_request(Store& store, const std::string& method, const std::string& path,
                         const std::string& query, std::string_view body);
// The admin API's error body for `e` (its status from e.code: 400, 404, 409, 503, else 500).
AdminReply error_reply(const Error& e);
// An error reply with `message` and `status`.
AdminReply bad(const std::string& message, int status = 400);
// %XX and '+' decoded; a query string's value of `key` ("" when absent).
std::string url_decode(std::string_view s);
std::string query_value(const std::string& query, const std::string& key);

// A start time as Unix milliseconds: "YYYY-MM-DD" (UTC midnight), "YYYY-MM-DDTHH:MM:SSZ", Unix
// seconds, or a time back from `now_ms`: N followed by s, m, h, d or w ("30m", "24h", "7d"; one
// before 1970 is 0). Anything else (also "") is an error that says what is accepted.
Expected<int64_t> parse_since(const std::string& s, int64_t now_ms);
Expected<int64_t> parse_since(const std::string& s);  // back from the current time

}  // namespace realm::server
