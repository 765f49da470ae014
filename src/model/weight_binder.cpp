#include "model/weight_binder.h"

#include <fmt/format.h>

#include "quant/vec_dot.h"

namespace moeserve {
namespace {

std::string shape_string(const std::vector<int64_t>& s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
}

}  // namespace

Weight WeightBinder::bind(const GgufTensorInfo& t, const std::vector<int64_t>& shape) {
    bool ok = shape.size() <= 4;
    for (size_t d = 0; d < 4 && ok; ++d) ok = t.ne[d] == (d < shape.size() ? shape[d] : 1);
    if (!ok)
        throw GgufError(fmt::format("{}: tensor {} has shape {}, expected {}", file_.path(), t.name, t.shape_string(),
                                    shape_string(shape)));
    if (!vec_dot_kernel(t.type))
        throw GgufError(
            fmt::format("{}: tensor {} has type {}, which moeserve cannot compute with yet (supported: "
                        "f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q4_K, q5_K, q6_K, iq4_nl, iq4_xs)",
                        file_.path(), t.name, ggml_type_name(t.type)));
    Weight w;
    w.name = t.name;
    w.type = t.type;
    w.ne = t.ne;
    w.row_bytes = ggml_row_bytes(t.type, t.ne[0]);
    w.matrix_bytes = w.row_bytes * static_cast<size_t>(t.ne[1]);
    w.data = file_.tensor_data(t);
    used_.insert(t.name);
    return w;
}

Weight WeightBinder::require(const std::string& name, std::vector<int64_t> shape) {
    const GgufTensorInfo* t = file_.find_tensor(name);
    if (!t)
        throw GgufError(
            fmt::format("{}: missing tensor {} (expected shape {})", file_.path(), name, shape_string(shape)));
    return bind(*t, shape);
}

Weight WeightBinder::optional(const std::string& name, std::vector<int64_t> shape) {
    const GgufTensorInfo* t = file_.find_tensor(name);
    return t ? bind(*t, shape) : Weight{};
}

std::vector<std::string> WeightBinder::unused() const {
    std::vector<std::string> out;
    for (const auto& t : file_.tensors())
        if (!used_.count(t.name)) out.push_back(t.name);
    return out;
}

}  // namespace moeserve
