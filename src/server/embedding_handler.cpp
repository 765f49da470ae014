#include "server/embedding_handler.h"

#include <fmt/format.h>
#include <httplib.h>

#include <algorithm>
#include <cstring>
#include <iterator>

#include "server/api_error.h"
#include "server/completion_handler.h"
#include "server/json_fields.h"
#include "server/request_log.h"

namespace moeserve {
namespace {

// encoding_format "base64": the vector's little-endian f32 bytes in base64, as OpenAI sends them.
std::string base64_floats(const std::vector<float>& v) {
    static constexpr char kDigits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string bytes(v.size() * sizeof(float), '\0');
    std::memcpy(bytes.data(), v.data(), bytes.size());  // x86 and ARM Linux are little-endian
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    for (size_t i = 0; i < bytes.size(); i += 3) {
        const size_t n = std::min<size_t>(3, bytes.size() - i);
        uint32_t w = static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
        if (n > 1) w |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
        if (n > 2) w |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 2]));
        out += kDigits[(w >> 18) & 63];
        out += kDigits[(w >> 12) & 63];
        out += n > 1 ? kDigits[(w >> 6) & 63] : '=';
        out += n > 2 ? kDigits[w & 63] : '=';
    }
    return out;
}

}  // namespace

void handle_embeddings(EmbeddingApi api, const httplib::Request& req, httplib::Response& res,
                       std::shared_ptr<ServedModel> model) {
    if (!model->options().embeddings)
        throw ApiError(501, "not_supported_error",
                       "This server does not support embeddings. Start it with `--embeddings`");
    bool openai = api == EmbeddingApi::openai;
    if (openai && model->pooling() == Pooling::none)
        throw invalid_request("Pooling type 'none' is not OAI compatible. Please use a different pooling type");

    const json body = parse_body(req.body);
    const char* field = "input";
    if (!body.contains("input")) {
        if (!body.contains("content")) throw invalid_request("\"input\" or \"content\" must be provided");
        field = "content";
        openai = false;  // llama-server: "content" is not OpenAI's, so the answer is native
    }
    bool base64 = false;
    if (auto f = string_field(body, "encoding_format")) {
        if (*f == "base64")
            base64 = true;
        else if (*f != "float")
            throw invalid_request("The format to return the embeddings in. Can be either float or base64");
    }
    int normalize = 2;
    if (auto v = int_field(body, "embd_normalize")) {
        if (*v < -1 || *v > 1000)
            throw invalid_request(fmt::format(
                "Field 'embd_normalize': expected -1 (none), 0 (max absolute), 1 (taxicab), 2 (Euclidean, the "
                "default) or a larger p-norm, got {}",
                *v));
        normalize = static_cast<int>(*v);
    }

    std::vector<GenerationRequest> requests;
    for (auto& prompt : parse_prompts(body[field], *model, field)) {
        GenerationRequest rq;
        rq.index = static_cast<int>(requests.size());
        rq.prompt = std::move(prompt);
        rq.embed = true;
        rq.pooling = model->pooling();
        rq.embd_normalize = normalize;
        requests.push_back(std::move(rq));
    }
    // Many inputs (OpenAI clients send hundreds) go in waves of one per
    // slot, so that a large request waits for slots rather than filling the
    // queue that other clients' requests wait in.
    const size_t n_inputs = requests.size();
    const size_t wave = static_cast<size_t>(std::max(1, model->scheduler().n_slots()));
    const ConnectionProbe probe(req.remote_addr, req.remote_port, req.local_port);
    std::vector<GenerationResult> results(n_inputs);
    for (size_t first = 0; first < n_inputs; first += wave) {
        const size_t last = std::min(n_inputs, first + wave);
        std::vector<GenerationRequest> part(std::make_move_iterator(requests.begin() + first),
                                            std::make_move_iterator(requests.begin() + last));
        auto stream = std::make_shared<GenerationStream>();
        submit_requests(*model, std::move(part), stream, res);
        auto next_check = std::chrono::steady_clock::now() + kPoll;
        for (size_t done = first; done < last;) {
            auto e = next_event(*stream, probe, next_check);
            if (!e) return;  // the client went away
            if (e->kind == GenerationEvent::Kind::error) {
                stream->cancel();
                throw error_from_event(*e);
            }
            if (e->kind != GenerationEvent::Kind::done) continue;
            results.at(static_cast<size_t>(e->index)) = std::move(e->result);
            ++done;
        }
    }

    int64_t n_tokens = 0;
    for (const auto& r : results) n_tokens += r.n_prompt;
    request_log().prompt_tokens = n_tokens;
    json out;
    if (openai) {
        json data = json::array();
        for (size_t i = 0; i < results.size(); ++i) {
            const std::vector<float>& v = results[i].embedding.at(0);
            json item = {
                {"embedding", base64 ? json(base64_floats(v)) : json(v)}, {"index", i}, {"object", "embedding"}};
            if (base64) item["encoding_format"] = "base64";
            data.push_back(std::move(item));
        }
        // llama-server echoes the request's model name when there is one.
        const std::string name = string_field(body, "model").value_or(model->name());
        out = {{"model", name},
               {"object", "list"},
               {"usage", {{"prompt_tokens", n_tokens}, {"total_tokens", n_tokens}}},
               {"data", std::move(data)}};
    } else {
        out = json::array();
        for (size_t i = 0; i < results.size(); ++i) out.push_back({{"index", i}, {"embedding", results[i].embedding}});
    }
    res.set_content(out.dump(-1, ' ', false, json::error_handler_t::replace), "application/json; charset=utf-8");
}

}  // namespace moeserve
