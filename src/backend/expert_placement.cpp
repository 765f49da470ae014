#include "backend/expert_placement.h"

#include <fmt/format.h>

#include <charconv>
#include <map>
#include <regex>
#include <stdexcept>

#include "gguf/gguf_file.h"

namespace moeserve {
namespace {

enum class Place { device, host };

struct Rule {
    std::string text;  // as given, for messages
    std::regex pattern;
    Place place;
};

// The layer N of "blk.N.<rest>" and where <rest> starts, or -1.
int layer_of(const std::string& name, size_t* rest) {
    const int layer = tensor_layer(name);
    if (layer >= 0) *rest = name.find('.', 4) + 1;
    return layer;
}

// The tensors the expert FFN op reads besides the experts: the router and
// its selection bias. They follow their layer's experts.
bool is_router_tensor(const std::string& name) {
    size_t rest = 0;
    if (layer_of(name, &rest) < 0) return false;
    return name.compare(rest, 13, "ffn_gate_inp.") == 0 || name.compare(rest, 12, "exp_probs_b.") == 0;
}

Place parse_buffer_type(const std::string& rule, const std::string& buft) {
    // llama.cpp's names for this machine's buffer types (compared exactly, as there).
    if (buft == "CPU" || buft == "CUDA_Host") return Place::host;
    if (buft == "CUDA0") return Place::device;
    throw std::invalid_argument(fmt::format(
        "-ot '{}': unknown buffer type '{}' (available: CPU, CUDA_Host = host memory; CUDA0 = the GPU)", rule, buft));
}

std::vector<Rule> parse_rules(const ExpertPlacementFlags& flags) {
    std::vector<Rule> rules;
    for (const std::string& item : flags.override_tensor) {
        const size_t eq = item.find('=');  // the first '=', as llama.cpp splits a rule
        if (eq == 0 || eq == std::string::npos || eq + 1 == item.size())
            throw std::invalid_argument(
                fmt::format("-ot '{}': expected REGEX=BUFTYPE, e.g. 'blk\\.[0-9]+\\.ffn_.*_exps\\.=CPU'", item));
        const std::string regex = item.substr(0, eq);
        const Place place = parse_buffer_type(item, item.substr(eq + 1));
        try {
            rules.push_back({item, std::regex(regex), place});
        } catch (const std::regex_error& e) {
            throw std::invalid_argument(
                fmt::format("-ot '{}': the regex '{}' does not compile: {}", item, regex, e.what()));
        }
    }
    return rules;
}

}  // namespace

int tensor_layer(const std::string& name) {
    constexpr std::string_view kPrefix = "blk.";
    if (name.compare(0, kPrefix.size(), kPrefix) != 0) return -1;
    int layer = -1;
    const char* begin = name.data() + kPrefix.size();
    auto [end, ec] = std::from_chars(begin, name.data() + name.size(), layer);
    return ec == std::errc() && end != begin && *end == '.' ? layer : -1;
}

bool HostPlacement::any_host_experts() const {
    for (bool h : host_experts)
        if (h) return true;
    return false;
}

int routed_expert_layer(const std::string& name) {
    size_t rest = 0;
    const int layer = layer_of(name, &rest);
    if (layer < 0) return -1;
    // ffn_(up|down|gate|gate_up)_(ch|)exps, llama.cpp's --cpu-moe pattern.
    static const std::regex kExperts(R"(^ffn_(up|down|gate|gate_up)_(ch|)exps\.)");
    return std::regex_search(name.begin() + static_cast<std::ptrdiff_t>(rest), name.end(), kExperts) ? layer : -1;
}

int expert_ffn_layer(const std::string& name) {
    size_t rest = 0;
    return is_router_tensor(name) ? layer_of(name, &rest) : routed_expert_layer(name);
}

HostPlacement resolve_expert_placement(std::span<const std::string> tensor_names, int n_layer,
                                       const ExpertPlacementFlags& flags) {
    const std::vector<Rule> rules = parse_rules(flags);
    HostPlacement out;
    out.host_experts.assign(static_cast<size_t>(std::max(0, n_layer)), false);
    // Per layer: its expert tensors, and those a rule put in host memory.
    std::map<int, std::vector<std::string>> experts, host_matched;
    std::vector<std::string> routers_on_host;
    for (const std::string& name : tensor_names) {
        const int expert_layer = routed_expert_layer(name);
        Place place = Place::device;
        bool decided = false;
        for (const Rule& r : rules)
            if (std::regex_search(name, r.pattern)) {
                place = r.place;
                decided = true;
                break;
            }
        if (!decided && expert_layer >= 0 && (flags.cpu_moe || expert_layer < flags.n_cpu_moe)) place = Place::host;
        if (expert_layer >= 0) {
            experts[expert_layer].push_back(name);
            if (place == Place::host) host_matched[expert_layer].push_back(name);
        } else if (place == Place::host) {
            if (is_router_tensor(name))
                routers_on_host.push_back(name);
            else if (name != "token_embd.weight")  // the token embedding is read on the host anyway
                out.other_host_tensors.push_back(name);
        }
    }
    for (const auto& [layer, matched] : host_matched) {
        if (layer >= n_layer) continue;
        out.host_experts[static_cast<size_t>(layer)] = true;
        if (matched.size() < experts[layer].size())
            out.notes.push_back(
                fmt::format("layer {}: a rule matched {} of its {} expert tensors; its routed "
                            "experts stay in host memory together",
                            layer, matched.size(), experts[layer].size()));
    }
    for (const std::string& name : routers_on_host) {
        size_t rest = 0;
        const int layer = layer_of(name, &rest);
        if (layer >= n_layer || !out.host_experts[static_cast<size_t>(layer)]) out.other_host_tensors.push_back(name);
    }
    return out;
}

HostPlacement resolve_expert_placement(const GgufFile& file, int n_layer, const ExpertPlacementFlags& flags) {
    std::vector<std::string> names;
    for (const auto& t : file.tensors()) names.push_back(t.name);
    return resolve_expert_placement(names, n_layer, flags);
}

std::string describe_layers(const std::vector<bool>& layers) {
    std::string s;
    const int n = static_cast<int>(layers.size());
    for (int i = 0; i < n;) {
        if (!layers[static_cast<size_t>(i)]) {
            ++i;
            continue;
        }
        int j = i;
        while (j + 1 < n && layers[static_cast<size_t>(j + 1)]) ++j;
        if (!s.empty()) s += ", ";
        s += i == j ? std::to_string(i) : fmt::format("{}-{}", i, j);
        i = j + 1;
    }
    return s;
}

}  // namespace moeserve
