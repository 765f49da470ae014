#include "server/infill_prompt.h"

#include <fmt/format.h>

#include <algorithm>

namespace moeserve {
namespace {

// input_prefix / input_suffix: a string, or strings and token ids mixed.
// Neither BOS nor special tokens: the text is code, taken literally.
std::vector<int32_t> tokenize_part(const Tokenizer& tok, const json& v, const char* field) {
    if (v.is_string()) return tok.tokenize(v.get<std::string>(), false, false);
    if (!v.is_array())
        throw invalid_request(fmt::format("\"{}\" must be a string or an array of strings and token ids", field));
    std::vector<int32_t> out;
    for (const auto& e : v) {
        if (e.is_string()) {
            auto part = tok.tokenize(e.get<std::string>(), false, false);
            out.insert(out.end(), part.begin(), part.end());
        } else if (e.is_number_integer() && e.get<int64_t>() >= 0 &&
                   e.get<int64_t>() < static_cast<int64_t>(tok.n_tokens())) {
            out.push_back(e.get<int32_t>());
        } else {
            throw invalid_request(fmt::format("\"{}\" must be a string or an array of strings and token ids", field));
        }
    }
    return out;
}

void append(std::vector<int32_t>& to, const std::vector<int32_t>& from) {
    to.insert(to.end(), from.begin(), from.end());
}

}  // namespace

void require_fim_tokens(const Vocab& vocab) {
    const SpecialTokenIds& sp = vocab.special();
    std::string missing;
    if (sp.fim_pre == kNoToken) missing += "prefix token is missing. ";
    if (sp.fim_suf == kNoToken) missing += "suffix token is missing. ";
    if (sp.fim_mid == kNoToken) missing += "middle token is missing. ";
    if (!missing.empty())
        throw ApiError(501, "not_supported_error", "Infill is not supported by this model: " + missing);
}

std::vector<int32_t> infill_prompt(const Tokenizer& tok, const json& body, const InfillLimits& limits) {
    const SpecialTokenIds& sp = tok.vocab().special();
    if (body.contains("prompt") && !body["prompt"].is_string()) throw invalid_request("\"prompt\" must be a string");
    if (!body.contains("input_prefix")) throw invalid_request("\"input_prefix\" is required");
    if (!body.contains("input_suffix")) throw invalid_request("\"input_suffix\" is required");
    const json extra = body.value("input_extra", json::array());
    if (!extra.is_array())
        throw invalid_request("\"input_extra\" must be an array of {\"filename\": string, \"text\": string}");
    for (const auto& chunk : extra) {
        if (!chunk.is_object() || !chunk.contains("text") || !chunk["text"].is_string())
            throw invalid_request("extra_context chunk must contain a \"text\" field with a string value");
        if (chunk.contains("filename") && !chunk["filename"].is_string())
            throw invalid_request("extra_context chunk's \"filename\" field must be a string");
    }

    std::vector<int32_t> prefix = tokenize_part(tok, body["input_prefix"], "input_prefix");
    std::vector<int32_t> suffix = tokenize_part(tok, body["input_suffix"], "input_suffix");
    const std::vector<int32_t> prompt = tok.tokenize(body.value("prompt", std::string()), false, true);

    // The repository-level context: project, then each extra file, then the current file's name.
    std::vector<int32_t> extra_tokens;
    if (sp.fim_rep != kNoToken) {
        extra_tokens.push_back(sp.fim_rep);
        append(extra_tokens, tok.tokenize("myproject\n", false, false));
    }
    for (const auto& chunk : extra) {
        if (sp.fim_sep != kNoToken) {
            extra_tokens.push_back(sp.fim_sep);
            append(extra_tokens, tok.tokenize(chunk.value("filename", std::string("tmp")) + "\n", false, false));
        } else {
            append(extra_tokens, tok.tokenize("\n\n--- snippet ---\n\n", false, false));
        }
        append(extra_tokens, tok.tokenize(chunk["text"].get<std::string>(), false, false));
    }
    if (sp.fim_sep != kNoToken) {
        extra_tokens.push_back(sp.fim_sep);
        append(extra_tokens, tok.tokenize("filename\n", false, false));
    }

    // Prefix : suffix = 3 : 1 of a batch; the extra context fills what the
    // context has left after a batch and twice n_predict.
    const int64_t n_batch = limits.n_batch, n_prompt = static_cast<int64_t>(prompt.size());
    const int64_t n_prefix_take = std::min<int64_t>(static_cast<int64_t>(prefix.size()), 3 * (n_batch / 4));
    const int64_t n_suffix_take =
        std::min<int64_t>(static_cast<int64_t>(suffix.size()), std::max<int64_t>(0, n_batch / 4 - (2 + n_prompt)));
    const int64_t n_extra_take = std::min<int64_t>(std::max<int64_t>(0, limits.n_ctx - n_batch - 2 * limits.n_predict),
                                                   static_cast<int64_t>(extra_tokens.size()));
    prefix.erase(prefix.begin(), prefix.end() - n_prefix_take);
    suffix.resize(static_cast<size_t>(n_suffix_take));

    prefix.insert(prefix.begin(), sp.fim_pre);
    append(prefix, prompt);
    suffix.insert(suffix.begin(), sp.fim_suf);

    std::vector<int32_t> out(extra_tokens.end() - n_extra_take, extra_tokens.end());
    if (tok.vocab().add_bos() && sp.bos != kNoToken) out.push_back(sp.bos);
    append(out, limits.spm ? suffix : prefix);
    append(out, limits.spm ? prefix : suffix);
    out.push_back(sp.fim_mid);
    return out;
}

}  // namespace moeserve
