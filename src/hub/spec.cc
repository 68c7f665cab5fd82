#include "hub/spec.h"

#include "gguf/split.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <set>

#include "hub/sha256.h"

namespace realm::hub {
namespace {

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

bool ends_with_ci(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && upper(s.substr(s.size() - suffix.size())) == upper(suffix);
}

std::string_view basename(std::string_view path) {
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// Hub owner and repo names: letters, digits, '-', '_', '.'; not "." or "..".
bool valid_repo_part(std::string_view s) {
  if (s.empty() || s == "." || s == ".." || s.size() > 96) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

bool valid_revision(std::string_view s) {
  if (s.empty() || s.size() > 255 || s.find("..") != std::string_view::npos) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
           c == '/';
  });
}

// A path in a repo: '/'-separated parts, none empty, ".", ".." or with control bytes.
bool valid_repo_path(std::string_view s) {
  if (s.empty() || s.size() > 1024) return false;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find('/', start);
    if (end == std::string_view::npos) end = s.size();
    std::string_view part = s.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    for (char c : part) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '\\') return false;
    }
    start = end + 1;
  }
  return true;
}

bool is_quant_word(std::string_view w) {
  std::string u = upper(w);
  if (u == "F16" || u == "BF16" || u == "F32" || u == "F64") return true;
  size_t i = 0;
  if (u.rfind("IQ", 0) == 0 || u.rfind("TQ", 0) == 0) {
    i = 2;
  } else if (u.rfind("Q", 0) == 0) {
    i = 1;
  } else {
    return false;
  }
  if (i >= u.size() || !std::isdigit(static_cast<unsigned char>(u[i]))) return false;
  while (i < u.size() && std::isdigit(static_cast<unsigned char>(u[i]))) ++i;
  // Then (_[A-Z0-9]+)*: Q4_K_M, Q8_0, IQ4_XS, Q4_0_4_4.
  while (i < u.size()) {
    if (u[i] != '_' || i + 1 >= u.size()) return false;
    ++i;
    size_t start = i;
    while (i < u.size() && std::isalnum(static_cast<unsigned char>(u[i]))) ++i;
    if (i == start) return false;
  }
  return true;
}

// The words of a file name without ".gguf": split at '.', '-' and ' ' (not '_', which is part of
// quant tags).
std::vector<std::string_view> name_words(std::string_view path) {
  std::string_view name = basename(path);
  if (ends_with_ci(name, ".gguf")) name.remove_suffix(5);
  std::vector<std::string_view> words;
  size_t start = 0;
  for (size_t i = 0; i <= name.size(); ++i) {
    if (i == name.size() || name[i] == '.' || name[i] == '-' || name[i] == ' ') {
      if (i > start) words.push_back(name.substr(start, i - start));
      start = i + 1;
    }
  }
  return words;
}

bool carries_quant(std::string_view path, std::string_view quant_upper) {
  for (std::string_view w : name_words(path)) {
    if (upper(w) == quant_upper) return true;
  }
  return false;
}

bool is_mmproj(std::string_view path) {
  return upper(basename(path)).find("MMPROJ") != std::string::npos;
}

std::string join(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += sep;
    out += v[i];
  }
  return out;
}

Expected<Spec> parse_url(std::string_view spec) {
  Spec s;
  s.kind = SpecKind::URL;
  s.url = std::string(spec);
  bool https = spec.rfind("https://", 0) == 0;
  std::string_view rest = spec.substr(https ? 8 : 7);
  size_t slash = rest.find('/');
  std::string_view host_port = rest.substr(0, slash);
  if (host_port.empty() || host_port.find('@') != std::string_view::npos) {
    return make_error("bad URL ", spec, ": no host (or user info, which is not accepted)");
  }
  std::string_view host = host_port;
  if (host.front() == '[') {
    host = host.substr(0, host.find(']') + 1);
  } else if (size_t colon = host.rfind(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  if (!https && !is_loopback_host(host)) {
    return make_error("URL ", spec, ": plain http:// is accepted only for loopback mirrors (",
                      "127.0.0.1, localhost, [::1]); use https://");
  }
  std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);
  path = path.substr(0, path.find_first_of("?#"));
  if (path.size() <= 1 || path.back() == '/') {
    return make_error("URL ", spec, ": names no file (the path must end in a file name)");
  }
  for (char c : spec) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return make_error("URL ", spec, ": contains a space or control byte");
    }
  }
  s.name = std::string(host_port) + std::string(path);
  return s;
}

}  // namespace

bool is_loopback_host(std::string_view host) {
  if (host == "localhost" || host == "[::1]") return true;
  if (host.rfind("127.", 0) != 0) return false;
  int dots = 0;
  for (char c : host) {
    if (c == '.') {
      ++dots;
    } else if (!std::isdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return dots == 3;
}

Expected<Spec> parse_spec(std::string_view spec, std::string_view revision) {
  if (spec.empty()) return make_error("empty model SPEC (want owner/repo[:QUANT], ...)");
  if (spec.rfind("https://", 0) == 0 || spec.rfind("http://", 0) == 0) {
    if (!revision.empty()) return make_error("--revision does not apply to a URL (", spec, ")");
    return parse_url(spec);
  }
  if (spec.find("://") != std::string_view::npos) {
    return make_error("model SPEC ", spec, ": only https:// (and http:// to loopback) URLs");
  }
  Spec s;
  std::string body_storage(spec);  // the SPEC without its @REV
  std::string_view body = body_storage;
  // @REV at the end, or between the repo and :QUANT.
  std::string rev;
  if (size_t at = body.find('@'); at != std::string_view::npos) {
    size_t rev_end = body.find(':', at);
    std::string_view r = body.substr(
        at + 1, rev_end == std::string_view::npos ? std::string_view::npos : rev_end - at - 1);
    if (!valid_revision(r)) return make_error("model SPEC ", spec, ": bad revision '", r, "'");
    rev = std::string(r);
    std::string without(body.substr(0, at));
    if (rev_end != std::string_view::npos) without += body.substr(rev_end);
    body_storage = std::move(without);
    body = body_storage;
  }
  if (!revision.empty()) {
    if (!valid_revision(revision)) return make_error("bad --revision '", revision, "'");
    if (!rev.empty() && rev != revision) {
      return make_error("model SPEC ", spec, " says revision ", rev, " but --revision says ",
                        revision);
    }
    rev = std::string(revision);
  }
  s.revision = rev.empty() ? std::string(kDefaultRevision) : rev;
  std::string_view quant;
  if (size_t colon = body.find(':'); colon != std::string_view::npos) {
    quant = body.substr(colon + 1);
    body = body.substr(0, colon);
    if (quant.empty()) return make_error("model SPEC ", spec, ": empty quant after ':'");
  }
  size_t slash = body.find('/');
  if (slash == std::string_view::npos) {
    return make_error("model SPEC ", spec,
                      " is not owner/repo[:QUANT], owner/repo/file.gguf or an https:// URL "
                      "(and no such file exists)");
  }
  std::string_view owner = body.substr(0, slash);
  std::string_view rest = body.substr(slash + 1);
  size_t slash2 = rest.find('/');
  std::string_view repo = rest.substr(0, slash2);
  if (!valid_repo_part(owner) || !valid_repo_part(repo)) {
    return make_error("model SPEC ", spec, ": bad owner/repo '", owner, "/", repo,
                      "' (letters, digits, '-', '_', '.')");
  }
  s.repo = std::string(owner) + "/" + std::string(repo);
  const std::string rev_suffix = s.revision == kDefaultRevision ? "" : "@" + s.revision;
  if (slash2 == std::string_view::npos) {
    s.kind = SpecKind::REPO;
    s.quant = quant.empty() ? std::string(kDefaultQuant) : upper(quant);
    if (!is_quant_word(s.quant)) {
      return make_error("model SPEC ", spec, ": '", quant,
                        "' is not a quant type (Q4_K_M, Q8_0, IQ4_XS, F16, ...)");
    }
    s.name = s.repo + ":" + s.quant + rev_suffix;
    return s;
  }
  if (!quant.empty()) {
    return make_error("model SPEC ", spec, ": a :QUANT goes with owner/repo, not with a file");
  }
  s.kind = SpecKind::FILE;
  s.file = std::string(rest.substr(slash2 + 1));
  if (!valid_repo_path(s.file)) return make_error("model SPEC ", spec, ": bad file path in repo");
  if (!ends_with_ci(s.file, ".gguf")) {
    return make_error("model SPEC ", spec, ": the file must be a .gguf file");
  }
  s.name = s.repo + "/" + s.file + rev_suffix;
  return s;
}

std::vector<std::string> quant_tags(std::string_view path) {
  std::vector<std::string> tags;
  for (std::string_view w : name_words(path)) {
    if (is_quant_word(w)) tags.push_back(upper(w));
  }
  return tags;
}

Expected<std::vector<std::string>> shard_set(const std::vector<std::string>& files,
                                             std::string_view path) {
  auto sn = gguf::parse_split_path(path);
  if (!sn) return std::vector<std::string>{std::string(path)};
  std::set<std::string, std::less<>> listed(files.begin(), files.end());
  std::vector<std::string> out;
  for (uint64_t k = 1; k <= sn->count; ++k) {
    std::string p = gguf::split_path(sn->prefix, k, sn->count);
    if (!listed.contains(p)) {
      return make_error(ErrorCode::NOT_FOUND, "shard ", p, " of ", path,
                        " is not in the repo's file list");
    }
    out.push_back(std::move(p));
  }
  return out;
}

Expected<std::vector<std::string>> pick_quant_files(const std::vector<std::string>& files,
                                                    std::string_view quant, std::string_view repo) {
  const std::string q = upper(quant);
  std::vector<std::string> plain;
  std::map<std::string, std::string> sets;  // prefix+count -> first listed member
  for (const std::string& f : files) {
    if (!ends_with_ci(f, ".gguf") || is_mmproj(f) || !carries_quant(f, q)) continue;
    if (auto sn = gguf::parse_split_path(f)) {
      sets.emplace(sn->prefix + "/" + std::to_string(sn->count), f);
    } else {
      plain.push_back(f);
    }
  }
  if (plain.size() == 1) return plain;
  if (plain.empty() && sets.size() == 1) return shard_set(files, sets.begin()->second);
  if (plain.size() > 1 || sets.size() > 1) {
    std::vector<std::string> cands = plain;
    for (const auto& [key, f] : sets) cands.push_back(f + " (split)");
    return make_error("repo ", repo, ": quant ", q, " matches several files: ", join(cands, ", "),
                      "; name one as ", repo, "/FILE.gguf");
  }
  std::set<std::string> available;
  for (const std::string& f : files) {
    if (!ends_with_ci(f, ".gguf") || is_mmproj(f)) continue;
    for (std::string& t : quant_tags(f)) available.insert(std::move(t));
  }
  if (available.empty()) {
    return make_error(ErrorCode::NOT_FOUND, "repo ", repo, " has no quant ", q,
                      " (it lists no GGUF files with a quant type in their names)");
  }
  return make_error(ErrorCode::NOT_FOUND, "repo ", repo, " has no quant ", q,
                    "; it has: ", join({available.begin(), available.end()}, ", "));
}

std::string escape_name(std::string_view name) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (size_t i = 0; i < name.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(name[i]);
    bool keep = std::isalnum(c) || c == '-' || c == '_' || (c == '.' && i > 0);
    if (keep) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  constexpr size_t kMax = 200;
  if (out.size() > kMax) out = out.substr(0, kMax - 17) + "~" + sha256_hex(name).substr(0, 16);
  return out;
}

}  // namespace realm::hub
