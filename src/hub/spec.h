// What `realm pull SPEC` names: a Hugging Face repo (with a quant type), one file in a repo, or a
// URL; the store name a SPEC normalizes to; picking a repo's GGUF file(s) for a quant type; the
// names of split GGUF shards. Pure functions (no network, no files): spec_test.cc covers them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/expected.h"

namespace realm::hub {

// The quant type `owner/repo` means when no `:QUANT` is given (as llama.cpp's -hf does).
inline constexpr std::string_view kDefaultQuant = "Q4_K_M";
inline constexpr std::string_view kDefaultRevision = "main";

enum class SpecKind : uint8_t {
  REPO,  // owner/repo[:QUANT][@REV]
  FILE,  // owner/repo/path/file.gguf[@REV]
  URL,   // https://host/path (http:// only for loopback hosts)
};

struct Spec {
  SpecKind kind = SpecKind::REPO;
  std::string repo;      // owner/repo (REPO, FILE)
  std::string quant;     // upper case, kDefaultQuant when not given (REPO)
  std::string file;      // path in the repo (FILE)
  std::string revision;  // kDefaultRevision when not given (REPO, FILE)
  std::string url;       // URL
  // The store name: owner/repo:QUANT, owner/repo/path/file.gguf, or HOST/PATH for a URL (no
  // scheme, query or fragment); "@REV" is appended when the revision is not main.
  std::string name;
};

// Parses a SPEC. `revision` (from --revision) overrides the default; giving both it and a
// different @REV is an error. Errors name the SPEC and what is wrong with it.
Expected<Spec> parse_spec(std::string_view spec, std::string_view revision = {});

// Shard names (PREFIX-%05d-of-%05d.gguf) are gguf::parse_split_path / gguf::split_path.

// The quant tags a file name carries ("Q4_K_M", "IQ4_XS", "F16", ...), upper case.
std::vector<std::string> quant_tags(std::string_view path);

// Picks the files to pull for `quant` among a repo's files (paths as the hub lists them): the
// .gguf files whose name carries the tag (case-insensitively, as a whole dot/dash-separated word;
// mmproj files are skipped). One plain file, or every shard of one split set (all must be
// listed), in order. A plain file is preferred over a split set; two plain files, or two split
// sets, are ambiguous: the error lists the candidates. No match: the error names the quant and
// lists the quants the repo has.
Expected<std::vector<std::string>> pick_quant_files(const std::vector<std::string>& files,
                                                    std::string_view quant, std::string_view repo);

// Every shard of the set `path` belongs to, in order (just `path` when it is not a shard); an
// error names the missing shard when `files` (the repo listing) lacks one.
Expected<std::vector<std::string>> shard_set(const std::vector<std::string>& files,
                                             std::string_view path);

// The store folder name of a model name: bytes outside [A-Za-z0-9._-] (and a leading '.')
// percent-encoded, so distinct names get distinct folders; long names are cut and given a hash.
std::string escape_name(std::string_view name);

// True for hosts http:// may be used with (127.0.0.0/8, localhost, [::1]).
bool is_loopback_host(std::string_view host);

}  // namespace realm::hub
