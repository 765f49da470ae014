#include "server/completion_handler.h"

#include <httplib.h>

#include <chrono>
#include <deque>

#include "server/api_error.h"
#include "server/completion_response.h"
#include "server/connection_probe.h"
#include "server/json_fields.h"
#include "server/request_log.h"
#include "server/sse.h"

namespace moeserve {

ApiError error_from_event(const GenerationEvent& e) {
    return ApiError(e.status > 0 ? e.status : 500, e.error_type.empty() ? "server_error" : e.error_type, e.message);
}

void submit_requests(ServedModel& model, std::vector<GenerationRequest> requests,
                     std::shared_ptr<GenerationStream> stream, httplib::Response& res) {
    try {
        model.scheduler().submit(std::move(requests), std::move(stream));
    } catch (const SubmitError& e) {
        json extra = json::object();
        if (e.n_prompt_tokens >= 0) extra = {{"n_prompt_tokens", e.n_prompt_tokens}, {"n_ctx", e.n_ctx}};
        if (e.status == 503) res.set_header("Retry-After", "1");
        throw ApiError(e.status, e.type, e.what(), extra);
    }
}

std::optional<GenerationEvent> next_event(GenerationStream& stream, const ConnectionProbe& probe,
                                          std::chrono::steady_clock::time_point& next_check) {
    for (;;) {
        auto e = stream.next(kPoll);
        const auto now = std::chrono::steady_clock::now();
        if (e && now < next_check) return e;
        next_check = now + kPoll;
        if (probe.closed()) {
            stream.cancel();
            request_log().cancelled = true;
            return std::nullopt;
        }
        if (e) return e;
    }
}

namespace {

// The endpoints' own shapes: JSON chunks as `data:` lines, the OpenAI ones
// ending with `data: [DONE]`.
class OpenAiFormat final : public AnswerFormat {
  public:
    explicit OpenAiFormat(ApiKind kind) : done_line_(kind != ApiKind::native) {}
    json body(const CompletionResponse& r) override { return r.final_body(); }
    void append(std::string& out, const std::vector<json>& chunks, const CompletionResponse&) override {
        for (const json& chunk : chunks) append_sse_data(out, chunk);
    }
    std::string end(const CompletionResponse& r) override {
        std::string out;
        for (const json& chunk : r.closing_chunks()) append_sse_data(out, chunk);
        if (done_line_) out += sse_done();
        return out;
    }
    std::string error(const ApiError& e) override { return sse_data(error_json(e.status, e.type, e.what())); }

  private:
    bool done_line_;
};

}  // namespace

int64_t chat_prompt_tokens(json chat_body, const ServedModel& model) {
    chat_body.erase("stream");
    const CompletionCall call = parse_completion_call(ApiKind::chat, chat_body, model);
    return call.requests.empty() ? 0 : static_cast<int64_t>(call.requests[0].prompt.size());
}

void handle_completion(ApiKind kind, const httplib::Request& req, httplib::Response& res,
                       std::shared_ptr<ServedModel> model) {
    handle_completion_body(kind, parse_body(req.body), req, res, std::move(model));
}

void handle_completion_body(ApiKind kind, const json& body, const httplib::Request& req, httplib::Response& res,
                            std::shared_ptr<ServedModel> model, std::shared_ptr<AnswerFormat> format) {
    if (!format) format = std::make_shared<OpenAiFormat>(kind);
    CompletionCall call = parse_completion_call(kind, body, *model);
    format->prepare(call);
    auto stream = std::make_shared<GenerationStream>();
    submit_requests(*model, call.requests, stream, res);
    const ConnectionProbe probe(req.remote_addr, req.remote_port, req.local_port);
    auto response = std::make_shared<CompletionResponse>(call, *model);
    auto next_check = std::chrono::steady_clock::now() + kPoll;

    if (!call.stream) {
        while (!response->all_done()) {
            auto e = next_event(*stream, probe, next_check);
            if (!e) return;  // nobody to answer
            if (e->kind == GenerationEvent::Kind::error) {
                stream->cancel();
                throw error_from_event(*e);
            }
            response->on_event(*e);
        }
        request_log().prompt_tokens = response->prompt_tokens();
        request_log().completion_tokens = response->completion_tokens();
        res.set_content(format->body(*response).dump(-1, ' ', false, json::error_handler_t::replace),
                        "application/json; charset=utf-8");
        return;
    }

    // Streaming: nothing is sent while the request waits for a slot; an error
    // before the first event is a plain HTTP error.
    auto first = next_event(*stream, probe, next_check);
    if (!first) return;
    if (first->kind == GenerationEvent::Kind::error) {
        stream->cancel();
        throw error_from_event(*first);
    }
    const int ping_s = model->options().sse_ping_interval_s;
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [stream, response, format, probe, model, ping_s, pending = std::move(*first)](size_t,
                                                                                      httplib::DataSink& sink) mutable {
            auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
            auto gone = [&] {
                stream->cancel();
                request_log().cancelled = true;
                return false;
            };
            std::optional<GenerationEvent> event = std::move(pending);
            std::string out;  // the SSE chunks of the events at hand, sent in one write
            auto last_write = std::chrono::steady_clock::now();
            while (!response->all_done()) {
                if (!event) {
                    event = stream->next(kPoll);
                    if (!event) {
                        if (probe.closed()) return gone();
                        if (ping_s > 0 &&
                            std::chrono::steady_clock::now() - last_write > std::chrono::seconds(ping_s)) {
                            if (!write(sse_ping())) return gone();
                            last_write = std::chrono::steady_clock::now();
                        }
                        continue;
                    }
                }
                // Take the events that are already waiting too: while this thread was busy the
                // scheduler may have produced several tokens, and one write (one system call,
                // one wake-up of the client) carries them all.
                out.clear();
                while (event && event->kind != GenerationEvent::Kind::error) {
                    format->append(out, response->on_event(*event), *response);
                    event.reset();
                    if (!response->all_done()) event = stream->next(std::chrono::milliseconds(0));
                }
                if (!out.empty() && !write(out)) return gone();
                if (event) {  // an error
                    stream->cancel();
                    const ApiError err = error_from_event(*event);
                    write(format->error(err));
                    sink.done();
                    return true;
                }
                last_write = std::chrono::steady_clock::now();
                if (probe.closed()) return gone();
            }
            if (const std::string end = format->end(*response); !end.empty() && !write(end)) return gone();
            request_log().prompt_tokens = response->prompt_tokens();
            request_log().completion_tokens = response->completion_tokens();
            sink.done();
            return true;
        },
        [stream](bool success) {
            if (!success) stream->cancel();
        });
}

}  // namespace moeserve
