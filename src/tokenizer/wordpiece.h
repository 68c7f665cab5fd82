// WordPiece (`tokenizer.ggml.model = bert`) encoding as llama.cpp does it: normalize (lowercase,
// strip accents through NFD), split on whitespace, punctuation, ASCII symbols and CJK ideographs,
// then greedy longest-match with a '▁' word prefix. Character properties come from ICU.
#pragma once

#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace realm::tok {

// Appends the WordPiece ids of `text` to `out`.
void wordpiece_encode(const Vocab& vocab, std::string_view text, std::vector<TokenId>& out);

}  // namespace realm::tok
