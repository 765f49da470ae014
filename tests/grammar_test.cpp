// GBNF parsing and matching, JSON Schema -> grammar, and sampling under a
// grammar over a real vocabulary. Expected sentences and non-sentences are
// written by hand from the grammars' meaning; JSON validity is checked with
// nlohmann::json's parser, which shares no code with the grammar.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "engine/grammar_sampler.h"
#include "fixtures.h"
#include "grammar/gbnf.h"
#include "grammar/grammar_matcher.h"
#include "grammar/json_schema_grammar.h"
#include "text/tokenizer.h"

namespace moeserve {
namespace {

using json = nlohmann::ordered_json;

std::shared_ptr<const Grammar> compile(const std::string& gbnf) {
    return std::make_shared<const Grammar>(parse_gbnf(gbnf));
}

// Whether `text` is a complete sentence, fed in pieces of `step` bytes.
bool matches(const std::shared_ptr<const Grammar>& g, const std::string& text, size_t step = 1) {
    GrammarMatcher m(g);
    for (size_t i = 0; i < text.size(); i += step)
        if (!m.accept(text.substr(i, step))) return false;
    return m.accepting();
}

std::string gbnf_error(const std::string& gbnf) {
    try {
        parse_gbnf(gbnf);
    } catch (const GrammarError& e) {
        return e.what();
    }
    return "";
}

TEST(Gbnf, literals_classes_groups_and_repetitions) {
    auto g = compile(R"(
root  ::= greet " " name ("!" | "?")+   # one or more marks
greet ::= "hi" | "hello"
name  ::= [A-Z] [a-z]{1,3} digit?
digit ::= [0-9]
)");
    for (const char* ok : {"hi Bob!", "hello Anna?!", "hi Al7!!!", "hi Bo?"}) EXPECT_TRUE(matches(g, ok)) << ok;
    for (const char* bad : {"hi bob!", "hi Bobby!", "hi Bob", "hey Bob!", "hi B!", "hi Bob!x", "hi Al77!"})
        EXPECT_FALSE(matches(g, bad)) << bad;
}

TEST(Gbnf, escapes_negation_any_and_unicode) {
    auto g = compile(R"(root ::= "\x41\u00e9\n" [^\n"]* "\"" . [α-ω])");
    EXPECT_TRUE(matches(g, "Aé\nfree text\"€β"));
    EXPECT_TRUE(matches(g, "Aé\nfree text\"€β", 3));  // pieces split inside characters
    EXPECT_FALSE(matches(g, "Aé\nno\nnewlines\"xβ"));
    EXPECT_FALSE(matches(g, "Aé\n\"xb"));  // b is not a Greek letter
}

TEST(Gbnf, bounded_and_unbounded_counts) {
    auto g = compile(R"(root ::= "a"{2} "b"{1,} "c"{0,2} "d"{3,4})");
    EXPECT_TRUE(matches(g, "aabddd"));
    EXPECT_TRUE(matches(g, "aabbbccdddd"));
    EXPECT_FALSE(matches(g, "abddd"));
    EXPECT_FALSE(matches(g, "aabcccddd"));
    EXPECT_FALSE(matches(g, "aabddddd"));
}

TEST(Gbnf, errors_name_the_problem_and_the_line) {
    EXPECT_NE(gbnf_error("root ::= item\n").find("'item' is used but never defined"), std::string::npos);
    EXPECT_NE(gbnf_error("start ::= \"x\"\n").find("no 'root' rule"), std::string::npos);
    EXPECT_NE(gbnf_error("root ::= root \"x\" | \"y\"\n").find("left-recursive"), std::string::npos);
    EXPECT_NE(gbnf_error("root ::= \"x\"\nroot ::= \"y\"\n").find("defined twice"), std::string::npos);
    EXPECT_NE(gbnf_error("root ::= \"x\n").find("line 1"), std::string::npos);
    EXPECT_NE(gbnf_error("root ::= \"a\"\nb ::= [z-a]\n").find("line 2"), std::string::npos);
    EXPECT_NE(gbnf_error("root ::= \"a\"{99999}").find("repetition count"), std::string::npos);
    EXPECT_NE(gbnf_error("root ::= (\"a\"").find("expected ')'"), std::string::npos);
    EXPECT_NE(gbnf_error("root ::= \"\\q\"").find("unknown escape"), std::string::npos);
}

TEST(Gbnf, right_recursion_keeps_matching_long_inputs) {
    auto g = compile("root ::= item*\nitem ::= [ab]");
    EXPECT_TRUE(matches(g, std::string(20000, 'a')));
}

TEST(JsonSchemaGrammar, objects_with_required_optional_and_nested_values) {
    const json schema = json::parse(R"({
      "type": "object",
      "properties": {
        "name": {"type": "string", "maxLength": 5},
        "age": {"type": "integer"},
        "score": {"type": "number"},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 1, "maxItems": 2},
        "ok": {"type": ["boolean", "null"]}
      },
      "required": ["name", "age"]})");
    auto g = compile(json_schema_to_gbnf(schema));
    for (const char* ok : {R"({"name": "bob", "age": 12})", R"({"name":"","age":-3,"tags":["a","b"]})",
                           R"({"name": "x", "age": 0, "score": 1.5e-3, "ok": null})",
                           "{\n  \"name\": \"\\u00e9\", \"age\": 1, \"ok\": true}"}) {
        EXPECT_TRUE(json::accept(ok)) << ok;  // the examples are JSON at all
        EXPECT_TRUE(matches(g, ok)) << ok;
    }
    for (const char* bad : {R"({"age": 12, "name": "bob"})",           // required order
                            R"({"name": "bob"})",                      // age missing
                            R"({"name": "toolong", "age": 1})",        // maxLength
                            R"({"name": "b", "age": 1.5})",            // integer
                            R"({"name": "b", "age": 1, "tags": []})",  // minItems
                            R"({"name": "b", "age": 1, "tags": ["c"]})", R"({"name": "b", "age": 1, "x": 1})",
                            R"({"name": "b", "age": 01})"})
        EXPECT_FALSE(matches(g, bad)) << bad;
}

TEST(JsonSchemaGrammar, refs_anyof_const_and_json_object) {
    const json schema = json::parse(R"({
      "$defs": {"node": {"type": "object", "properties": {"v": {"const": 1}, "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}},
                         "required": ["v", "next"]}},
      "$ref": "#/$defs/node"})");
    auto g = compile(json_schema_to_gbnf(schema));
    EXPECT_TRUE(matches(g, R"({"v": 1, "next": {"v": 1, "next": null}})"));
    EXPECT_FALSE(matches(g, R"({"v": 2, "next": null})"));

    auto any = compile(json_object_gbnf());
    EXPECT_TRUE(matches(any, R"({"a": [1, {"b": "c"}, true, null], "d": -0.5})"));
    EXPECT_FALSE(matches(any, R"([1, 2])"));
    EXPECT_FALSE(matches(any, R"({"a": 1,})"));
}

TEST(JsonSchemaGrammar, constraints_it_cannot_enforce_are_refused_by_name) {
    for (const char* kw : {"pattern", "minimum", "multipleOf", "not"}) {
        json schema = {{"type", "string"}};
        schema[kw] = 1;
        try {
            json_schema_to_gbnf(schema);
            ADD_FAILURE() << kw << " was accepted";
        } catch (const GrammarError& e) {
            EXPECT_NE(std::string(e.what()).find(kw), std::string::npos) << e.what();
        }
    }
}

// Random walks over a real vocabulary: at every step, a random token among
// those sample_with_grammar may pick; the text stays valid, and when the
// walk ends (end of generation), it is a JSON document of the schema's shape.
TEST(GrammarSampling, every_allowed_token_keeps_the_output_valid_json) {
    MOESERVE_REQUIRE_FIXTURES();
    const Tokenizer tok = Tokenizer::from_file(test::fixture("models/qwen3moe-tiny-s1-f16.gguf").string());
    const TokenPieces pieces(tok, false);
    const json schema = json::parse(
        R"({"type":"object","properties":{"name":{"type":"string","maxLength":8},"n":{"type":"integer"}},"required":["name","n"]})");
    auto g = compile(json_schema_to_gbnf(schema));
    std::mt19937 rng(11);
    int finished = 0;
    for (int walk = 0; walk < 40; ++walk) {
        GrammarMatcher m(g);
        std::string text;
        for (int step = 0; step < 1000; ++step) {  // the grammar bounds the length well below
            // Random logits: sample_with_grammar must still return an allowed token.
            std::vector<float> logits(tok.n_tokens());
            std::normal_distribution<float> d(0, 3);
            for (float& l : logits) l = d(rng);
            SamplingParams sp;
            sp.seed = rng();
            Sampler sampler(sp, static_cast<int32_t>(logits.size()));
            std::vector<float> scratch;
            const int32_t t = sample_with_grammar(sampler, logits, m, pieces, tok, scratch);
            if (tok.is_eog(t)) {
                ASSERT_TRUE(m.accepting()) << "ended early: [" << text << "] can_continue=" << m.can_continue();
                const json parsed = json::parse(text);
                EXPECT_TRUE(parsed["name"].is_string() && parsed["n"].is_number_integer()) << text;
                ++finished;
                break;
            }
            ASSERT_TRUE(m.accept(pieces[t])) << "sampled a token the grammar rejects: " << text << " + " << pieces[t];
            text += pieces[t];
        }
    }
    EXPECT_EQ(finished, 40);  // every walk ends: the grammar allows only end of generation after "}" and its space
}

}  // namespace
}  // namespace moeserve
