// Type rules for the metadata keys Realm reads. A known key with the wrong type is a malformed
// file, rejected at load with the key, the expected and the actual type.
#pragma once

#include "util/expected.h"

namespace realm::gguf {

class GgufFile;

Status check_known_keys(const GgufFile& file);

}  // namespace realm::gguf
