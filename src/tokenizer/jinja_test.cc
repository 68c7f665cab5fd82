// Unit tests of the Jinja interpreter: errors with positions, scoping, and the limits that keep
// hostile templates (they come from model files) from exhausting the stack, memory or time.
// Conformance with python3-jinja2 is in chat_template_test.cc.
#include "tokenizer/jinja.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace realm::jinja {
namespace {

std::string render(const std::string& src, Value ctx = Value::object(), Limits limits = {}) {
  auto t = Template::parse(src, limits);
  if (!t) return "PARSE ERROR: " + t.error().message;
  auto r = t->render(ctx, limits);
  if (!r) return "ERROR: " + r.error().message;
  return *r;
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(Jinja, TextAndTrailingNewline) {
  EXPECT_EQ(render("hello"), "hello");
  EXPECT_EQ(render("hello\n"), "hello");  // keep_trailing_newline=False
  EXPECT_EQ(render("a\r\nb\rc"), "a\nb\nc");
  EXPECT_EQ(render("{{ 'x' }}\n\n"), "x\n");
}

TEST(Jinja, ParseErrorsCarryLineAndColumn) {
  std::string e = render("line one\n{% if x %}\nno end");
  EXPECT_TRUE(contains(e, "PARSE ERROR: template line 3")) << e;
  EXPECT_TRUE(contains(e, "'endif'")) << e;
  e = render("ab\n  {{ x | }}");
  EXPECT_TRUE(contains(e, "template line 2, column 10")) << e;
  e = render("{% include 'other.jinja' %}");
  EXPECT_TRUE(contains(e, "template line 1, column 4: unsupported statement 'include'")) << e;
  EXPECT_TRUE(contains(render("{% for x in y recursive %}{% endfor %}"), "recursive"));
  EXPECT_TRUE(contains(render("{{ 'unterminated }}"), "unterminated string"));
  EXPECT_TRUE(contains(render("{# never closed"), "unclosed comment"));
  EXPECT_TRUE(contains(render("{{ x"), "missing '}}'"));
  EXPECT_TRUE(contains(render("{{ a ! b }}"), "unexpected character '!'"));
  EXPECT_TRUE(contains(render("{{ 99999999999999999999 }}"), "out of range"));
}

TEST(Jinja, RuntimeErrorsCarryPosition) {
  std::string e = render("\n\n  {{ 'a' | nosuchfilter }}");
  EXPECT_TRUE(contains(e, "ERROR: template line 3, column 10: unknown filter 'nosuchfilter'")) << e;
  e = render("{{ missing.attr }}");
  EXPECT_TRUE(contains(e, "'missing' is undefined")) << e;
  EXPECT_TRUE(contains(render("{{ 1 + 'a' }}"), "unsupported operand"));
  EXPECT_TRUE(contains(render("{{ raise_exception('boom') }}"), "raise_exception: boom"));
  EXPECT_TRUE(contains(render("{{ 9223372036854775807 + 1 }}"), "overflow"));
  EXPECT_TRUE(contains(render("{{ 1 // 0 }}"), "by zero"));
  EXPECT_TRUE(contains(render("{{ nofunc() }}"), "'nofunc' is undefined"));
  EXPECT_TRUE(contains(render("{{ [].append(1) }}"), "immutable"));
  EXPECT_TRUE(contains(render("{% set d = {} %}{% set d.x = 1 %}"), "non-namespace"));
  EXPECT_TRUE(contains(render("{{ x is frobnicated }}"), "unknown test"));
}

TEST(Jinja, Globals) {
  EXPECT_EQ(render("{{ strftime_now('%Y') | length }} {{ strftime_now('%Y') | int > 2000 }}"),
            "4 True");
  EXPECT_EQ(render("{{ range(2, 7, 2) | list }} {{ dict(a=1) }} {{ namespace(x=2).x }}"),
            "[2, 4, 6] {'a': 1} 2");
  Value ctx = Value::object();
  ctx.set("range", Value::string("shadowed"));
  EXPECT_EQ(render("{{ range }}", ctx), "shadowed");
}

TEST(Jinja, UndefinedIsLenient) {
  EXPECT_EQ(render("[{{ nothing }}][{{ nothing | length }}][{{ {}.missing }}]"), "[][0][]");
  EXPECT_EQ(render("{% for x in nothing %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{{ none.attr is defined }}"), "False");
}

TEST(Jinja, Scoping) {
  // A set inside a loop body lasts one iteration and never leaks; namespaces carry state out.
  EXPECT_EQ(render("{% set y = 1 %}{% for x in [1, 2] %}{% if loop.first %}{% set y = 5 %}"
                   "{% endif %}[{{ y }}]{% endfor %}[{{ y }}]"),
            "[5][1][1]");
  EXPECT_EQ(render("{% set ns = namespace(n=0) %}{% for x in range(4) %}{% set ns.n = ns.n + x %}"
                   "{% endfor %}{{ ns.n }}"),
            "6");
  // Macros see the top level and their arguments, not the caller's loop variables.
  EXPECT_EQ(render("{% set g = 'G' %}{% macro m(a, b='B') %}{{ g }}{{ a }}{{ b }}{{ x }}"
                   "{% endmacro %}{% for x in [1] %}{{ m(1) }}{{ m(2, b=3) }}{% endfor %}"),
            "G1BG23");
  // Macros are closures over the scopes where they are defined (late-bound).
  EXPECT_EQ(render("{% for i in [1] %}{% set b = 5 %}{% macro m() %}{{ b }}{{ i }}{% endmacro %}"
                   "{{ m() }}{% set b = 6 %}{{ m() }}{% endfor %}"),
            "5161");
  // Jinja quirks kept: the for-else runs when no iteration reached the end of the body, and a
  // nested frame reads a name its parent frame assigns later as undefined.
  EXPECT_EQ(render("{% for i in [1, 2] %}{% continue %}{% else %}E{% endfor %}"), "E");
  EXPECT_EQ(render("{% for i in [1, 2] %}{% break %}{% else %}E{% endfor %}"), "E");
  EXPECT_EQ(render("{% for i in [1, 2] %}x{% if i == 2 %}{% break %}{% endif %}{% else %}E"
                   "{% endfor %}"),
            "xx");
  Value c = Value::object();
  c.set("c", Value::string("ctx"));
  EXPECT_EQ(render("{% for i in [1] %}[{{ c }}]{% endfor %}{% set c = 1 %}", c), "[]");
  EXPECT_EQ(render("{{ c }}{% for i in [1] %}[{{ c }}]{% endfor %}{% set c = 1 %}", c), "ctx[ctx]");
  EXPECT_EQ(
      render("{% for i in [1] %}[{{ c }}]{% endfor %}{% if true %}{% set c = 1 %}{% endif %}", c),
      "[ctx]");
  EXPECT_EQ(render("{% set c %}blk{{ c }}{% set d = 1 %}{% endset %}{{ c }}[{{ d }}]", c), "blk[]");
  // Context variables can be shadowed at the top level.
  Value ctx = Value::object();
  ctx.set("messages", Value::array({Value::integer(1), Value::integer(2)}));
  EXPECT_EQ(render("{% set messages = messages[1:] %}{{ messages }}", ctx), "[2]");
}

TEST(Jinja, ContextMustBeAnObject) {
  auto t = Template::parse("x");
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->render(Value::integer(3)).ok());
  EXPECT_TRUE(t->render(Value()).ok());
}

TEST(Jinja, HostileNestingIsAnErrorNotACrash) {
  std::string deep = "{{ " + std::string(100000, '(') + "1" + std::string(100000, ')') + " }}";
  EXPECT_TRUE(contains(render(deep), "nesting deeper than")) << render(deep).substr(0, 200);
  std::string deep_list = "{{ " + std::string(100000, '[') + std::string(100000, ']') + " }}";
  EXPECT_TRUE(contains(render(deep_list), "nesting deeper than"));
  std::string ifs;
  for (int i = 0; i < 5000; ++i) ifs += "{% if true %}";
  for (int i = 0; i < 5000; ++i) ifs += "{% endif %}";
  EXPECT_TRUE(contains(render(ifs), "nesting deeper than"));
  std::string nots = "{{ " + std::string(0, ' ');
  for (int i = 0; i < 50000; ++i) nots += "not ";
  nots += "1 }}";
  EXPECT_TRUE(contains(render(nots), "nesting deeper than"));
  std::string minus = "{{ " + std::string(100000, '-') + "1 }}";
  EXPECT_TRUE(contains(render(minus), "nesting deeper than"));
  EXPECT_TRUE(
      contains(render("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}"), "deeper than"));
}

TEST(Jinja, HostileLoopsAndSizesAreBounded) {
  Limits small;
  small.max_steps = 100000;
  small.max_output_bytes = 1 << 20;
  small.max_array_items = 100000;
  small.max_total_bytes = 16 << 20;
  EXPECT_TRUE(contains(render("{% for a in range(1000) %}{% for b in range(1000) %}"
                              "{% endfor %}{% endfor %}",
                              Value::object(), small),
                       "loop iterations"));
  EXPECT_TRUE(contains(
      render("{% for a in range(10000) %}{{ 'x' * 1000 }}{% endfor %}", Value::object(), small),
      "rendered output exceeds"));
  EXPECT_TRUE(contains(render("{% set ns = namespace(s='x') %}{% for i in range(100) %}"
                              "{% set ns.s = ns.s + ns.s %}{% endfor %}",
                              Value::object(), small),
                       "too large"));
  EXPECT_TRUE(contains(render("{% set ns = namespace(l=[1]) %}{% for i in range(100) %}"
                              "{% set ns.l = ns.l + ns.l %}{% endfor %}",
                              Value::object(), small),
                       "exceeds the limit"));
  EXPECT_TRUE(contains(render("{{ range(1000000000000) | length }}", Value::object(), small),
                       "range() of more than"));
  EXPECT_TRUE(contains(render("{{ 'ab' * 1000000000000 }}", Value::object(), small), "too large"));
  EXPECT_TRUE(
      contains(render("{{ [1, 2] * 1000000000000 }}", Value::object(), small), "too large"));
  EXPECT_TRUE(contains(render("{% set ns = namespace(l=[]) %}{% for i in range(5000) %}"
                              "{% set ns.l = ns.l + [i] %}{% endfor %}",
                              Value::object(), small),
                       "bytes of strings and arrays"));
  // Deeply nested values (their destruction and comparison recurse) and namespace cycles.
  EXPECT_TRUE(contains(render("{% set ns = namespace(x=[]) %}{% for i in range(100000) %}"
                              "{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x == ns.x }}"),
                       "nested deeper than"));
  EXPECT_TRUE(contains(render("{% set ns = namespace(x={}) %}{% for i in range(100000) %}"
                              "{% set ns.x = {'a': ns.x} %}{% endfor %}"),
                       "nested deeper than"));
  EXPECT_TRUE(contains(render("{% set ns = namespace(x={}) %}{% for i in range(100000) %}"
                              "{% set ns.x = dict(a=ns.x) %}{% endfor %}"),
                       "nested deeper than"));
  EXPECT_TRUE(contains(render("{% set ns = namespace(me=none) %}{% set ns.me = ns %}"),
                       "namespace inside a namespace"));
  EXPECT_TRUE(contains(render("{% set a = namespace(v=1) %}{% set b = namespace(a=a) %}"
                              "{% set a.v = [b] %}"),
                       "namespace inside a namespace"));
  // Within the limits the same constructs work.
  EXPECT_EQ(render("{{ ('ab' * 3) | length }} {{ range(5) | sum }}"), "6 10");
}

// Random edits of the fixture templates: parsing and rendering must fail cleanly or succeed,
// never crash (this is what the ASan/UBSan build checks).
TEST(Jinja, MutatedTemplatesNeverCrash) {
  namespace fs = std::filesystem;
  fs::path dir = fs::path(REALM_SOURCE_DIR) / "src/tokenizer/testdata/templates";
  Limits small;
  small.max_steps = 20000;
  small.max_output_bytes = 1 << 16;
  Value msg = Value::object();
  msg.set("role", Value::string("user"));
  msg.set("content", Value::string("hi"));
  Value ctx = Value::object();
  ctx.set("messages", Value::array({msg, msg}));
  ctx.set("add_generation_prompt", Value::boolean(true));
  std::mt19937 rng(1234);
  const std::string alphabet = "{}%#-+()[]'\"|.,:~*/ \nabcxyz0123456789=<>!\xff\xc3\xa9";
  int n_ok = 0, n_err = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::ifstream in(e.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string base = ss.str();
    for (int round = 0; round < 150; ++round) {
      std::string s = base;
      int edits = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < edits && !s.empty(); ++k) {
        size_t pos = rng() % s.size();
        switch (rng() % 3) {
          case 0:
            s.erase(pos, 1 + rng() % 3);
            break;
          case 1:
            s.insert(pos, 1, alphabet[rng() % alphabet.size()]);
            break;
          default:
            s[pos] = alphabet[rng() % alphabet.size()];
        }
      }
      auto t = Template::parse(s, small);
      if (!t) {
        ++n_err;
        EXPECT_EQ(t.error().message.rfind("template line ", 0), 0u) << t.error().message;
        continue;
      }
      auto r = t->render(ctx, small);
      r.ok() ? ++n_ok : ++n_err;
    }
  }
  EXPECT_GT(n_ok, 0);
  EXPECT_GT(n_err, 0);
}

}  // namespace
}  // namespace realm::jinja
