// The routes of resumable streams (stream_sessions.h), as llama-server has them:
//   GET    /v1/stream?conv_id=ID&from=N   replays a session's SSE bytes from byte N (0: the
//                                         start) and follows it until it ends
//   POST   /v1/streams/lookup             {"conversation_ids": [...]} -> the sessions of those ids
//   DELETE /v1/stream?conv_id=ID          cancels the generation and forgets the session (204)
// The id may also be given as a path segment (/v1/stream/ID).
#pragma once

#include "server/served_model.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace moeserve {

void handle_stream_replay(const httplib::Request& req, httplib::Response& res, ServedModel& model);
void handle_streams_lookup(const httplib::Request& req, httplib::Response& res, ServedModel& model);
void handle_stream_cancel(const httplib::Request& req, httplib::Response& res, ServedModel& model);

}  // namespace moeserve
