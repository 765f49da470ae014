#include "server/http_server.h"

#include <fmt/format.h>
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "server/api_error.h"
#include "server/chat_messages.h"
#include "server/completion_handler.h"
#include "server/json_fields.h"
#include "server/metrics.h"
#include "server/request_log.h"
#include "server/server_info.h"

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

}  // namespace

HttpServer::HttpServer(const ServerOptions& options) : options_(options), http_(std::make_unique<httplib::Server>()) {
    const int threads = options_.threads_http > 0
                            ? options_.threads_http
                            : std::max(8, (options_.n_parallel > 0 ? options_.n_parallel : 4) +
                                              static_cast<int>(std::min<size_t>(options_.max_queue, 1024)) + 4);
    http_->new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
    http_->set_read_timeout(options_.timeout_s);
    http_->set_write_timeout(options_.timeout_s);
    http_->set_payload_max_length(options_.max_body_bytes);
    http_->set_tcp_nodelay(true);

    http_->set_pre_routing_handler([this](const Request& req, Response& res) {
        request_log() = RequestLog{std::chrono::steady_clock::now()};
        res.set_header("Server", "moeserve");
        const std::string origin = req.get_header_value("Origin");
        res.set_header("Access-Control-Allow-Origin", origin.empty() ? "*" : origin);
        if (req.method == "OPTIONS") {
            res.set_header("Access-Control-Allow-Credentials", "true");
            res.set_header("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
            res.set_header("Access-Control-Allow-Headers", "*");
            res.status = 200;
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
            const auto& keys = options_.api_keys;
            if (!is_public_path(path) && std::find(keys.begin(), keys.end(), bearer_key(req)) == keys.end()) {
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
        } else if (res.status == 413) {
            send_error(res, 400, "invalid_request_error",
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
        const RequestLog& log = request_log();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - log.start).count();
        std::string tokens;
        if (log.prompt_tokens || log.completion_tokens)
            tokens = fmt::format(" prompt={} completion={}", log.prompt_tokens, log.completion_tokens);
        std::fprintf(stderr, "srv  log_request: %s %s %d%s%s %.3f s\n", req.method.c_str(), req.path.c_str(),
                     res.status, tokens.c_str(), log.cancelled ? " (client went away)" : "", s);
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
    post({"/v1/completions"}, with_model([](const Request& req, Response& res, auto m) {
             handle_completion(ApiKind::completions, req, res, m);
         }));
    post({"/completion", "/completions"}, with_model([](const Request& req, Response& res, auto m) {
             handle_completion(ApiKind::native, req, res, m);
         }));
}

}  // namespace moeserve
