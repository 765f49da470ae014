#include "server/http_server.h"

#include <fmt/format.h>
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>
#include <utility>

#include "server/anthropic_handler.h"
#include "server/api_error.h"
#include "server/chat_messages.h"
#include "server/completion_handler.h"
#include "server/embedding_handler.h"
#include "server/http_listener.h"
#include "server/http_workers.h"
#include "server/infill_prompt.h"
#include "server/json_fields.h"
#include "server/metrics.h"
#include "server/request_log.h"
#include "server/responses_handler.h"
#include "server/resumable_stream_handler.h"
#include "server/server_info.h"
#include "server/slot_action_handler.h"
#include "server/webui_page.h"

namespace moeserve {
namespace {

using httplib::Request;
using httplib::Response;
using Handler = std::function<void(const Request&, Response&)>;

void send_json(Response& res, const json& body, int status = 200) {
    res.status = status;
    res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json; charset=utf-8");
}

void send_error(Response& res, int status, const std::string& type, const std::string& message,
                const json& extra = json::object()) {
    send_json(res, error_json(status, type, message, extra), status);
}

bool is_public_path(const std::string& path) {
    return path == "/health" || path == "/v1/health" || path == "/models" || path == "/v1/models";
}

// Compares the client's key with every configured key in time that depends
// only on the configured keys, so timing does not tell how much of a guess
// was right.
bool api_key_matches(const std::string& given, const std::vector<std::string>& keys) {
    unsigned match = 0;
    for (const std::string& key : keys) {
        unsigned diff = given.size() != key.size();
        for (size_t i = 0; i < key.size(); ++i) {
            const unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
            diff |= g ^ static_cast<unsigned char>(key[i]);
        }
        match |= static_cast<unsigned>(diff == 0);
    }
    return match != 0;
}

// Worker threads: one per open connection. Without --threads-http they are
// capped well above what slots and queue need, so that a few hundred idle or
// slow connections cannot starve the others; they start on demand.
size_t http_max_workers(const ServerOptions& o) {
    if (o.threads_http > 0) return static_cast<size_t>(o.threads_http);
    const size_t needed =
        static_cast<size_t>(o.n_parallel > 0 ? o.n_parallel : 4) + std::min<size_t>(o.max_queue, 1024) + 4;
    return std::max<size_t>(512, needed);
}

ConnectionLimits connection_limits(const ServerOptions& o) {
    ConnectionLimits limits;
    limits.read_timeout = std::chrono::seconds(o.timeout_s);
    limits.write_timeout = std::chrono::seconds(o.timeout_s);
    limits.max_request_bytes = o.max_body_bytes + (1u << 20);  // the body plus 1 MiB of request line and headers
    return limits;
}

std::string bearer_key(const Request& req) {
    std::string key = req.get_header_value("Authorization");
    if (key.empty()) key = req.get_header_value("X-Api-Key");
    if (key.rfind("Bearer ", 0) == 0) key = key.substr(7);
    return key;
}

// tokens for /tokenize: a string or a mix of strings and ids.
std::vector<int32_t> tokenize_content(const json& content, const ServedModel& m, bool add_special, bool parse_special) {
    if (content.is_string()) return m.tokenizer().tokenize(content.get<std::string>(), add_special, parse_special);
    if (!content.is_array()) throw invalid_request("Field 'content': expected a string or an array");
    std::vector<int32_t> out;
    bool first = true;
    for (const auto& e : content) {
        if (e.is_number_integer()) {
            out.push_back(e.get<int32_t>());
        } else if (e.is_string()) {
            auto part = m.tokenizer().tokenize(e.get<std::string>(), add_special && first, parse_special);
            out.insert(out.end(), part.begin(), part.end());
        } else {
            throw invalid_request("Field 'content': an array holds strings and token ids");
        }
        first = false;
    }
    return out;
}

// Whether an Origin ("http://localhost:3000", "http://[::1]:8080") names this machine.
bool is_local_origin(const std::string& origin) {
    const size_t scheme = origin.find("://");
    std::string host = scheme == std::string::npos ? origin : origin.substr(scheme + 3);
    if (!host.empty() && host.front() == '[') {
        const size_t close = host.find(']');
        host = close == std::string::npos ? "" : host.substr(1, close - 1);
    } else {
        host = host.substr(0, host.find_first_of(":/"));
    }
    return host == "localhost" || host == "127.0.0.1" || host == "::1";
}

}  // namespace

std::string cors_allowed_origin(const ServerOptions& o, const std::string& origin) {
    if (o.cors_origins == "*") return o.cors_credentials && !origin.empty() ? origin : "*";
    if (o.cors_origins == "localhost") return is_local_origin(origin) ? origin : "";
    return o.cors_origins;
}

HttpServer::HttpServer(const ServerOptions& options)
    : options_(options), http_(std::make_unique<HttpListener>(connection_limits(options))) {
    const size_t max_workers = http_max_workers(options_);
    http_->new_task_queue = [max_workers] {
        return new HttpWorkers(max_workers, std::min<size_t>(max_workers, 8), std::chrono::seconds(10));
    };
    http_->set_read_timeout(options_.timeout_s);
    http_->set_write_timeout(options_.timeout_s);
    http_->set_payload_max_length(options_.max_body_bytes);
    http_->set_tcp_nodelay(true);

    http_->set_pre_routing_handler([this](const Request& req, Response& res) {
        request_log() = RequestLog{std::chrono::steady_clock::now()};
        res.set_header("Server", "moeserve");
        const std::string allowed = cors_allowed_origin(options_, req.get_header_value("Origin"));
        if (!allowed.empty()) res.set_header("Access-Control-Allow-Origin", allowed);
        if (req.method == "OPTIONS") {
            if (options_.cors_credentials) res.set_header("Access-Control-Allow-Credentials", "true");
            res.set_header("Access-Control-Allow-Methods", options_.cors_methods);
            res.set_header("Access-Control-Allow-Headers", options_.cors_headers);
            res.status = 200;
            return httplib::Server::HandlerResponse::Handled;
        }
        // The chat page: served while the model loads and without the API key, like llama-server's
        // web UI assets (the page asks for the key when the API refuses it).
        if (options_.webui && req.method == "GET" && req.path == options_.api_prefix + "/") {
            res.set_content(std::string(webui_page()), "text/html; charset=utf-8");
            return httplib::Server::HandlerResponse::Handled;
        }
        if (!model()) {
            send_error(res, 503, "unavailable_error", "Loading model");
            return httplib::Server::HandlerResponse::Handled;
        }
        if (!options_.api_keys.empty()) {
            std::string path = req.path;
            if (!options_.api_prefix.empty() && path.rfind(options_.api_prefix, 0) == 0)
                path = path.substr(options_.api_prefix.size());
            if (!is_public_path(path) && !api_key_matches(bearer_key(req), options_.api_keys)) {
                send_error(res, 401, "authentication_error", "Invalid API Key");
                return httplib::Server::HandlerResponse::Handled;
            }
        }
        return httplib::Server::HandlerResponse::Unhandled;
    });

    http_->set_error_handler(httplib::Server::HandlerWithResponse([this](const Request& req, Response& res) {
        if (!res.body.empty() || res.content_provider_) return httplib::Server::HandlerResponse::Unhandled;
        if (res.status == 404) {
            send_json(res, json{{"error", {{"message", "File Not Found"}, {"type", "not_found_error"}, {"code", 404}}}},
                      404);
        } else if (res.status == 413 || (res.status == 400 && request_over_size_limit())) {
            send_error(res, 413, "invalid_request_error",
                       fmt::format("the request body is larger than the limit of {} bytes (--max-body-size)",
                                   options_.max_body_bytes));
        } else {
            send_error(res, res.status, res.status >= 500 ? "server_error" : "invalid_request_error",
                       fmt::format("HTTP error {} for {} {}", res.status, req.method, req.path));
        }
        return httplib::Server::HandlerResponse::Handled;
    }));

    http_->set_exception_handler([](const Request&, Response& res, std::exception_ptr ep) {
        try {
            std::rethrow_exception(ep);
        } catch (const ApiError& e) {
            send_error(res, e.status, e.type, e.what(), e.extra);
        } catch (const std::exception& e) {
            send_error(res, 500, "server_error", e.what());
        } catch (...) {
            send_error(res, 500, "server_error", "unknown error");
        }
    });

    http_->set_logger([](const Request& req, const Response& res) {
        // A request that failed while being read (a client gone mid-body) never
        // reached the pre-routing handler: it has no start time of its own.
        const RequestLog log = std::exchange(request_log(), RequestLog{});
        std::string tokens, time;
        if (log.prompt_tokens || log.completion_tokens)
            tokens = fmt::format(" prompt={} completion={}", log.prompt_tokens, log.completion_tokens);
        if (log.start != std::chrono::steady_clock::time_point{})
            time = fmt::format(" {:.3f} s",
                               std::chrono::duration<double>(std::chrono::steady_clock::now() - log.start).count());
        std::fprintf(stderr, "srv  log_request: %s %s %d%s%s%s\n", req.method.c_str(), req.path.c_str(), res.status,
                     tokens.c_str(), log.cancelled ? " (client went away)" : "", time.c_str());
    });

    add_routes();
}

HttpServer::~HttpServer() = default;

std::shared_ptr<ServedModel> HttpServer::model() const {
    std::lock_guard<std::mutex> lock(mu_);
    return model_;
}

void HttpServer::set_model(std::shared_ptr<ServedModel> model) {
    std::lock_guard<std::mutex> lock(mu_);
    model_ = std::move(model);
}

int HttpServer::bind() {
    int port = options_.port;
    if (port == 0) {
        port = http_->bind_to_any_port(options_.host);
    } else if (!http_->bind_to_port(options_.host, port)) {
        port = -1;
    }
    if (port < 0)
        throw std::runtime_error(
            fmt::format("cannot listen on {}:{} (address in use or not available)", options_.host, options_.port));
    if (!http_->raise_listen_backlog())
        std::fprintf(stderr, "srv  warning: cannot raise the listen backlog; bursts of connections may wait\n");
    return port;
}

void HttpServer::run() {
    http_->listen_after_bind();
}

void HttpServer::stop() {
    // cpp-httplib's stop() does nothing until its listen loop is running; a
    // model that fails to load at once can get here before run() has started
    // it, and the loop would then never end. Wait for it (bounded) first.
    for (int i = 0; i < 5000 && !http_->is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    http_->stop();
    http_->end_idle_connections();
}

void HttpServer::abort() {
    http_->end_all_connections();
}

void HttpServer::add_routes() {
    const std::string p = options_.api_prefix;
    // Every handler runs with the loaded model; ApiError becomes its JSON answer.
    auto with_model = [this](std::function<void(const Request&, Response&, std::shared_ptr<ServedModel>)> fn) {
        return [this, fn](const Request& req, Response& res) {
            auto m = model();
            try {
                fn(req, res, m);
            } catch (const ApiError& e) {
                send_error(res, e.status, e.type, e.what(), e.extra);
            }
        };
    };
    auto get = [&](std::initializer_list<const char*> paths, Handler h) {
        for (const char* path : paths) http_->Get(p + path, h);
    };
    auto post = [&](std::initializer_list<const char*> paths, Handler h) {
        for (const char* path : paths) http_->Post(p + path, h);
    };

    get({"/health", "/v1/health"}, [](const Request&, Response& res) { send_json(res, json{{"status", "ok"}}); });
    get({"/models", "/v1/models"},
        with_model([](const Request&, Response& res, auto m) { send_json(res, models_json(*m)); }));
    get({"/props"}, with_model([](const Request&, Response& res, auto m) { send_json(res, props_json(*m)); }));
    post({"/props"}, with_model([](const Request&, Response& res, auto m) {
             if (!m->options().endpoint_props)
                 throw ApiError(501, "not_supported_error",
                                "This server does not support changing global properties. Start it with `--props`");
             send_json(res, json{{"success", true}});
         }));
    get({"/slots"}, with_model([](const Request& req, Response& res, auto m) {
            if (!m->options().endpoint_slots)
                throw ApiError(501, "not_supported_error",
                               "This server does not support slots endpoint. Start it with `--slots`");
            if (req.get_param_value("fail_on_no_slot") == "1") {
                const auto slots = m->scheduler().slots();
                if (std::none_of(slots.begin(), slots.end(),
                                 [](const SlotInfo& s) { return s.state == SlotState::idle; }))
                    throw ApiError(503, "unavailable_error", "no slot available");
            }
            send_json(res, slots_json(*m));
        }));
    // LoRA adapters: moeserve loads none (--lora is refused at start), so the list is empty and
    // setting the scale of any adapter is an error; an empty list is accepted, as llama-server.
    get({"/lora-adapters"}, [](const Request&, Response& res) { send_json(res, json::array()); });
    post({"/lora-adapters"}, [](const Request& req, Response& res) {
        try {
            // An array, which parse_body (objects only) would refuse.
            const json body = json_text_nests_deeper_than(req.body, kMaxJsonDepth)
                                  ? json(nullptr)
                                  : json::parse(req.body, nullptr, /*allow_exceptions=*/false);
            if (!body.is_array()) throw invalid_request("expected an array of {\"id\": N, \"scale\": S}");
            if (!body.empty())
                throw invalid_request(fmt::format("no LoRA adapter with id {} is loaded (moeserve loads no adapters)",
                                                  body[0].is_object() ? body[0].value("id", json()).dump() : "?"));
            send_json(res, json{{"success", true}});
        } catch (const ApiError& e) {
            send_error(res, e.status, e.type, e.what(), e.extra);
        }
    });
    post({"/slots/([0-9]+)"},
         with_model([](const Request& req, Response& res, auto m) { send_json(res, slot_action_response(req, *m)); }));
    get({"/metrics"}, with_model([](const Request&, Response& res, auto m) {
            if (!m->options().endpoint_metrics)
                throw ApiError(501, "not_supported_error",
                               "This server does not support metrics endpoint. Start it with `--metrics`");
            res.set_content(prometheus_metrics(m->scheduler().stats(), m->scheduler().slots()),
                            "text/plain; version=0.0.4");
        }));
    post({"/tokenize"}, with_model([](const Request& req, Response& res, auto m) {
             const json body = parse_body(req.body);
             const bool add_special = bool_field(body, "add_special").value_or(false);
             const bool parse_special = bool_field(body, "parse_special").value_or(true);
             const bool with_pieces = bool_field(body, "with_pieces").value_or(false);
             const json content = body.value("content", json(""));
             const auto ids = tokenize_content(content, *m, add_special, parse_special);
             json tokens = json::array();
             for (int32_t id : ids) {
                 if (!with_pieces) {
                     tokens.push_back(id);
                     continue;
                 }
                 const std::string piece = m->tokenizer().token_to_piece(id, true);
                 json jp = json(piece);
                 try {
                     (void)jp.dump();
                 } catch (const json::type_error&) {
                     jp = json::array();
                     for (unsigned char c : piece) jp.push_back(static_cast<int>(c));
                 }
                 tokens.push_back({{"id", id}, {"piece", jp}});
             }
             send_json(res, json{{"tokens", tokens}});
         }));
    post({"/detokenize"}, with_model([](const Request& req, Response& res, auto m) {
             const json body = parse_body(req.body);
             std::vector<int32_t> ids;
             if (auto it = body.find("tokens"); it != body.end() && !it->is_null()) {
                 if (!it->is_array()) throw invalid_request("Field 'tokens': expected an array of token ids");
                 for (const auto& t : *it) {
                     if (!t.is_number_integer())
                         throw invalid_request("Field 'tokens': expected an array of token ids");
                     const int64_t id = t.get<int64_t>();
                     if (id < 0 || id >= static_cast<int64_t>(m->tokenizer().n_tokens()))
                         throw invalid_request(fmt::format("Field 'tokens': token {} is outside the vocabulary", id));
                     ids.push_back(static_cast<int32_t>(id));
                 }
             }
             send_json(res, json{{"content", m->tokenizer().detokenize(ids, true)}});
         }));
    post({"/apply-template"}, with_model([](const Request& req, Response& res, auto m) {
             const json body = parse_body(req.body);
             send_json(res, json{{"prompt", render_chat_prompt(body, *m).text}});
         }));
    post({"/v1/chat/completions", "/chat/completions"},
         with_model([](const Request& req, Response& res, auto m) { handle_completion(ApiKind::chat, req, res, m); }));
    post({"/v1/chat/completions/control", "/chat/completions/control"},
         with_model([](const Request& req, Response& res, auto m) {
             const json body = parse_body(req.body);
             const std::string id = string_field(body, "id").value_or("");
             if (id.empty()) throw invalid_request("missing completion id");
             if (string_field(body, "action").value_or("") != "reasoning_end")
                 throw invalid_request("unknown control action");
             const CompletionControls::Outcome o = m->completion_controls().reasoning_end(id);
             json answer = {{"success", o.success}};
             if (!o.message.empty()) answer["message"] = o.message;
             send_json(res, answer);
         }));
    // Resumable streams (X-Conversation-Id): replay, lookup, cancel.
    get({"/v1/stream", "/v1/stream/(.+)"},
        with_model([](const Request& req, Response& res, auto m) { handle_stream_replay(req, res, *m); }));
    post({"/v1/streams/lookup"},
         with_model([](const Request& req, Response& res, auto m) { handle_streams_lookup(req, res, *m); }));
    for (const char* path : {"/v1/stream", "/v1/stream/(.+)"})
        http_->Delete(p + path, with_model([](const Request& req, Response& res, auto m) {
                          handle_stream_cancel(req, res, *m);
                      }));
    post({"/v1/completions"}, with_model([](const Request& req, Response& res, auto m) {
             handle_completion(ApiKind::completions, req, res, m);
         }));
    post({"/completion", "/completions"}, with_model([](const Request& req, Response& res, auto m) {
             handle_completion(ApiKind::native, req, res, m);
         }));
    post({"/infill"}, with_model([](const Request& req, Response& res, auto m) {
             require_fim_tokens(m->tokenizer().vocab());
             json body = parse_body(req.body);
             const ServerOptions& o = m->options();
             const InfillLimits limits{o.n_batch, o.n_predict, m->layout().n_ctx_slot, o.spm_infill};
             body["prompt"] = infill_prompt(m->tokenizer(), body, limits);
             handle_completion_body(ApiKind::native, body, req, res, m);
         }));
    post({"/v1/responses", "/responses"},
         with_model([](const Request& req, Response& res, auto m) { handle_responses(req, res, m); }));
    post({"/v1/responses/input_tokens", "/responses/input_tokens"},
         with_model([](const Request& req, Response& res, auto m) { handle_input_tokens(true, req, res, m); }));
    post({"/v1/chat/completions/input_tokens", "/chat/completions/input_tokens"},
         with_model([](const Request& req, Response& res, auto m) { handle_input_tokens(false, req, res, m); }));
    post({"/v1/messages"},
         with_model([](const Request& req, Response& res, auto m) { handle_anthropic_messages(req, res, m); }));
    post({"/v1/messages/count_tokens"},
         with_model([](const Request& req, Response& res, auto m) { handle_anthropic_count_tokens(req, res, m); }));
    post({"/v1/embeddings"}, with_model([](const Request& req, Response& res, auto m) {
             handle_embeddings(EmbeddingApi::openai, req, res, m);
         }));
    post({"/embedding", "/embeddings"}, with_model([](const Request& req, Response& res, auto m) {
             handle_embeddings(EmbeddingApi::native, req, res, m);
         }));
    // llama-server's routes for features this server does not have answer as
    // llama-server answers them when they are off, not with a 404.
    post({"/rerank", "/reranking", "/v1/rerank", "/v1/reranking"}, [](const Request&, Response& res) {
        send_error(res, 501, "not_supported_error",
                   "This server does not support reranking. moeserve serves no reranking models (--reranking is "
                   "refused at start)");
    });
    post({"/v1/audio/transcriptions", "/audio/transcriptions"}, [](const Request&, Response& res) {
        send_error(res, 501, "not_supported_error",
                   "This server does not support audio input: moeserve has no multimodal projector (--mmproj)");
    });
    // /tools and /cors-proxy: llama-server's disabled-feature answer, exactly.
    for (const char* path : {"/tools", "/cors-proxy"}) {
        auto disabled = [](const Request&, Response& res) {
            send_json(res, json{{"error", {{"message", "this feature is disabled"}, {"type", "feature_disabled"}}}},
                      403);
        };
        http_->Get(p + path, disabled);
        http_->Post(p + path, disabled);
    }
}

}  // namespace moeserve
