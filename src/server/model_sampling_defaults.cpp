#include "server/model_sampling_defaults.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <optional>

namespace moeserve {
namespace {

// A number from a key of any numeric type, or from a string holding one
// (llama.cpp formats the value as text, then parses it with strtol/strtof).
std::optional<double> number(const GgufFile& file, const std::string& key) {
    const GgufValue* v = file.find(key);
    if (!v) return std::nullopt;
    if (v->is_integer()) return static_cast<double>(v->as_int());
    if (v->is_float()) return v->as_double();
    if (v->type() == GgufValueType::STRING) {
        const std::string& s = v->as_string();
        char* end = nullptr;
        const double x = std::strtod(s.c_str(), &end);
        if (end != s.c_str()) return x;
    }
    return std::nullopt;
}

}  // namespace

std::vector<std::string> apply_model_sampling_defaults(const GgufFile& file, const std::set<std::string>& given,
                                                       SamplingParams& sp) {
    std::vector<std::string> applied;
    auto real = [&](const char* name, float& dst) {
        if (given.count(name)) return;
        if (auto x = number(file, std::string("general.sampling.") + name); x && std::isfinite(*x)) {
            dst = static_cast<float>(*x);
            applied.push_back(fmt::format("{}={}", name, dst));
        }
    };
    auto whole = [&](const char* name, int32_t& dst) {
        if (given.count(name)) return;
        auto x = number(file, std::string("general.sampling.") + name);
        if (x && std::isfinite(*x) && *x > -2147483649.0 && *x < 2147483648.0) {  // skipped outside int32
            dst = static_cast<int32_t>(*x);  // strtol stops at the point: truncation
            applied.push_back(fmt::format("{}={}", name, dst));
        }
    };

    if (!given.count("sequence")) {
        const GgufValue* v = file.find("general.sampling.sequence");
        if (v && v->type() == GgufValueType::STRING) {
            const std::string* seq = &v->as_string();
            std::vector<SamplerType> order;
            size_t at = 0;
            while (at <= seq->size()) {
                const size_t end = std::min(seq->find(';', at), seq->size());
                if (auto t = sampler_type_from_name(seq->substr(at, end - at))) order.push_back(*t);
                at = end + 1;
            }
            if (!order.empty()) {
                sp.samplers = order;
                applied.push_back("sequence=" + *seq);
            }
        }
    }
    whole("top_k", sp.top_k);
    real("top_p", sp.top_p);
    real("min_p", sp.min_p);
    real("xtc_probability", sp.xtc_probability);
    real("xtc_threshold", sp.xtc_threshold);
    real("temp", sp.temperature);
    whole("penalty_last_n", sp.repeat_last_n);
    real("penalty_repeat", sp.repeat_penalty);
    whole("mirostat", sp.mirostat);
    real("mirostat_tau", sp.mirostat_tau);
    real("mirostat_eta", sp.mirostat_eta);
    return applied;
}

}  // namespace moeserve
