// JSON Schema -> GBNF, for `json_schema` and `response_format` requests:
// the grammar accepts exactly the JSON texts the schema allows (with bounded
// whitespace between tokens, so a model cannot stall on spaces).
//
// Supported: type (one or a list), properties / required /
// additionalProperties (objects list required properties first, then the
// optional ones in schema order), items / prefixItems / minItems / maxItems,
// minLength / maxLength, enum, const, anyOf / oneOf, a one-element allOf,
// $ref to #/$defs/... or #/definitions/... (recursion allowed). Annotations
// (title, description, default, examples, format, $schema, $id) are ignored.
// A keyword that would constrain the value in a way this does not enforce
// (pattern, minimum, maximum, multipleOf, not, ...) is an error naming it,
// rather than a grammar that silently allows more.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "grammar/gbnf.h"

namespace moeserve {

// Throws GrammarError for a schema it cannot express.
std::string json_schema_to_gbnf(const nlohmann::ordered_json& schema);

// A GBNF string literal ("...", with escapes) matching exactly s.
std::string gbnf_literal(const std::string& s);

// Any JSON object ({"type": "json_object"} response format).
std::string json_object_gbnf();

}  // namespace moeserve
