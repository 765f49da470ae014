#include "server/served_model.h"
#include "server/model_sampling_defaults.h"

#include "server/context_fit.h"
#include "server/jinja_formatter.h"

#include <fmt/format.h>

#include <cstdio>
#include <functional>

#include "backend/select_backend.h"
#include "gguf/file_type.h"
#include "gguf/gguf_file.h"
#include "memory/byte_size.h"

namespace moeserve {
namespace {

double mib(double bytes) {
    return bytes / (1024.0 * 1024.0);
}

// -nkvo on a GPU run: the KV cache goes where its layer runs (only the
// routed experts can stay in host memory, --cpu-moe and friends), so the
// flag is refused rather than silently ignored.
void check_placement(const ServerOptions& o, Backend& backend) {
    if (backend.runs_on_host() || !o.no_kv_offload) return;  // all of it is in host memory already
    throw std::runtime_error(
        "--no-kv-offload keeps the KV cache in host memory, but moeserve keeps it with its layer: drop the flag, "
        "use -ngl N below the layer count to keep the first layers (and their cache) on the CPU, or -ngl 0 to run on "
        "the CPU");
}

}  // namespace

ServedModel::ServedModel(const ServerOptions& options) : options_(options) {
    const GgufFile file = GgufFile::open(options.model_path);
    const std::string arch = file.architecture();
    auto ctx_len = file.find_u32(arch + ".context_length");
    n_ctx_train_ = ctx_len ? *ctx_len : 4096;
    ftype_ = file_type_name(file.find_u32("general.file_type").value_or(0));
    for (const auto& t : file.tensors()) {
        n_params_ += t.n_elements();
        size_bytes_ += t.nbytes;
    }
    tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::from_gguf(file));
    const auto recommended = apply_model_sampling_defaults(file, options.sampling_given, options_.sampling);
    if (!recommended.empty()) {
        std::string list;
        for (const auto& r : recommended) list += (list.empty() ? "" : ", ") + r;
        std::fprintf(stderr, "srv load_model: sampling defaults from the model file (general.sampling.*): %s\n",
                     list.c_str());
    }
    if (!options.pooling.empty()) {
        pooling_ = parse_pooling(options.pooling).value_or(Pooling::none);
    } else if (auto v = file.find_u32(arch + ".pooling_type")) {
        auto p = pooling_from_gguf(*v);
        if (!p && options.embeddings)
            throw std::runtime_error(fmt::format(
                "{}: {}.pooling_type is {} (rank: a reranking model), which moeserve does not serve; choose "
                "--pooling mean, cls or last",
                options.model_path, arch, *v));
        pooling_ = p.value_or(Pooling::none);
    }

    // Chat format: --chat-template-file (Jinja), --chat-template (a built-in
    // name or a template's source), else the GGUF's template. With --jinja
    // (the default) templates run in the Jinja engine; with --no-jinja, or
    // when the model has none, a built-in formatter of the template's family.
    const Vocab& vocab = tokenizer_->vocab();
    const std::string& tmpl = options.chat_template;
    if (!options.chat_template_file.empty()) {
        ChatTemplate t = ChatTemplate::from_file(options.chat_template_file, &vocab);
        chat_template_ = t.source();
        formatter_ = std::make_unique<JinjaFormatter>(std::move(t));
    } else if (!tmpl.empty()) {
        formatter_ = make_builtin_formatter(tmpl);
        // Jinja source (or the Jinja chatml): a bare word that names no built-in format is
        // refused below with the list of names, not run as a template that prints the word.
        const bool jinja_source = tmpl.find("{%") != std::string::npos || tmpl.find("{{") != std::string::npos;
        if (!formatter_ && options.jinja && jinja_source)
            formatter_ = std::make_unique<JinjaFormatter>(ChatTemplate::from_name_or_source(tmpl, &vocab));
        if (!formatter_) formatter_ = formatter_for_template(tmpl);
        if (!formatter_)
            throw std::runtime_error(fmt::format(
                "--chat-template: '{}' is neither a built-in format (chatml, qwen3, qwen3-coder, glm4, nemotron) nor "
                "a template of one of those families (Jinja templates need --jinja; a template file: "
                "--chat-template-file)",
                tmpl.size() > 60 ? tmpl.substr(0, 60) + "..." : tmpl));
        chat_template_ = tmpl;
    } else {
        chat_template_ = vocab.chat_template().value_or("");
        if (options.jinja && !chat_template_.empty()) {
            formatter_ = std::make_unique<JinjaFormatter>(ChatTemplate::from_vocab(vocab));
        } else {
            formatter_ = formatter_for_template(chat_template_);
            if (!formatter_) {
                std::fprintf(stderr,
                             "srv load_model: %s; using the chatml format (choose another with --chat-template NAME)\n",
                             chat_template_.empty() ? "the model has no chat template"
                                                    : "the model's chat template is not one of the built-in families");
                formatter_ = make_builtin_formatter("chatml");
            }
        }
    }

    const bool auto_np = options.n_parallel < 0;
    const int n_slots = auto_np ? 4 : options.n_parallel;
    const bool unified = options.kv_unified.value_or(auto_np);
    int64_t n_ctx = options.n_ctx;
    ExpertPlacementFlags experts = options.experts;
    if (options.fit) {
        // The memory the plan must fit: the card's on a GPU run (less the
        // weights that stay in host memory), else MemAvailable.
        BackendRequest request;
        request.n_gpu_layers = parse_gpu_layers(options.n_gpu_layers);
        request.n_layer = static_cast<int>(file.find_u32(arch + ".block_count").value_or(0));
        const auto host_experts = [&](const ExpertPlacementFlags& f) {
            return f.any() ? resolve_expert_placement(file, request.n_layer, f).host_experts : std::vector<bool>{};
        };
        request.host_experts = host_experts(experts);
        const MemoryBudget budget = memory_budget(file, request);
        // The experts are --fit's to place only where the user placed nothing (-ngl auto, no -ot/-cmoe/-ncmoe).
        std::function<uint64_t(int)> with_n_cpu_moe;
        if (budget.gpu && request.n_gpu_layers == kGpuLayersAuto && !experts.any())
            with_n_cpu_moe = [&](int n) {
                ExpertPlacementFlags f;
                f.n_cpu_moe = n;
                BackendRequest r = request;
                r.host_experts = host_experts(f);
                return host_weight_bytes(file, r);
            };
        const FitResult fit =
            fit_context(file, options, n_slots, unified, budget.bytes,
                        static_cast<uint64_t>(options.fit_target_mib) << 20, budget.host_weight_bytes, with_n_cpu_moe);
        if (fit.lowered) {
            std::fprintf(stderr,
                         "srv load_model: --fit: the training context (%lld cells) needs %.2f MiB of %.2f MiB "
                         "available (%s); using -c %lld to keep %lld MiB free (--fit off or -c to choose)\n",
                         static_cast<long long>(n_ctx_train_), mib(static_cast<double>(fit.full_bytes)),
                         mib(static_cast<double>(fit.budget_bytes)), budget.label.c_str(),
                         static_cast<long long>(fit.n_ctx), static_cast<long long>(options.fit_target_mib));
            n_ctx = fit.n_ctx;
        }
        if (fit.n_cpu_moe > 0) {
            std::fprintf(stderr,
                         "srv load_model: --fit: the plan does not fit the memory available (%s) even at -c %lld; "
                         "keeping the routed experts of the first %d layers in host memory (as --n-cpu-moe %d; -ngl "
                         "or --fit off to choose)\n",
                         budget.label.c_str(), static_cast<long long>(fit.lowered ? fit.n_ctx : options.n_ctx),
                         fit.n_cpu_moe, fit.n_cpu_moe);
            experts.n_cpu_moe = fit.n_cpu_moe;
        }
    }
    layout_ = compute_slot_layout(n_ctx, n_ctx_train_, n_slots, unified);

    EngineOptions eo;
    eo.model_path = options.model_path;
    eo.n_threads = options.n_threads > 0 ? options.n_threads : 0;
    eo.n_ctx = layout_.n_cells;
    eo.n_seq = n_slots;
    eo.type_k = parse_cache_type(options.cache_type_k);
    eo.type_v = parse_cache_type(options.cache_type_v);
    eo.n_ubatch = options.n_ubatch;
    eo.n_gpu_layers = parse_gpu_layers(options.n_gpu_layers);
    eo.experts = experts;
    eo.load_mode = options.load_mode;
    eo.rope = options.rope;
    eo.n_rs_snapshots = options.ctx_checkpoints;
    eo.speculative = options.speculative.enabled;
    eo.spec_draft_max = options.speculative.draft_max();
    engine_ = std::make_unique<Engine>(eo);
    check_placement(options, engine_->backend());
    std::fprintf(stderr, "load_tensors: backend %s\n", engine_->backend().name().c_str());
    if (!engine_->backend_note().empty()) std::fprintf(stderr, "load_tensors: %s\n", engine_->backend_note().c_str());
    n_embd_ = engine_->model().params().n_embd;

    if (layout_.n_ctx_seq < n_ctx_train_)
        std::fprintf(stderr,
                     "llama_context: n_ctx_seq (%lld) < n_ctx_train (%lld) -- the full capacity of the model "
                     "will not be utilized\n",
                     static_cast<long long>(layout_.n_ctx_seq), static_cast<long long>(n_ctx_train_));
    else if (layout_.n_ctx_seq > n_ctx_train_)
        std::fprintf(stderr,
                     "llama_context: n_ctx_seq (%lld) > n_ctx_train (%lld): slots are capped at the training "
                     "context\n",
                     static_cast<long long>(layout_.n_ctx_seq), static_cast<long long>(n_ctx_train_));
    const KvCache& cache = engine_->cache();
    // llama.cpp's summary line: N = the cells one sequence may use (n_ctx_seq), L = the
    // layers holding K/V, S/T = sequences / streams, then K's and V's sizes.
    double k_bytes = 0, v_bytes = 0;
    int kv_layers = 0;
    for (int l = 0; l < cache.n_layer(); ++l) {
        k_bytes += static_cast<double>(cache.k_row_bytes(l)) * static_cast<double>(cache.n_cells());
        v_bytes += static_cast<double>(cache.v_row_bytes(l)) * static_cast<double>(cache.n_cells());
        kv_layers += cache.k_row_bytes(l) > 0;
    }
    std::fprintf(stderr,
                 "llama_kv_cache: size = %8.2f MiB (%6lld cells, %3d layers, %2d/%d seqs), K (%s): %8.2f MiB, V (%s): "
                 "%8.2f MiB\n",
                 mib(k_bytes + v_bytes), static_cast<long long>(layout_.n_ctx_seq), kv_layers, n_slots,
                 unified ? 1 : n_slots, options.cache_type_k.c_str(), mib(k_bytes), options.cache_type_v.c_str(),
                 mib(v_bytes));
    if (cache.has_recurrent()) {
        // llama.cpp's line for the live states (one per slot, f32 whatever -ctk/-ctv say),
        // then where the snapshots go.
        double r_bytes = 0, s_bytes = 0;
        int rs_layers = 0;
        for (int l = 0; l < cache.n_layer(); ++l) {
            r_bytes += static_cast<double>(cache.n_embd_r(l)) * 4.0 * n_slots;
            s_bytes += static_cast<double>(cache.n_embd_s(l)) * 4.0 * n_slots;
            rs_layers += cache.n_embd_r(l) + cache.n_embd_s(l) > 0;
        }
        std::fprintf(stderr,
                     "llama_memory_recurrent: size = %8.2f MiB (%6d cells, %3d layers, %2d seqs), R (f32): %8.2f MiB, "
                     "S (f32): %8.2f MiB\n",
                     mib(r_bytes + s_bytes), n_slots, rs_layers, n_slots, mib(r_bytes), mib(s_bytes));
        const int device =
            cache.snapshot_capacity(SnapshotKind::prompt_end) + cache.snapshot_capacity(SnapshotKind::turn_boundary);
        std::fprintf(
            stderr,
            "srv load_model: recurrent-state snapshots per slot: %d in the backend's memory (%.2f MiB in all), up "
            "to %d in host RAM as long conversations use them (--ctx-checkpoints %d, "
            "--checkpoint-min-step %lld)\n",
            device, mib((r_bytes + s_bytes) * device), cache.snapshot_capacity(SnapshotKind::message_start),
            options.ctx_checkpoints, static_cast<long long>(options.checkpoint_min_step));
        if (cache.can_drop_guesses() && options.speculative.enabled)
            std::fprintf(stderr,
                         "srv load_model: speculative decoding: one more recurrent state per slot to roll back to "
                         "(%.2f MiB in all)\n",
                         mib(r_bytes + s_bytes));
    }

    SchedulerOptions so;
    so.layout = layout_;
    so.n_batch = std::min<int64_t>(options.n_batch, layout_.n_cells);
    so.n_ubatch = std::min<int64_t>(options.n_ubatch, so.n_batch);
    so.max_queue = options.max_queue;
    so.log_slots = true;
    so.slot_prompt_similarity = options.slot_prompt_similarity;
    if (options.context_shift && !engine_->backend().runs_on_host())
        throw std::runtime_error("--context-shift runs on the CPU backend only (use -ngl 0, or drop the flag)");
    so.context_shift = options.context_shift;
    so.share_prefixes = options.prefix_sharing;
    so.checkpoint_min_step = options.checkpoint_min_step;
    so.can_shift_keys = engine_->backend().runs_on_host();
    if (options.cache_reuse > 0 && !so.can_shift_keys)
        std::fprintf(stderr,
                     "srv load_model: --cache-reuse is ignored: shifting cached keys runs on the CPU backend only\n");
    else if (options.cache_reuse > 0 && !engine_->model().context_shift_refusal().empty())
        std::fprintf(stderr, "srv load_model: --cache-reuse is ignored: %s\n",
                     engine_->model().context_shift_refusal().c_str());
    if (options.cache_ram_mib != 0 && options.cache_prompt) {
        // At most half the memory left once the model is loaded: the cache grows as conversations come and go.
        const uint64_t half = available_memory_bytes() / 2;
        const uint64_t asked = options.cache_ram_mib < 0 ? half : static_cast<uint64_t>(options.cache_ram_mib) << 20;
        so.cache_ram_bytes = static_cast<size_t>(std::min(asked, half));
        std::fprintf(stderr, "srv load_model: prompt cache in RAM: up to %.0f MiB (--cache-ram)\n",
                     mib(static_cast<double>(so.cache_ram_bytes)));
    }
    so.speculative = options.speculative;
    for (DraftKind kind : so.speculative.kinds) {
        const SpeculativeConfig& sc = so.speculative;
        if (kind == DraftKind::ngram_simple)
            std::fprintf(stderr,
                         "srv load_model: speculative decoding: ngram-simple (size_n = %d, size_m = %d), up to %d "
                         "guesses per token (--spec-draft-n-max), at least %d (--spec-draft-n-min)\n",
                         sc.ngram.size_n, sc.ngram.size_m, sc.n_max, sc.n_min);
        else
            std::fprintf(stderr,
                         "srv load_model: speculative decoding: ngram-mod (n_match = %d), %d to %d guesses per token, "
                         "a pool of %.0f MiB shared by the slots\n",
                         sc.mod.n_match, sc.mod.n_min, sc.mod.n_max,
                         mib(static_cast<double>(NgramModPool::kDefaultEntries * sizeof(int32_t))));
    }
    if (options.embeddings) so.hidden_states = model_hidden_states(engine_->model());
    scheduler_ = std::make_unique<Scheduler>(engine_->model(), engine_->cache(), *tokenizer_, so);
    scheduler_->start();

    aliases_ = options.aliases;
    if (aliases_.empty()) aliases_.push_back(options.model_path);
    name_ = aliases_.front();
    std::fprintf(stderr,
                 "srv load_model: initializing, n_slots = %d, n_ctx_slot = %lld, kv_unified = '%s', chat "
                 "format = %s\n",
                 n_slots, static_cast<long long>(layout_.n_ctx_slot), unified ? "true" : "false",
                 formatter_->name().c_str());
    if (options.embeddings)
        std::fprintf(stderr, "srv load_model: embeddings on, pooling = %s, n_batch = %lld\n", pooling_name(pooling_),
                     static_cast<long long>(so.n_batch));
}

ServedModel::~ServedModel() {
    if (scheduler_) scheduler_->stop();
}

FormattedChat ServedModel::render_chat(const json& messages, const json& tools, bool add_generation_prompt,
                                       const json& kwargs, const ChatOutputOptions& output) const {
    FormattedChat chat = formatter_->format_chat(messages, tools, add_generation_prompt, kwargs, output);
    std::string& text = chat.text;
    const Vocab& v = tokenizer_->vocab();
    if (v.add_bos() && v.valid(v.special().bos)) {
        const std::string& bos = v.text(v.special().bos);
        if (!bos.empty() && text.starts_with(bos)) text.erase(0, bos.size());
    }
    return chat;
}

std::shared_ptr<const TokenPieces> ServedModel::token_pieces() const {
    std::call_once(pieces_once_,
                   [&] { pieces_ = std::make_shared<TokenPieces>(*tokenizer_, /*render_special=*/false); });
    return pieces_;
}

std::vector<int32_t> ServedModel::tokenize_prompt(const std::string& text) const {
    return tokenizer_->tokenize(text, /*add_special=*/true, /*parse_special=*/true);
}

}  // namespace moeserve
