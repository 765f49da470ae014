#include "text/hf_vocab.h"

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "gguf/gguf_writer.h"
#include "text/vocab.h"

namespace moeserve {

namespace {

using nlohmann::json;

// The Split regexes of known tokenizer families, as tokenizer.json spells them.
const std::map<std::string, std::string>& known_split_regexes() {
    static const std::map<std::string, std::string> m = {
        {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
         "qwen2"},
        {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
         "llama-bpe"},
        {R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)", "gpt-2"},
    };
    return m;
}

void collect_pre_tokenizers(const json& node, std::vector<const json*>& out) {
    if (!node.is_object()) return;
    if (node.value("type", "") == "Sequence" && node.contains("pretokenizers")) {
        for (const json& child : node["pretokenizers"]) collect_pre_tokenizers(child, out);
    } else {
        out.push_back(&node);
    }
}

json read_json(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(path + ": cannot open");
    try {
        return json::parse(in);
    } catch (const json::exception& e) {
        throw std::runtime_error(path + ": not valid JSON: " + e.what());
    }
}

// tokenizer_config.json names special tokens by text, either as a string or as
// an AddedToken object {"content": ...}.
std::optional<std::string> token_text(const json& config, const char* key) {
    if (!config.contains(key)) return std::nullopt;
    const json& v = config[key];
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
    return std::nullopt;
}

// llama.cpp's converter treats these added tokens as control even when they
// are not marked special.
bool looks_special(const std::string& t) {
    auto starts = [&](std::string_view p) { return t.rfind(p, 0) == 0; };
    auto ends = [&](std::string_view s) {
        return t.size() >= s.size() && t.compare(t.size() - s.size(), s.size(), s) == 0;
    };
    if (t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]") return true;
    if (starts("<|") && ends("|>")) return true;
    if (starts("<\uFF5C") && ends("\uFF5C>")) return true;
    if (starts("<unused") && ends(">")) return true;
    return false;
}

}  // namespace

std::optional<std::string> detect_hf_pre_tokenizer(const json& pre_tokenizer) {
    std::vector<const json*> parts;
    collect_pre_tokenizers(pre_tokenizer, parts);
    for (const json* p : parts) {
        if (p->value("type", "") != "Split") continue;
        const json& pattern = (*p)["pattern"];
        if (!pattern.is_object() || !pattern.contains("Regex")) continue;
        auto it = known_split_regexes().find(pattern["Regex"].get<std::string>());
        return it == known_split_regexes().end() ? std::nullopt : std::optional<std::string>(it->second);
    }
    // A lone ByteLevel with its built-in regex is GPT-2's.
    for (const json* p : parts)
        if (p->value("type", "") == "ByteLevel" && p->value("use_regex", true)) return "gpt-2";
    return std::nullopt;
}

void hf_vocab_to_gguf(const json& tokenizer, const json* config, const HfVocabOptions& options, GgufWriter& out) {
    if (!tokenizer.is_object() || !tokenizer.contains("model"))
        throw std::runtime_error("tokenizer.json has no \"model\" section");
    const json& model = tokenizer["model"];
    if (model.value("type", "") != "BPE")
        throw std::runtime_error("tokenizer.json model type is '" + model.value("type", std::string("?")) +
                                 "'; only byte-level BPE tokenizers are supported");
    if (!model.contains("vocab") || !model["vocab"].is_object())
        throw std::runtime_error("tokenizer.json model has no vocab");

    std::string pre;
    if (options.pre) {
        pre = *options.pre;
    } else {
        auto detected = detect_hf_pre_tokenizer(tokenizer.value("pre_tokenizer", json()));
        if (!detected)
            throw std::runtime_error(
                "cannot tell which llama.cpp pre-tokenizer this tokenizer.json uses; name it with --pre "
                "(e.g. qwen2, llama-bpe, gpt-2)");
        pre = *detected;
    }

    // id -> text, and which ids are added tokens.
    std::map<int64_t, std::string> by_id;
    for (const auto& [text, id] : model["vocab"].items()) by_id[id.get<int64_t>()] = text;
    struct Added {
        bool special;
    };
    std::map<int64_t, Added> added;
    if (tokenizer.contains("added_tokens")) {
        for (const json& a : tokenizer["added_tokens"]) {
            int64_t id = a.at("id").get<int64_t>();
            by_id[id] = a.at("content").get<std::string>();
            added[id] = Added{a.value("special", false)};
        }
    }
    if (by_id.empty()) throw std::runtime_error("tokenizer.json has an empty vocabulary");
    if (by_id.begin()->first < 0) throw std::runtime_error("tokenizer.json has a negative token id");
    size_t n = size_t(by_id.rbegin()->first) + 1;
    if (options.vocab_size) {
        if (*options.vocab_size < n)
            throw std::runtime_error("--vocab-size " + std::to_string(*options.vocab_size) + " is smaller than the " +
                                     std::to_string(n) + " ids tokenizer.json uses");
        n = *options.vocab_size;
    }

    std::vector<std::string> tokens(n);
    std::vector<int32_t> types(n);
    for (size_t i = 0; i < n; ++i) {
        auto it = by_id.find(int64_t(i));
        if (it == by_id.end()) {
            tokens[i] = "[PAD" + std::to_string(i) + "]";
            types[i] = int32_t(TokenType::UNUSED);
            continue;
        }
        tokens[i] = it->second;
        auto a = added.find(int64_t(i));
        if (a == added.end()) {
            types[i] = int32_t(TokenType::NORMAL);
        } else if (a->second.special || looks_special(tokens[i])) {
            types[i] = int32_t(TokenType::CONTROL);
        } else {
            // User-defined tokens are matched as typed: SentencePiece's space mark becomes a space.
            std::string t;
            for (size_t k = 0; k < tokens[i].size(); ++k) {
                if (tokens[i].compare(k, 3, "\xE2\x96\x81") == 0) {
                    t += ' ';
                    k += 2;
                } else {
                    t += tokens[i][k];
                }
            }
            tokens[i] = t;
            types[i] = int32_t(TokenType::USER_DEFINED);
        }
    }

    std::vector<std::string> merges;
    if (model.contains("merges")) {
        for (const json& m : model["merges"]) {
            if (m.is_string())
                merges.push_back(m.get<std::string>());
            else if (m.is_array() && m.size() == 2)
                merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
            else
                throw std::runtime_error("tokenizer.json has a merge that is neither \"a b\" nor [\"a\", \"b\"]");
        }
    }

    if (options.architecture) out.set("general.architecture", *options.architecture);
    out.set("tokenizer.ggml.model", "gpt2");
    out.set("tokenizer.ggml.pre", pre);
    out.set("tokenizer.ggml.tokens", gguf_string_array(tokens));
    out.set("tokenizer.ggml.token_type", gguf_array(GgufValueType::INT32, types));
    out.set("tokenizer.ggml.merges", gguf_string_array(merges));

    if (config) {
        auto id_of = [&](const std::string& text) -> std::optional<uint32_t> {
            for (size_t i = 0; i < n; ++i)
                if (tokens[i] == text) return uint32_t(i);
            return std::nullopt;
        };
        const std::pair<const char*, const char*> special_keys[] = {
            {"bos_token", "tokenizer.ggml.bos_token_id"},     {"eos_token", "tokenizer.ggml.eos_token_id"},
            {"unk_token", "tokenizer.ggml.unknown_token_id"}, {"sep_token", "tokenizer.ggml.seperator_token_id"},
            {"pad_token", "tokenizer.ggml.padding_token_id"}, {"mask_token", "tokenizer.ggml.mask_token_id"},
        };
        for (const auto& [name, key] : special_keys) {
            if (auto text = token_text(*config, name)) {
                if (auto id = id_of(*text)) out.set(key, GgufValue(*id));
            }
        }
        for (const auto& [name, key] : {std::pair{"add_bos_token", "tokenizer.ggml.add_bos_token"},
                                        {"add_eos_token", "tokenizer.ggml.add_eos_token"}}) {
            if (config->contains(name) && (*config)[name].is_boolean())
                out.set(key, GgufValue((*config)[name].get<bool>()));
        }
        if (config->contains("chat_template")) {
            const json& t = (*config)["chat_template"];
            if (t.is_string()) {
                out.set("tokenizer.chat_template", t.get<std::string>());
            } else if (t.is_array()) {  // named templates: "default" is the main one
                for (const json& named : t) {
                    std::string name = named.value("name", "");
                    std::string tmpl = named.value("template", "");
                    out.set(name == "default" ? "tokenizer.chat_template" : "tokenizer.chat_template." + name, tmpl);
                }
            }
        }
    }
}

void convert_hf_vocab(const std::string& tokenizer_path, const std::string& config_path, const std::string& out_path,
                      const HfVocabOptions& options) {
    json tokenizer = read_json(tokenizer_path);
    std::optional<json> config;
    if (!config_path.empty()) config = read_json(config_path);
    GgufWriter writer;
    try {
        hf_vocab_to_gguf(tokenizer, config ? &*config : nullptr, options, writer);
    } catch (const json::exception& e) {
        throw std::runtime_error(tokenizer_path + ": unexpected layout: " + e.what());
    }
    writer.write(out_path);
}

}  // namespace moeserve
