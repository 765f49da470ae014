#include "server/completion_handler.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <utility>

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

std::optional<GenerationEvent> next_event(GenerationStream& stream, const std::function<bool()>& gone,
                                          std::chrono::steady_clock::time_point& next_check) {
    for (;;) {
        auto e = stream.next(kPoll);
        const auto now = std::chrono::steady_clock::now();
        if (e && now < next_check) return e;
        next_check = now + kPoll;
        if (gone()) {
            stream.cancel();
            request_log().cancelled = true;
            return std::nullopt;
        }
        if (e) return e;
    }
}

std::optional<GenerationEvent> next_event(GenerationStream& stream, const ConnectionProbe& probe,
                                          std::chrono::steady_clock::time_point& next_check) {
    return next_event(
        stream, [&probe] { return probe.closed(); }, next_check);
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

// A streaming request's events as SSE text. Each call waits up to kPoll for
// events and appends the chunks of every event already waiting (one write
// carries them all: while the HTTP thread was busy the scheduler may have
// produced several tokens); false once the stream has ended, the closing or
// error text being the last appended. Used by the HTTP response and, for a
// resumable stream whose client left, by the drain that goes on without it.
class SseProducer {
  public:
    SseProducer(std::shared_ptr<GenerationStream> stream, std::shared_ptr<CompletionResponse> response,
                std::shared_ptr<AnswerFormat> format, GenerationEvent first)
        : stream_(std::move(stream)),
          response_(std::move(response)),
          format_(std::move(format)),
          pending_(std::move(first)) {}

    bool produce(std::string& out) {
        if (finished_) return false;
        std::optional<GenerationEvent> event = std::exchange(pending_, std::nullopt);
        if (!event) event = stream_->next(kPoll);
        while (event && event->kind != GenerationEvent::Kind::error) {
            format_->append(out, response_->on_event(*event), *response_);
            event.reset();
            if (!response_->all_done()) event = stream_->next(std::chrono::milliseconds(0));
        }
        if (event) {  // an error ends the stream
            stream_->cancel();
            out += format_->error(error_from_event(*event));
            finished_ = true;
        } else if (response_->all_done()) {
            out += format_->end(*response_);
            finished_ = true;
        }
        return !finished_;
    }
    bool finished() const { return finished_; }
    const CompletionResponse& response() const { return *response_; }

  private:
    std::shared_ptr<GenerationStream> stream_;
    std::shared_ptr<CompletionResponse> response_;
    std::shared_ptr<AnswerFormat> format_;
    std::optional<GenerationEvent> pending_;
    bool finished_ = false;
};

// A resumable stream whose client left before the response started: the
// answer goes on into its session until it ends or is cancelled.
void drain_into(SseProducer& producer, GenerationStream& stream, StreamSession& session) {
    std::string out;
    while (!producer.finished()) {
        if (session.cancelled()) {
            stream.cancel();
            break;
        }
        out.clear();
        producer.produce(out);
        session.append(out);
    }
    session.finish();
}

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
    // X-Conversation-Id on a streaming request: a resumable stream (stream_sessions.h). The
    // session exists from the start, so a client that leaves while the request waits for a
    // slot does not cancel it; one that fails before streaming is discarded.
    std::shared_ptr<StreamSession> session;
    if (const std::string conv = req.get_header_value("X-Conversation-Id"); call.stream && !conv.empty())
        session = model->stream_sessions().open(conv);
    struct DiscardUnlessStreamed {
        StreamSessions& sessions;
        std::shared_ptr<StreamSession>& session;
        bool streamed = false;
        ~DiscardUnlessStreamed() {
            if (!streamed) sessions.discard(session);
        }
    } discard{model->stream_sessions(), session};

    auto stream = std::make_shared<GenerationStream>();
    submit_requests(*model, call.requests, stream, res);
    const ConnectionProbe probe(req.remote_addr, req.remote_port, req.local_port);
    auto response = std::make_shared<CompletionResponse>(call, *model);
    // Chat completions can be reached by /v1/chat/completions/control while they run.
    std::shared_ptr<CompletionControls::Registration> control;
    if (kind == ApiKind::chat)
        control = model->completion_controls().add(
            response->id(), stream,
            std::any_of(call.requests.begin(), call.requests.end(),
                        [](const GenerationRequest& r) { return r.reasoning_control; }));
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
    const std::function<bool()> gone = session ? std::function<bool()>([session] { return session->cancelled(); })
                                               : std::function<bool()>([&probe] { return probe.closed(); });
    auto first = next_event(*stream, gone, next_check);
    if (!first) return;
    if (first->kind == GenerationEvent::Kind::error) {
        stream->cancel();
        throw error_from_event(*first);
    }
    discard.streamed = true;
    const int ping_s = model->options().sse_ping_interval_s;
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    auto producer = std::make_shared<SseProducer>(stream, response, format, std::move(*first));
    res.set_chunked_content_provider(
        "text/event-stream",
        [producer, stream, session, probe, model, control, ping_s](size_t, httplib::DataSink& sink) {
            auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
            bool attached = true;  // the client still reads (a resumable stream goes on without it)
            std::string out;
            auto last_write = std::chrono::steady_clock::now();
            for (;;) {
                out.clear();
                const bool more = producer->produce(out);
                if (session) session->append(out);
                if (!out.empty() && attached) {
                    if (write(out)) {
                        last_write = std::chrono::steady_clock::now();
                    } else {
                        attached = false;
                        request_log().cancelled = true;
                    }
                }
                if (!more) break;
                if (session ? session->cancelled() : !attached || probe.closed()) {
                    stream->cancel();
                    request_log().cancelled = true;
                    if (session) session->finish();
                    return false;
                }
                if (attached && out.empty() && ping_s > 0 &&
                    std::chrono::steady_clock::now() - last_write > std::chrono::seconds(ping_s)) {
                    if (write(sse_ping()))
                        last_write = std::chrono::steady_clock::now();
                    else
                        attached = false;
                }
            }
            if (session) session->finish();
            request_log().prompt_tokens = producer->response().prompt_tokens();
            request_log().completion_tokens = producer->response().completion_tokens();
            if (!attached) return false;
            sink.done();
            return true;
        },
        [producer, stream, session](bool success) {
            if (success) return;
            if (session && !producer->finished())
                drain_into(*producer, *stream, *session);  // the client left before the first write
            else
                stream->cancel();
        });
}

}  // namespace moeserve
