// The folder Realm keeps its state in: $REALM_HOME, else $XDG_CACHE_HOME/realm, else
// ~/.cache/realm (HOME, else the passwd entry). The model store (hub) and the server's default
// database both live there.
#pragma once

#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace realm {

inline std::string realm_home() {
  if (const char* h = std::getenv("REALM_HOME"); h && *h) return h;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/realm";
  if (const char* home = std::getenv("HOME"); home && *home) {
    return std::string(home) + "/.cache/realm";
  }
  if (const passwd* pw = ::getpwuid(::getuid()); pw && pw->pw_dir) {
    return std::string(pw->pw_dir) + "/.cache/realm";
  }
  return ".cache/realm";
}

}  // namespace realm
