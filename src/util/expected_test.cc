#include "util/expected.h"

#include <gtest/gtest.h>

namespace realm {
namespace {

Expected<int> parse_positive(int v) {
  if (v <= 0) return make_error("value ", v, " is not positive");
  return v;
}

Status chain(int v) {
  REALM_TRY(parse_positive(v));
  return {};
}

TEST(Expected, HoldsValueOrError) {
  auto ok = parse_positive(3);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 3);
  auto bad = parse_positive(-2);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message, "value -2 is not positive");
}

TEST(Expected, TryPropagates) {
  EXPECT_TRUE(chain(1).ok());
  auto st = chain(0);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().message, "value 0 is not positive");
}

}  // namespace
}  // namespace realm
