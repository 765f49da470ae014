#include "server/server_info.h"

#include <chrono>

#include "server/completion_request.h"

namespace moeserve {

json models_json(const ServedModel& m) {
    const int64_t now =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    const auto& vocab = m.tokenizer().vocab();
    return json{{"models", json::array({{{"name", m.name()},
                                         {"model", m.name()},
                                         {"modified_at", ""},
                                         {"size", ""},
                                         {"digest", ""},
                                         {"type", "model"},
                                         {"description", ""},
                                         {"tags", json::array({""})},
                                         {"capabilities", json::array({"completion"})},
                                         {"parameters", ""},
                                         {"details",
                                          {{"parent_model", ""},
                                           {"format", "gguf"},
                                           {"family", ""},
                                           {"families", json::array({""})},
                                           {"parameter_size", ""},
                                           {"quantization_level", ""}}}}})},
                {"object", "list"},
                {"data", json::array({{{"id", m.name()},
                                       {"aliases", m.aliases()},
                                       {"tags", json::array()},
                                       {"object", "model"},
                                       {"created", now},
                                       {"owned_by", "llamacpp"},
                                       {"meta",
                                        {{"vocab_type", vocab.type() == VocabType::SPM ? 1 : 2},
                                         {"n_vocab", static_cast<int64_t>(vocab.size())},
                                         {"n_ctx", m.layout().n_ctx_slot},
                                         {"n_ctx_train", m.n_ctx_train()},
                                         {"n_embd", m.n_embd()},
                                         {"n_params", m.n_params()},
                                         {"size", m.size_bytes()},
                                         {"ftype", m.ftype()}}}}})}};
}

json props_json(const ServedModel& m) {
    GenerationRequest defaults;
    defaults.sampling = m.options().sampling;
    defaults.n_predict = m.options().n_predict;
    defaults.stop = m.options().reverse_prompts;
    const auto& v = m.tokenizer().vocab();
    auto token_text = [&](TokenId id) { return v.valid(id) ? v.text(id) : std::string(); };
    return json{{"default_generation_settings",
                 {{"params", generation_settings(defaults, m)}, {"n_ctx", m.layout().n_ctx_slot}}},
                {"total_slots", m.layout().n_slots},
                {"model_alias", m.name()},
                {"model_ftype", m.ftype()},
                {"model_path", m.options().model_path},
                {"modalities", {{"vision", false}, {"video", false}, {"audio", false}}},
                {"endpoint_slots", m.options().endpoint_slots},
                {"endpoint_props", m.options().endpoint_props},
                {"endpoint_metrics", m.options().endpoint_metrics},
                {"ui", m.options().webui},
                {"ui_settings", json::object()},
                {"chat_template", m.chat_template()},
                {"chat_format", m.formatter().name()},
                {"bos_token", token_text(v.special().bos)},
                {"eos_token", token_text(v.special().eos)},
                {"build_info", "moeserve"},
                {"is_sleeping", false},
                {"cors_proxy_enabled", false}};
}

json slots_json(const ServedModel& m) {
    json out = json::array();
    const bool speculative = m.scheduler().speculating();
    for (const SlotInfo& s : m.scheduler().slots()) {
        json j = {{"id", s.id},
                  {"n_ctx", s.n_ctx},
                  {"speculative", speculative},
                  {"is_processing", s.state != SlotState::idle},
                  {"state", slot_state_name(s.state)},
                  {"n_cached_tokens", s.n_cached}};
        if (s.has_task) {
            j["id_task"] = s.id_task;
            j["n_prompt_tokens"] = s.n_prompt_tokens;
            j["n_prompt_tokens_processed"] = s.n_prompt_tokens_processed;
            j["n_prompt_tokens_cache"] = s.n_prompt_tokens_cache;
            j["params"] = generation_settings(s.params, m);
            j["next_token"] = json::array({{{"has_next_token", s.state != SlotState::idle},
                                            {"has_new_line", s.has_new_line},
                                            {"n_remain", s.n_remain},
                                            {"n_decoded", s.n_decoded}}});
        }
        out.push_back(std::move(j));
    }
    return out;
}

}  // namespace moeserve
