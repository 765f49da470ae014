#include "server/resumable_stream_handler.h"

#include <httplib.h>

#include <string>

#include "server/api_error.h"
#include "server/completion_handler.h"
#include "server/json_fields.h"

namespace moeserve {
namespace {

std::string conversation_id(const httplib::Request& req) {
    std::string id = req.get_param_value("conv_id");
    if (id.empty() && req.matches.size() > 1) id = req.matches[1].str();
    if (id.empty()) throw invalid_request("Missing conversation id in path");
    return id;
}

void send_json(httplib::Response& res, const json& body) {
    res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json; charset=utf-8");
}

}  // namespace

void handle_stream_replay(const httplib::Request& req, httplib::Response& res, ServedModel& model) {
    const std::string id = conversation_id(req);
    auto session = model.stream_sessions().find(id);
    if (!session) throw ApiError(404, "not_found_error", "Stream not found or expired");
    size_t from = 0;
    if (const std::string f = req.get_param_value("from"); !f.empty()) {
        if (f.size() > 19 || f.find_first_not_of("0123456789") != std::string::npos)
            throw invalid_request("Invalid 'from' offset");
        from = static_cast<size_t>(std::stoull(f));
    }
    if (from < session->info().dropped_bytes) throw invalid_request("Stream offset lost, please restart");
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream", [session, offset = from](size_t, httplib::DataSink& sink) mutable {
            std::string out;
            for (;;) {
                out.clear();
                switch (session->read(offset, out, kPoll)) {
                    case StreamSession::Read::bytes:
                        if (!sink.write(out.data(), out.size())) return false;
                        break;
                    case StreamSession::Read::finished:
                        sink.done();
                        return true;
                    case StreamSession::Read::lost:  // this reader fell behind the kept window
                        return false;
                    case StreamSession::Read::waiting:
                        if (!sink.is_writable()) return false;
                        break;
                }
            }
        });
}

void handle_streams_lookup(const httplib::Request& req, httplib::Response& res, ServedModel& model) {
    const json body = parse_body(req.body);
    std::vector<std::string> ids;
    if (auto it = body.find("conversation_ids"); it != body.end() && it->is_array())
        for (const auto& v : *it)
            if (v.is_string()) ids.push_back(v.get<std::string>());
    json out = json::array();
    for (const StreamSession::Info& s : model.stream_sessions().lookup(ids))
        out.push_back({{"conversation_id", s.conversation_id},
                       {"is_done", s.done},
                       {"total_bytes", s.total_bytes},
                       {"started_at", s.started_at},
                       {"completed_at", s.completed_at}});
    send_json(res, out);
}

void handle_stream_cancel(const httplib::Request& req, httplib::Response& res, ServedModel& model) {
    model.stream_sessions().cancel(conversation_id(req));  // as llama-server: 204 whether or not it existed
    res.status = 204;
}

}  // namespace moeserve
