#include "server/admin.h"

#include <charconv>
#include <chrono>
#include <cstdlib>
#include <ctime>

namespace realm::server {

using Json = nlohmann::json;
using OJson = nlohmann::ordered_json;

OJson tenant_json(const TenantConfig& t) {
  OJson j;
  j["id"] = t.id;
  j["models"] = t.models;
  j["guest"] = t.guest;
  j["rpm"] = t.rpm;
  j["tpm"] = t.tpm;
  j["concurrency"] = t.concurrency;
  j["daily_tokens"] = t.daily_tokens;
  j["memory_mb"] = t.memory_mb;
  j["weight"] = t.weight;
  j["created_at"] = t.created_at;
  j["updated_at"] = t.updated_at;
  return j;
}

Status apply_tenant_json(const Json& j, TenantConfig& t) {
  if (!j.is_object()) return make_error("a tenant must be a JSON object");
  auto integer = [&](const char* key, auto& field) -> Status {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return {};
    if (!it->is_number_integer()) return make_error("'", key, "' must be an integer");
    const int64_t v = it->get<int64_t>();
    if (v < 0 || v > (int64_t{1} << 40)) return make_error("'", key, "' is out of range");
    field = static_cast<std::remove_reference_t<decltype(field)>>(v);
    return {};
  };
  if (auto it = j.find("id"); it != j.end() && !it->is_null()) {
    if (!it->is_string()) return make_error("'id' must be a string");
    t.id = it->get<std::string>();
  }
  if (auto it = j.find("models"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) return make_error("'models' must be an array of model names");
    t.models.clear();
    for (const Json& m : *it) {
      if (!m.is_string()) return make_error("'models' must be an array of model names");
      if (m != "*") t.models.push_back(m.get<std::string>());
    }
  }
  if (auto it = j.find("guest"); it != j.end() && !it->is_null()) {
    if (!it->is_string()) return make_error("'guest' must be a path");
    t.guest = it->get<std::string>();
  }
  REALM_TRY(integer("rpm", t.rpm));
  REALM_TRY(integer("tpm", t.tpm));
  REALM_TRY(integer("concurrency", t.concurrency));
  REALM_TRY(integer("daily_tokens", t.daily_tokens));
  REALM_TRY(integer("memory_mb", t.memory_mb));
  if (auto it = j.find("weight"); it != j.end() && !it->is_null()) {
    if (!it->is_number()) return make_error("'weight' must be a number");
    t.weight = it->get<double>();
  }
  return {};
}

OJson key_json(const KeyInfo& k) {
  OJson j;
  j["id"] = k.id;
  j["tenant"] = k.tenant.empty() ? OJson(nullptr) : OJson(k.tenant);
  j["name"] = k.name;
  j["admin"] = k.admin;
  j["created_at"] = k.created_at;
  j["revoked_at"] = k.revoked_at == 0 ? OJson(nullptr) : OJson(k.revoked_at);
  return j;
}

namespace {

// Unix milliseconds as "2024-05-01T12:00:00Z" (whole seconds).
std::string utc_text(int64_t ms) {
  const time_t t = static_cast<time_t>(ms / 1000);
  tm parts{};
  if (!gmtime_r(&t, &parts)) return std::to_string(ms / 1000);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &parts);
  return buf;
}

// The counts of a usage row, appended to `j`.
OJson with_counts(OJson j, const UsageSummary& u) {
  j["requests"] = u.requests;
  j["errors"] = u.errors;
  j["prompt_tokens"] = u.prompt_tokens;
  j["completion_tokens"] = u.completion_tokens;
  j["cached_tokens"] = u.cached_tokens;
  return j;
}

// Digits [pos, pos + n) of s as a number, or -1.
int digits(const std::string& s, size_t pos, size_t n) {
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

}  // namespace

OJson usage_json(const std::vector<UsageSummary>& rows, const std::string& tenant,
                 std::optional<int64_t> since_ms) {
  UsageSummary total;
  OJson out_rows = OJson::array();
  for (const auto& r : rows) {
    out_rows.push_back(with_counts(OJson{{"tenant", r.tenant}, {"model", r.model}}, r));
    total.requests += r.requests;
    total.errors += r.errors;
    total.prompt_tokens += r.prompt_tokens;
    total.completion_tokens += r.completion_tokens;
    total.cached_tokens += r.cached_tokens;
  }
  OJson j;
  j["since"] = since_ms ? OJson(utc_text(*since_ms)) : OJson(nullptr);
  j["since_ms"] = since_ms.value_or(0);
  j["tenant"] = tenant.empty() ? OJson(nullptr) : OJson(tenant);
  j["rows"] = std::move(out_rows);
  j["total"] = with_counts(OJson::object(), total);
  return j;
}

Expected<int64_t> parse_since(const std::string& s, int64_t now_ms) {
  auto bad = [&] {
    return make_error(
        "want YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ, Unix seconds or a duration such as 30m, 24h, 7d "
        "(units s, m, h, d, w); got '",
        s.substr(0, 64), "'");
  };
  const size_t first_non_digit = s.find_first_not_of("0123456789");
  // A time back from now: N + unit.
  if (s.size() >= 2 && first_non_digit == s.size() - 1 &&
      std::string_view("smhdw").find(s.back()) != std::string_view::npos) {
    int64_t n = 0;
    auto r = std::from_chars(s.data(), s.data() + s.size() - 1, n);
    if (r.ec != std::errc() || r.ptr != s.data() + s.size() - 1) return bad();
    int64_t unit_ms = 1000;
    switch (s.back()) {
      case 'w':
        unit_ms *= 7;
        [[fallthrough]];
      case 'd':
        unit_ms *= 24;
        [[fallthrough]];
      case 'h':
        unit_ms *= 60;
        [[fallthrough]];
      case 'm':
        unit_ms *= 60;
        break;
      default:
        break;
    }
    if (n > now_ms / unit_ms) return int64_t{0};  // before 1970: every row
    return now_ms - n * unit_ms;
  }
  // Unix seconds (up to 12 digits: the year 33658).
  if (!s.empty() && first_non_digit == std::string::npos) {
    int64_t n = 0;
    auto r = std::from_chars(s.data(), s.data() + s.size(), n);
    if (s.size() > 12 || r.ec != std::errc()) return bad();
    return n * 1000;
  }
  const bool date_only = s.size() == 10;
  const bool full = s.size() == 20 && s[10] == 'T' && s[13] == ':' && s[16] == ':' && s[19] == 'Z';
  if ((!date_only && !full) || s[4] != '-' || s[7] != '-') return bad();
  tm parts{};
  const int year = digits(s, 0, 4), month = digits(s, 5, 2), day = digits(s, 8, 2);
  const int hour = full ? digits(s, 11, 2) : 0, minute = full ? digits(s, 14, 2) : 0,
            second = full ? digits(s, 17, 2) : 0;
  if (year < 1970 || month < 1 || month > 12 || day < 1 || day > 31 || hour < 0 || hour > 23 ||
      minute < 0 || minute > 59 || second < 0 || second > 59) {
    return bad();
  }
  parts.tm_year = year - 1900;
  parts.tm_mon = month - 1;
  parts.tm_mday = day;
  parts.tm_hour = hour;
  parts.tm_min = minute;
  parts.tm_sec = second;
  const time_t t = timegm(&parts);
  // timegm normalizes (Feb 30 becomes Mar 2): a date that moved did not exist.
  if (parts.tm_mday != day || parts.tm_mon != month - 1) return bad();
  return static_cast<int64_t>(t) * 1000;
}

Expected<int64_t> parse_since(const std::string& s) {
  return parse_since(s, std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count());
}

std::string url_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::strtol(std::string(s.substr(i + 1, 2)).c_str(), nullptr, 16));
      i += 2;
    } else {
      out += s[i] == '+' ? ' ' : s[i];
    }
  }
  return out;
}

std::string query_value(const std::string& query, const std::string& key) {
  size_t pos = 0;
  while (pos <= query.size()) {
    size_t amp = query.find('&', pos);
    if (amp == std::string::npos) amp = query.size();
    const std::string item = query.substr(pos, amp - pos);
    const size_t eq = item.find('=');
    if (url_decode(item.substr(0, eq)) == key) {
      return eq == std::string::npos ? "" : url_decode(item.substr(eq + 1));
    }
    pos = amp + 1;
  }
  return "";
}

AdminReply error_reply(const Error& e) {
  int status = 500;
  switch (e.code) {
    case ErrorCode::INVALID_ARGUMENT:
    case ErrorCode::LIMIT:
      status = 400;
      break;
    case ErrorCode::NOT_FOUND:
      status = 404;
      break;
    case ErrorCode::FAILED_PRECONDITION:
      status = 409;
      break;
    case ErrorCode::UNAVAILABLE:
      status = 503;
      break;
    default:
      break;
  }
  return {status,
          {{"error",
            {{"message", e.message},
             {"type", status == 500 ? "server_error" : "invalid_request_error"},
             {"param", nullptr},
             {"code", nullptr}}}},
          false};
}

AdminReply bad(const std::string& message, int status) {
  AdminReply r = error_reply(make_error(message));
  r.status = status;
  return r;
}

namespace {}  // namespace

AdminReply admin_request(Store& store, const std::string& method, const std::string& path,
                         const std::string& query, std::string_view body) {
  auto parse_body = [&](Json& out) {
    out = Json::parse(body.begin(), body.end(), nullptr, false);
    return !out.is_discarded() && out.is_object();
  };
  const std::string tenants = "/admin/tenants", keys = "/admin/keys";
  if (path == tenants) {
    if (method == "GET") {
      auto list = store.list_tenants();
      if (!list) return error_reply(list.error());
      Json data = Json::array();
      for (const auto& t : *list) data.push_back(Json(tenant_json(t)));
      return {200, {{"object", "list"}, {"data", data}}, false};
    }
    if (method == "POST") {
      Json j;
      if (!parse_body(j)) return bad("the body must be a JSON object (a tenant)");
      TenantConfig t;
      if (auto st = apply_tenant_json(j, t); !st) return error_reply(st.error());
      if (auto st = store.create_tenant(t); !st) return error_reply(st.error());
      auto got = store.get_tenant(t.id);
      if (!got || !*got) return error_reply(got ? make_error("vanished") : got.error());
      return {201, tenant_json(**got), true};
    }
    return bad("use GET or POST on " + path, 405);
  }
  if (path.rfind(tenants + "/", 0) == 0) {
    const std::string id = url_decode(path.substr(tenants.size() + 1));
    auto got = store.get_tenant(id);
    if (!got) return error_reply(got.error());
    if (!*got) return bad("no tenant '" + id + "'", 404);
    if (method == "GET") return {200, tenant_json(**got), false};
    if (method == "PATCH" || method == "POST") {
      Json j;
      if (!parse_body(j)) return bad("the body must be a JSON object (the fields to change)");
      TenantConfig t = **got;
      if (auto st = apply_tenant_json(j, t); !st) return error_reply(st.error());
      t.id = id;
      if (auto st = store.update_tenant(t); !st) return error_reply(st.error());
      auto now = store.get_tenant(id);
      if (!now || !*now) return error_reply(now ? make_error("vanished") : now.error());
      return {200, tenant_json(**now), true};
    }
    if (method == "DELETE") {
      if (auto st = store.delete_tenant(id); !st) return error_reply(st.error());
      return {200, {{"id", id}, {"deleted", true}}, true};
    }
    return bad("use GET, PATCH or DELETE on " + path, 405);
  }
  if (path == keys) {
    if (method == "GET") {
      auto list = store.list_keys(query_value(query, "tenant"));
      if (!list) return error_reply(list.error());
      Json data = Json::array();
      for (const auto& k : *list) data.push_back(Json(key_json(k)));
      return {200, {{"object", "list"}, {"data", data}}, false};
    }
    if (method == "POST") {
      Json j;
      if (!parse_body(j)) return bad("the body must be a JSON object {tenant, name, admin}");
      const bool admin = j.value("admin", Json(false)) == true;
      const Json tenant = j.value("tenant", Json());
      const Json name = j.value("name", Json(""));
      if ((!admin && !tenant.is_string()) || !name.is_string()) {
        return bad("'tenant' (a tenant id, unless 'admin' is true) and 'name' must be strings");
      }
      auto k =
          store.create_key(admin ? "" : tenant.get<std::string>(), name.get<std::string>(), admin);
      if (!k) return error_reply(k.error());
      Json out = key_json(k->first);
      out["key"] = k->second;
      return {201, out, true};
    }
    return bad("use GET or POST on " + path, 405);
  }
  if (path.rfind(keys + "/", 0) == 0) {
    const std::string id = url_decode(path.substr(keys.size() + 1));
    if (method != "DELETE") return bad("use DELETE on " + path + " to revoke the key", 405);
    if (auto st = store.revoke_key(id); !st) return error_reply(st.error());
    return {200, {{"id", id}, {"revoked", true}}, true};
  }
  if (path == "/admin/usage") {
    if (method != "GET") return bad("use GET on " + path, 405);
    const std::string tenant = query_value(query, "tenant");
    const std::string since_text = query_value(query, "since");
    std::optional<int64_t> since;  // nullopt: every row
    if (!since_text.empty()) {
      auto s = parse_since(since_text);
      if (!s) return bad("'since': " + s.error().message);
      since = *s;
    }
    auto rows = store.usage_summary(tenant, since.value_or(0));
    if (!rows) return error_reply(rows.error());
    return {200, usage_json(*rows, tenant, since), false};
  }
  return bad("no admin route " + method + " " + path, 404);
}

}  // namespace realm::server
