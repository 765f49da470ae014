// The Jinja interpreter, feature by feature, against what Python Jinja2 3.1
// (trim_blocks, lstrip_blocks, json.dumps-style tojson) renders; error
// messages with line numbers; render limits against hostile templates.
#include <gtest/gtest.h>

#include <string>

#include "chat/jinja_template.h"

namespace moeserve::jinja {
namespace {

using json = nlohmann::ordered_json;

const json& vars() {
    static const json v = json::parse(R"({
        "s": "  Hello World  ", "l": [3, 1, 2], "d": {"b": 1, "a": [1, "x", null, true, 1.5]},
        "n": null, "t": true, "f": 0.1, "e": "", "u": "h\u00e9llo \u4e16\u754c",
        "msgs": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    })");
    return v;
}

std::string render(const std::string& src, const json& v = vars()) {
    return Template(src).render(v);
}

std::string error_of(const std::string& src, const RenderLimits& limits = {}) {
    try {
        Template(src).render(vars(), limits);
    } catch (const TemplateError& e) {
        return e.what();
    }
    return "no error";
}

TEST(JinjaWhitespace, TrimBlocksAndLstripBlocksAsHuggingFace) {
    EXPECT_EQ(render("a\n  {% if t %}\n  x\n  {% endif %}\nb"), "a\n  x\nb");
    EXPECT_EQ(render("{%- if t -%}\n   x   \n{%- endif -%}\n  y"), "xy");
    EXPECT_EQ(render("  {%- set x = 1 %}\n  {{ x }}\n  {# comment #}\n  {#- c2 -#}\n  z"), "  1\nz");
    EXPECT_EQ(render("x {%+ if t %}y{% endif +%}\nz"), "x y\nz");
    EXPECT_EQ(render("  {{ 1 }}\n"), "  1");  // lstrip does not apply to {{; one trailing newline dropped
    EXPECT_EQ(render("{{-'a'}}  {{- 'b' -}}  c"), "abc");
}

TEST(JinjaPrinting, UsesPythonStrForEveryType) {
    EXPECT_EQ(render("{{ n }} {{ t }} {{ f }} {{ l }} {{ d }}"),
              "None True 0.1 [3, 1, 2] {'b': 1, 'a': [1, 'x', None, True, 1.5]}");
    EXPECT_EQ(render("{{ 1e-7 }} {{ 100000.0 }} {{ 1e16 }} {{ -0.0 }} {{ 2.5e-5 }}"),
              "1e-07 100000.0 1e+16 -0.0 2.5e-05");
    EXPECT_EQ(render("{{ (1, 2) }} {{ ('a',) }} {{ {'k': \"v'\"} }} {{ [\"it's\"] }} {{ zz }}|"),
              "(1, 2) ('a',) {'k': \"v'\"} [\"it's\"] |");
    EXPECT_EQ(render("{{ \"a\\tb\\\\n\\\"\" }}|{{ '\\x41\\u00e9' }}|{{ \"x\" \"y\" }}"), "a\tb\\n\"|A\xC3\xA9|xy");
}

TEST(JinjaTojson, IsJsonDumpsWithInsertionOrder) {
    EXPECT_EQ(render("{{ d | tojson }}"), R"({"b": 1, "a": [1, "x", null, true, 1.5]})");
    EXPECT_EQ(render("{{ u | tojson }}|{{ u | tojson(ensure_ascii=True) }}"),
              "\"h\xC3\xA9llo \xE4\xB8\x96\xE7\x95\x8C\"|\"h\\u00e9llo \\u4e16\\u754c\"");
    EXPECT_EQ(render("{{ {'a': [1, 2]} | tojson(indent=2) }}"), "{\n  \"a\": [\n    1,\n    2\n  ]\n}");
    EXPECT_EQ(render("{{ {'b': 1, 'a': '<&>'} | tojson(separators=(',', ':'), sort_keys=true) }}"),
              R"({"a":"<&>","b":1})");
}

TEST(JinjaExpressions, PrecedenceFollowsJinja2) {
    EXPECT_EQ(render("{{ '\\n' + s | trim + '\\n' }}"), "\nHello World\n");
    EXPECT_EQ(render("{{ s | trim | length > 0 }} {{ (l|length - 1) - 1 }} {{ not n is defined }}"), "True 1 False");
    EXPECT_EQ(render("{{ 'x' ~ s | trim }} {{ 'a' if t else 'b' }} {{ 'a' if not t else 'b' }} {{ 'a' if n }}|"),
              "xHello World a b |");
    EXPECT_EQ(render("{{ not(t and n) }} {{ t and 'yes' }} {{ n or 'dflt' }} {{ -l[0] }} {{ 2 + 3 * 4 ** 2 }}"),
              "True yes dflt -3 50");
    EXPECT_EQ(render("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 1 + 2.5 }} {{ 'ab' * 3 }}"),
              "3 -4 1 2 3.5 3.5 ababab");
    EXPECT_EQ(render("{{ 1 == 1.0 }} {{ True == 1 }} {{ [1, 2] == [1, 2] }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }}"),
              "True True True True True");
    EXPECT_EQ(render("{{ 'b' in d }} {{ 'ell' in s }} {{ 3 in l }} {{ 5 not in l }}"), "True True True True");
}

TEST(JinjaExpressions, SubscriptsSlicesAndAttributes) {
    EXPECT_EQ(render("{{ l[::-1] }} {{ l[1:] }} {{ l[-1] }} {{ l[5] }}|{{ l[-5:2] }} {{ l[::2] }}"),
              "[2, 1, 3] [1, 2] 2 |[3, 1] [3, 2]");
    EXPECT_EQ(render("{{ u[1:3] }} {{ u[::-1] }} {{ u | length }}"),
              "\xC3\xA9l \xE7\x95\x8C\xE4\xB8\x96 oll\xC3\xA9h 8");
    EXPECT_EQ(render("{{ d['a'][1] }} {{ d.a.1 }} {{ d.missing.deeper }}|{{ msgs[0].role }}"), "x x |user");
    // A key named like a dict method is reachable by subscript.
    EXPECT_EQ(render("{{ x['items'] }} {{ x.items() | list }}", json{{"x", {{"items", 5}}}}), "5 [('items', 5)]");
}

TEST(JinjaTests, CoverTheTemplateSubset) {
    EXPECT_EQ(render("{{ zz is defined }} {{ n is none }} {{ t is false }} {{ 0 is false }} {{ d is mapping }}"),
              "False True False False True");
    EXPECT_EQ(
        render("{{ d is sequence }} {{ s is iterable }} {{ 1 is iterable }} {{ s is string }} {{ l is not string }}"),
        "True True False True True");
    EXPECT_EQ(render("{{ 3 is odd }} {{ 4 is divisibleby 2 }} {{ 'ab' is lower }} {{ 1 is number }} {{ 1 is eq 1 }}"),
              "True True True True True");
}

TEST(JinjaStatements, ForLoopVariablesFilterElseAndControls) {
    EXPECT_EQ(render("{% for k, v in d.items() %}{{ loop.index0 }}{{ k }}={{ v }};{% endfor %}"),
              "0b=1;1a=[1, 'x', None, True, 1.5];");
    EXPECT_EQ(render("{% for k in d %}{{ k }}{{ loop.previtem }}{{ loop.nextitem }}{% endfor %}"), "baab");
    EXPECT_EQ(render("{% for x in l if x > 1 %}{{ loop.index }}/{{ loop.length }}:{{ x }}"
                     "{% if loop.last %}!{% endif %}{% endfor %}"),
              "1/2:32/2:2!");
    EXPECT_EQ(render("{% for x in l %}{% if x == 1 %}{% continue %}{% endif %}{{ x }}{% if x == 2 %}{% break %}"
                     "{% endif %}{% endfor %}"),
              "32");
    EXPECT_EQ(
        render("{% for m in [] %}x{% else %}empty{% endfor %} {% for x in l %}{{ loop.cycle('a', 'b') }}{% endfor %}"),
        "empty aba");
    EXPECT_EQ(render("{% for a, b in [[1, 2], [3, 4]] %}{{ a * b }}{% endfor %}"), "212");
}

TEST(JinjaStatements, ScopingNamespaceAndSet) {
    EXPECT_EQ(render("{% set ns = namespace(a=1, b=l|length - 1) %}{% for x in l %}{% set ns.a = ns.a + x %}"
                     "{% set y = x %}{% endfor %}{{ ns.a }} {{ ns.b }} {{ y }}|"),
              "7 2 |");
    EXPECT_EQ(render("{% set x = 1 %}{% if t %}{% set x = 2 %}{% endif %}{{ x }}"), "2");
    EXPECT_EQ(render("{% for m in msgs %}{% set m = m.role %}{{ m }}{% endfor %}"), "userassistant");
    EXPECT_EQ(render("{% set a, b = 1, 2 %}{{ a }}{{ b }}"), "12");
    EXPECT_EQ(render("{% set x %}block {{ 1 + 2 }}{% endset %}[{{ x }}]{% filter upper %}hi{% endfilter %}"),
              "[block 3]HI");
}

TEST(JinjaStatements, MacrosReturnTextAndSeeGlobals) {
    EXPECT_EQ(render("{% macro m(a, b) %}[{{ a }}|{{ b }}|{{ t }}]{% endmacro %}{{ m(1) }}"
                     "{% set c = m('x', b=2) %}{{ c.strip('[]') }}"),
              "[1||True]x|2|True");
    EXPECT_EQ(render("{% macro d(x='dflt') %}{{ x }}{% endmacro %}{{ d() }}{{ d(3) }}"), "dflt3");
    EXPECT_EQ(render("{% macro outer(x) %}{{ caller(x) }}{% endmacro %}{% call(v) outer(5) %}got {{ v }}{% endcall %}"),
              "got 5");
}

TEST(JinjaMethods, PythonStringAndDictMethods) {
    EXPECT_EQ(render("{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ 'xxhixx'.strip('x') }}"),
              "Hello World|Hello World  |  Hello World|hi");
    EXPECT_EQ(render("{{ s.split(' ') }} {{ s.split() }} {{ 'a,b,,c'.split(',', 1) }} {{ 'a-b-c'.rsplit('-', 1) }}"),
              "['', '', 'Hello', 'World', '', ''] ['Hello', 'World'] ['a', 'b,,c'] ['a-b', 'c']");
    EXPECT_EQ(render("{{ 'abc'.startswith('a') }} {{ 'abc'.endswith(('x', 'c')) }} {{ 'a\\n\\nb\\n'.rstrip('\\n') }}"),
              "True True a\n\nb");
    EXPECT_EQ(render("{{ d.get('zz', 5) }} {{ d.get('b') }} {{ d.keys() | list }} {{ s.replace('l', 'L') }}"),
              "5 1 ['b', 'a']   HeLLo WorLd  ");
    EXPECT_EQ(render("{{ '<think>x</think>y'.split('</think>')[-1] }} {{ 'a'.upper() }} {{ 'Ab'.lower() }}"), "y A ab");
}

TEST(JinjaFilters, CommonFilters) {
    EXPECT_EQ(render("{{ zz | default('dflt') }} {{ e | default('x', true) }} {{ e | default('x') }}|"), "dflt x |");
    EXPECT_EQ(render("{{ d | items | list }} {{ l | join(', ') }} {{ l | sort }} {{ l | max }} {{ l | sum }}"),
              "[('b', 1), ('a', [1, 'x', None, True, 1.5])] 3, 1, 2 [1, 2, 3] 3 6");
    EXPECT_EQ(
        render(
            "{{ msgs | selectattr('role', 'equalto', 'user') | list }} {{ msgs | map(attribute='role') | join(',') }}"),
        "[{'role': 'user', 'content': 'hi'}] user,assistant");
    EXPECT_EQ(render("{{ 3.7 | int }} {{ '42' | int }} {{ '4.5' | float }} {{ 3.14159 | round(2) }} {{ -3 | abs }}"),
              "3 42 4.5 3.14 3");
    EXPECT_EQ(render("{{ 'hello world' | title }} {{ 'hELLO' | capitalize }} {{ l | first }} {{ l | last }} {{ true | "
                     "string }}"),
              "Hello World Hello 3 2 True");
    EXPECT_EQ(
        render("{{ range(3) | list }} {{ l | reverse | list }} {{ 'abc' | reverse }} {{ [1, 1, 2] | unique | list }}"),
        "[0, 1, 2] [2, 1, 3] cba [1, 2]");
}

TEST(JinjaErrors, NameTheLineAndTheProblem) {
    EXPECT_EQ(error_of("line1\n{{ x + }}"), "line 2: unexpected '}}' in expression");
    EXPECT_EQ(error_of("a\nb\n{{ s | nosuch }}"), "line 3: unknown filter 'nosuch'");
    EXPECT_EQ(error_of("{% if t %}\nx"), "line 2: unexpected end of template, expected 'elif' or 'else' or 'endif'");
    EXPECT_EQ(error_of("\n\n{{ raise_exception('bad input') }}"), "line 3: template raised an error: bad input");
    EXPECT_EQ(error_of("{% frobnicate %}"), "line 1: unknown statement 'frobnicate'");
    EXPECT_EQ(error_of("{{ 'abc }}"), "line 1: unterminated string literal");
    EXPECT_EQ(error_of("x\n{# never closed"), "line 2: unterminated comment (missing '#}')");
    EXPECT_EQ(error_of("{{ 1 + 'a' }}"), "line 1: unsupported operand types for +: 'int' and 'str'");
    EXPECT_EQ(error_of("{{ zz + 1 }}"), "line 1: 'zz' is undefined (operator '+')");
    EXPECT_EQ(error_of("{{ s is nosuch }}"), "line 1: unknown test 'nosuch'");
    EXPECT_EQ(error_of("{{ n.foo() }}"), "line 1: 'NoneType' object has no method 'foo'");
    EXPECT_EQ(error_of("{% set x = 1 %}{% set x.a = 2 %}"),
              "line 1: cannot assign attribute 'a' on 'x': it is not a namespace()");
    EXPECT_EQ(error_of("{{ d | items | items }}"), "line 1: can only get item pairs from a mapping, got 'list'");
    EXPECT_EQ(error_of("{{ 1 // 0 }}"), "line 1: division by zero");
}

TEST(JinjaLimits, StopHostileTemplates) {
    RenderLimits small;
    small.max_output_bytes = 1000;
    small.max_steps = 100000;
    small.max_string_bytes = 4096;
    EXPECT_EQ(error_of("{% for i in range(1000) %}{{ i }}{% endfor %}", small),
              "line 1: render limit reached: output over 1000 bytes");
    EXPECT_EQ(error_of("{% for i in range(1000000) %}{% endfor %}", small),
              "line 1: render limit reached: too many steps or loop iterations");
    EXPECT_EQ(
        error_of("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
                 small),
        "line 1: render limit reached: string of 8192 bytes");
    EXPECT_EQ(error_of("{{ 'x' * 100000 }}", small), "line 1: render limit reached: string of 100000 bytes");
    EXPECT_EQ(error_of("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}"),
              "line 1: render nested too deeply (recursion limit reached)");
    EXPECT_EQ(error_of("{% set ns = namespace(x=1) %}{% set ns.x = [ns] %}"),
              "line 1: cannot store a namespace inside itself");
    EXPECT_EQ(error_of("{{ " + std::string(1000, '(') + "1" + std::string(1000, ')') + " }}"),
              "line 1: template nested too deeply");
    EXPECT_EQ(error_of("{% set ns = namespace(x=[]) %}{% for i in range(1000) %}{% set ns.x = [ns.x] %}{% endfor %}"),
              "line 1: value nested too deeply");
}

}  // namespace
}  // namespace moeserve::jinja
