// moeserve inspect FILE [--json]: what is inside a GGUF file.
#include <fmt/format.h>

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/args.h"
#include "cli/command.h"
#include "gguf/file_type.h"
#include "gguf/gguf_file.h"

namespace moeserve::cli {
namespace {

constexpr size_t kShortArray = 16;  // arrays longer than this are shortened

const char* kUsage =
    "usage: moeserve inspect FILE [--json] [--all]\n"
    "\n"
    "Prints the architecture, key hyperparameters, metadata, tensor table and\n"
    "totals per type of a GGUF file. Long arrays are shortened.\n"
    "\n"
    "  --json   one JSON object: file, version, alignment, data_offset,\n"
    "           metadata (key -> value) and tensors (name, type, shape, offset, bytes)\n"
    "  --all    list every tensor (by default, more than 200 are elided)\n";

std::string human_bytes(uint64_t n) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double x = static_cast<double>(n);
    int u = 0;
    while (x >= 1024 && u < 4) x /= 1024, ++u;
    return u == 0 ? fmt::format("{} B", n) : fmt::format("{:.2f} {}", x, units[u]);
}

nlohmann::ordered_json value_to_json(const GgufValue& v) {
    switch (v.type()) {
        case GgufValueType::STRING:
            return v.as_string();
        case GgufValueType::BOOL:
            return v.as_bool();
        // A float32 prints as its shortest decimal form (1e-06, not 9.99999997e-07).
        case GgufValueType::FLOAT32:
            return std::stod(fmt::format("{}", std::get<float>(v.v)));
        case GgufValueType::FLOAT64:
            return v.as_double();
        case GgufValueType::UINT64:
            return v.as_uint();
        case GgufValueType::ARRAY: {
            const GgufArray& a = v.as_array();
            nlohmann::ordered_json out = nlohmann::ordered_json::array();
            for (size_t i = 0; i < a.items.size() && i < kShortArray; ++i) out.push_back(value_to_json(a.items[i]));
            if (a.items.size() > kShortArray) out.push_back(fmt::format("... {} more", a.items.size() - kShortArray));
            return out;
        }
        default:
            return v.as_int();
    }
}

// Strings in the JSON output must be valid UTF-8; nlohmann replaces bad bytes.
std::string dump_json(const nlohmann::ordered_json& j) {
    return j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

int print_json(const GgufFile& f) {
    nlohmann::ordered_json j;
    j["file"] = f.path();
    j["version"] = f.version();
    j["alignment"] = f.alignment();
    j["data_offset"] = f.data_offset();
    j["header_only"] = f.header_only();
    j["metadata"] = nlohmann::ordered_json::object();
    for (const auto& kv : f.metadata()) j["metadata"][kv.key] = value_to_json(kv.value);
    j["tensors"] = nlohmann::ordered_json::array();
    for (const auto& t : f.tensors()) {
        j["tensors"].push_back({{"name", t.name},
                                {"type", std::string(ggml_type_name(t.type))},
                                {"shape", std::vector<int64_t>(t.ne.begin(), t.ne.begin() + t.n_dims)},
                                {"offset", t.offset},
                                {"bytes", t.nbytes}});
    }
    std::puts(dump_json(j).c_str());
    return 0;
}

void print_hyperparameters(const GgufFile& f) {
    std::string arch = f.find_string("general.architecture").value_or("");
    fmt::print("architecture: {}\n", arch.empty() ? "(none: general.architecture is missing)" : arch);
    if (auto name = f.find("general.name")) fmt::print("name:         {}\n", name->to_display());
    if (auto ft = f.find("general.file_type"); ft && ft->is_integer())
        fmt::print("file type:    {}\n", file_type_name(static_cast<uint32_t>(ft->as_uint())));
    if (auto tokens = f.find("tokenizer.ggml.tokens"); tokens && tokens->type() == GgufValueType::ARRAY)
        fmt::print("vocabulary:   {} tokens ({})\n", tokens->as_array().items.size(),
                   f.find_string("tokenizer.ggml.model").value_or("?"));
    if (arch.empty()) return;
    std::string prefix = arch + ".";
    bool header = false;
    for (const auto& kv : f.metadata()) {
        if (kv.key.rfind(prefix, 0) != 0) continue;
        if (!header) fmt::print("\nhyperparameters:\n"), header = true;
        fmt::print("  {:<40} {}\n", kv.key.substr(prefix.size()), kv.value.to_display());
    }
}

int print_text(const GgufFile& f, bool all_tensors) {
    fmt::print("{}: GGUF v{}, {}, {} metadata keys, {} tensors{}\n", f.path(), f.version(), human_bytes(f.file_size()),
               f.metadata().size(), f.tensors().size(), f.header_only() ? " (header only: no weights)" : "");
    print_hyperparameters(f);

    fmt::print("\nmetadata:\n");
    for (const auto& kv : f.metadata()) {
        std::string type(gguf_value_type_name(kv.value.type()));
        if (kv.value.type() == GgufValueType::ARRAY)
            type = fmt::format("{}[{}]", gguf_value_type_name(kv.value.as_array().elem_type),
                               kv.value.as_array().items.size());
        fmt::print("  {:<44} {:<14} {}\n", kv.key, type, kv.value.to_display(kShortArray));
    }

    fmt::print("\ntensors:\n  {:<40} {:<8} {:<22} {:>12}\n", "name", "type", "shape", "bytes");
    size_t n = f.tensors().size();
    for (size_t i = 0; i < n; ++i) {
        if (!all_tensors && n > 200 && i == 100) {
            fmt::print("  ... {} more (use --all)\n", n - 200);
            i = n - 100;
        }
        const auto& t = f.tensors()[i];
        fmt::print("  {:<40} {:<8} {:<22} {:>12}\n", t.name, ggml_type_name(t.type), t.shape_string(), t.nbytes);
    }

    struct Total {
        size_t tensors = 0;
        uint64_t elements = 0, bytes = 0;
    };
    std::map<std::string_view, Total> per_type;
    Total all;
    for (const auto& t : f.tensors()) {
        Total& x = per_type[ggml_type_name(t.type)];
        for (Total* y : {&x, &all}) {
            y->tensors += 1;
            y->elements += static_cast<uint64_t>(t.n_elements());
            y->bytes += t.nbytes;
        }
    }
    fmt::print("\ntotals per type:\n");
    for (const auto& [type, x] : per_type)
        fmt::print("  {:<8} {:>5} tensors {:>14} elements {:>12}  {:5.1f}%\n", type, x.tensors, x.elements,
                   human_bytes(x.bytes), all.bytes ? 100.0 * x.bytes / all.bytes : 0.0);
    fmt::print("  {:<8} {:>5} tensors {:>14} elements {:>12}  {:.2f} bits per weight\n", "all", all.tensors,
               all.elements, human_bytes(all.bytes), all.elements ? 8.0 * all.bytes / all.elements : 0.0);
    return 0;
}

int run_inspect(const std::vector<std::string>& argv) {
    Args args(argv);
    bool json = false, all = false;
    std::string path;
    while (!args.done()) {
        if (args.flag({"-h", "--help"})) {
            std::fputs(kUsage, stdout);
            return 0;
        } else if (args.flag({"--json"})) {
            json = true;
        } else if (args.flag({"--all"})) {
            all = true;
        } else if (args.peek().rfind("-", 0) == 0 && args.peek() != "-") {
            throw UsageError("unknown option " + args.peek() + " (see moeserve inspect --help)");
        } else if (path.empty()) {
            path = args.next();
        } else {
            throw UsageError("inspect takes one file, got '" + path + "' and '" + args.peek() + "'");
        }
    }
    if (path.empty()) throw UsageError("no file given (usage: moeserve inspect FILE [--json])");
    GgufFile f = GgufFile::open(path);
    return json ? print_json(f) : print_text(f, all);
}

}  // namespace

MOESERVE_COMMAND("inspect", "show the metadata and tensors of a GGUF file", run_inspect);

}  // namespace moeserve::cli
