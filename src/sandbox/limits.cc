#include "sandbox/limits.h"

#include <algorithm>

namespace realm::sandbox {

bool TenantRecord::may_use(std::string_view model) const {
  return std::any_of(allowed_models.begin(), allowed_models.end(),
                     [&](const std::string& m) { return m == "*" || m == model; });
}

Status RecordLimits::acquire_session(const TenantRecord& t) {
  std::lock_guard<std::mutex> lock(mu_);
  int32_t& n = sessions_[t.id];
  if (n >= t.limits.max_sessions) {
    return make_error("tenant '", t.id, "' has ", n, " sessions open, its limit is ",
                      t.limits.max_sessions);
  }
  ++n;
  return {};
}

void RecordLimits::release_session(const TenantRecord& t) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(t.id);
  if (it != sessions_.end() && it->second > 0) --it->second;
}

int32_t RecordLimits::open_sessions(const std::string& tenant) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(tenant);
  return it == sessions_.end() ? 0 : it->second;
}

}  // namespace realm::sandbox
