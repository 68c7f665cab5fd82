// The model store: models pulled from the hub (or a URL) under $REALM_HOME/models, one folder per
// model holding its GGUF file(s) under their original names and a manifest.json; and the one
// rule every command uses to turn a -m argument into a file (resolve_model). docs/models.md.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/expected.h"

namespace realm::hub {

// $REALM_HOME, else $XDG_CACHE_HOME/realm, else ~/.cache/realm.
std::string realm_home();
// realm_home() + "/models".
std::string models_dir();

struct ManifestFile {
  std::string name;    // the file name in the entry folder (the repo's base name)
  std::string source;  // the path in the repo, or the URL
  uint64_t size = 0;
  std::string sha256;
};

struct Manifest {
  std::string name;                      // the store name (spec.h: Spec::name)
  std::string spec;                      // as given to realm pull
  std::string source_kind;               // "hub" or "url"
  std::string endpoint, repo, revision;  // hub
  std::string url;                       // url
  std::vector<ManifestFile> files;       // the GGUF file, or every shard in order
  std::string pulled_at;                 // UTC, RFC 3339
  std::string entry_dir;                 // where it is (not stored in the file)
  uint64_t total_size() const;
};

// A manifest as manifest.json holds it ({"realm_manifest", "name", "spec", "source", "files",
// "pulled_at"}); `realm models --json` prints it too.
nlohmann::ordered_json manifest_json(const Manifest& m);

struct ResolvedModel {
  std::string path;  // the GGUF file, or the first shard
  std::string name;  // store name, or the path as given
  bool in_store = false;
  std::string entry_dir;              // the store entry dir ("" for a plain path)
  std::optional<std::string> sha256;  // of `path` when known from the manifest
};

// A -m argument: an existing file wins; else a store name (owner/repo means owner/repo:Q4_K_M,
// the quant is case-insensitive); else NOT_FOUND saying it is neither and suggesting realm pull.
Expected<ResolvedModel> resolve_model(std::string_view arg);

// The store entry `name` names (as resolve_model reads names), or NOT_FOUND.
Expected<Manifest> find_model(std::string_view name);
// Every entry, sorted by name; entries whose manifest does not parse are skipped.
Expected<std::vector<Manifest>> list_models();
// Deletes the entry (its folder). NOT_FOUND when there is none.
Status remove_model(std::string_view name);

struct PullOptions {
  std::string revision;  // "" : the SPEC's @REV or main
  bool quiet = false;    // no progress output
};

struct PullResult {
  Manifest manifest;
  bool already = false;  // the entry existed: nothing was downloaded
};

// Pulls SPEC into the store: picks the file(s), downloads each to .partial/<entry>/FILE.partial
// (resumed across runs), checks the sha256 and that it parses as GGUF, then makes the entry
// visible with one rename. A second pull of a complete entry does nothing (already = true).
Expected<PullResult> pull(std::string_view spec, const PullOptions& options);

}  // namespace realm::hub
