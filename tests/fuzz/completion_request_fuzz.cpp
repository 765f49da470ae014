// libFuzzer target for the path an HTTP request body takes before it reaches
// the scheduler: body -> JSON (parse_body) -> validated GenerationRequests
// (parse_completion_call: chat messages through the model's Jinja template
// and the tokenizer, sampling fields, stops, logit biases), for the chat,
// completions and native endpoints. The first byte picks the endpoint, the
// rest is the body. Every input must end in requests or an ApiError with a
// 4xx status: any other exception would be a 500 for the client's mistake.
//
// The model is the qwen3moe fixture, loaded once with a small context; its
// scheduler idles, since nothing is submitted.
//
// Run with `make fuzz` (FUZZ_SECONDS=60 by default); seeds in
// tests/fuzz/corpus/completion_request_fuzz/.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "fuzz_fixtures.h"
#include "server/completion_request.h"
#include "server/json_fields.h"

namespace {

const moeserve::ServedModel& served_model() {
    static const moeserve::ServedModel* model = [] {
        moeserve::ServerOptions o;
        o.model_path = moeserve::fuzz::fixture("models/qwen3moe-tiny-s1-q8_0.gguf");
        o.n_ctx = 512;
        o.n_parallel = 1;
        o.n_threads = 1;
        return new moeserve::ServedModel(o);  // lives as long as the process: the fuzzer never returns
    }();
    return *model;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    static const moeserve::ApiKind kinds[] = {moeserve::ApiKind::chat, moeserve::ApiKind::completions,
                                              moeserve::ApiKind::native};
    const moeserve::ApiKind kind = kinds[data[0] % 3];
    const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
    const moeserve::ServedModel& model = served_model();
    try {
        const moeserve::json j = moeserve::parse_body(body);
        const moeserve::CompletionCall call = moeserve::parse_completion_call(kind, j, model);
        if (call.requests.empty()) std::abort();
        for (const auto& rq : call.requests) (void)moeserve::generation_settings(rq, model).dump();
    } catch (const moeserve::ApiError& e) {
        if (e.status < 400 || e.status > 499) std::abort();
    }
    return 0;
}
