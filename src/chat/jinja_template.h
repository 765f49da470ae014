// A parsed Jinja template and its render entry point.
//
//   jinja::Template t(source);                 // throws TemplateError (with line)
//   std::string out = t.render(variables_json); // throws TemplateError
//
// Semantics follow Python Jinja2 3.1 as Hugging Face transformers sets it up
// for chat templates (see ../shared/spec/chat-templates.md, section 1).
// Rendering is bounded by RenderLimits so that a hostile template can neither
// hang nor exhaust memory or stack.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "chat/jinja_ast.h"
#include "chat/jinja_value.h"

namespace moeserve::jinja {

struct RenderLimits {
    size_t max_output_bytes = size_t{256} << 20;  // the rendered text, all macro buffers included
    size_t max_string_bytes = size_t{256} << 20;  // any one string value
    uint64_t max_work_bytes = uint64_t{8} << 30;  // bytes produced by string and list operations, summed
    uint64_t max_steps = 200'000'000;             // statements + expressions evaluated (also loop iterations)
    int max_depth = 400;                          // nesting of evaluation, macro calls included
    int max_value_depth = 256;                    // nesting of lists/dicts built by the template
};

class Template {
  public:
    explicit Template(std::string_view source);

    // variables: a dict of template variables (from JSON, or built with Value).
    std::string render(const Value& variables, const RenderLimits& limits = {}) const;
    std::string render(const nlohmann::ordered_json& variables, const RenderLimits& limits = {}) const;

  private:
    std::shared_ptr<const Body> body_;
};

}  // namespace moeserve::jinja
