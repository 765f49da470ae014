// Binds model tensors by name with their expected shapes. A missing or
// misshapen tensor, or one whose type moeserve cannot compute with, is an
// error naming the tensor.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "gguf/gguf_file.h"

namespace moeserve {

class WeightBinder {
  public:
    explicit WeightBinder(const GgufFile& file) : file_(file) {}

    // Expected shape in GGUF order {ne0, ne1, ...}; trailing 1s may be left out.
    Weight require(const std::string& name, std::vector<int64_t> shape);
    // An empty Weight when absent; a present one must have the shape.
    Weight optional(const std::string& name, std::vector<int64_t> shape);
    // Tensors of the file nothing bound (llama.cpp refuses such files; we
    // list them so the caller can warn).
    std::vector<std::string> unused() const;

  private:
    Weight bind(const GgufTensorInfo& t, const std::vector<int64_t>& shape);

    const GgufFile& file_;
    std::set<std::string> used_;
};

}  // namespace moeserve
