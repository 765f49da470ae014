// The HTTP front: cpp-httplib routes for every endpoint, API-key check,
// CORS, the loading state (503 until a model is set), errors in the OpenAI
// shape, and one log line per request on stderr. Completion requests go to
// the ServedModel's scheduler; their answers come back as JSON or SSE.
// Connections are served by HttpListener (slow clients are dropped) on
// HttpWorkers (a thread per open connection, started on demand).
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "server/served_model.h"
#include "server/server_options.h"

namespace moeserve {

class HttpListener;

// The Access-Control-Allow-Origin for a request's Origin under the --cors-*
// flags (spec server-behaviour §4.3); empty: send none.
std::string cors_allowed_origin(const ServerOptions& options, const std::string& origin);

class HttpServer {
  public:
    explicit HttpServer(const ServerOptions& options);
    ~HttpServer();

    // Binds the listening socket; returns the port (useful with --port 0).
    // Throws when the address cannot be bound.
    int bind();
    // Serves until stop(); call from its own thread after bind(). Returns
    // once every connection has ended.
    void run();
    // Stops accepting connections and closes those that are idle or still
    // sending a request; requests being answered go on (run() returns when
    // they are done).
    void stop();
    // Closes every connection now, answered or not (after stop()).
    void abort();

    // Makes the server ready (until then every route answers 503 "Loading model").
    void set_model(std::shared_ptr<ServedModel> model);

  private:
    std::shared_ptr<ServedModel> model() const;
    void add_routes();

    ServerOptions options_;
    std::unique_ptr<HttpListener> http_;
    mutable std::mutex mu_;
    std::shared_ptr<ServedModel> model_;
};

}  // namespace moeserve
