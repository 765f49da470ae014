#include "server/metrics.h"

#include <sstream>

namespace moeserve {
namespace {

struct Metric {
    const char* name;
    const char* type;
    const char* help;
    double value;
};

void write(std::ostringstream& out, const char* prefix, const Metric& m) {
    out << "# HELP " << prefix << m.name << " " << m.help << "\n";
    out << "# TYPE " << prefix << m.name << " " << m.type << "\n";
    out << prefix << m.name << " " << m.value << "\n";
}

double ratio(double a, double b) {
    return b > 0 ? a / b : 0.0;
}

}  // namespace

std::string prometheus_metrics(const SchedulerStats& s, const std::vector<SlotInfo>& slots) {
    std::ostringstream out;  // default formatting: 6 significant digits, as llama-server prints
    const Metric llama[] = {
        {"prompt_tokens_total", "counter", "Number of prompt tokens processed.", double(s.n_prompt_tokens_total)},
        {"prompt_seconds_total", "counter", "Prompt process time", s.t_prompt_total_s},
        {"tokens_predicted_total", "counter", "Number of generation tokens processed.", double(s.n_predicted_total)},
        {"tokens_predicted_seconds_total", "counter", "Predict process time", s.t_predicted_total_s},
        {"n_decode_total", "counter", "Total number of llama_decode() calls", double(s.n_decode_total)},
        {"n_tokens_max", "counter", "Largest observed n_tokens.", double(s.n_tokens_max)},
        {"prompt_tokens_seconds", "gauge", "Average prompt throughput in tokens/s.",
         ratio(double(s.n_prompt_tokens_total), s.t_prompt_total_s)},
        {"predicted_tokens_seconds", "gauge", "Average generation throughput in tokens/s.",
         ratio(double(s.n_predicted_total), s.t_predicted_total_s)},
        {"requests_processing", "gauge", "Number of requests processing.", double(s.n_processing)},
        {"requests_deferred", "gauge", "Number of requests deferred.", double(s.n_queued)},
        {"n_busy_slots_per_decode", "gauge", "Average number of busy slots per llama_decode() call",
         ratio(double(s.n_busy_slots_total), double(s.n_decode_total))},
    };
    for (const auto& m : llama) write(out, "llamacpp:", m);

    const Metric own[] = {
        {"tokens_evaluated_total", "counter", "Tokens the model evaluated (prompt and generated).",
         double(s.n_tokens_evaluated)},
        {"forward_seconds_total", "counter", "Time spent in forward passes.", s.t_forward_total_s},
        {"tokens_evaluated_per_second", "gauge", "Tokens evaluated per second of forward time.",
         ratio(double(s.n_tokens_evaluated), s.t_forward_total_s)},
        {"generated_tokens_per_second", "gauge", "Tokens generated per second since start.",
         ratio(double(s.n_predicted_total), s.uptime_s)},
        {"requests_finished_total", "counter", "Requests that completed.", double(s.n_requests_done)},
        {"requests_failed_total", "counter", "Requests that ended with an error.", double(s.n_requests_failed)},
        {"requests_cancelled_total", "counter", "Requests whose client went away.", double(s.n_requests_cancelled)},
        {"requests_in_flight", "gauge", "Requests being processed in a slot.", double(s.n_processing)},
        {"requests_queued", "gauge", "Requests waiting for a slot.", double(s.n_queued)},
        {"kv_cache_cells_used", "gauge", "KV cache cells holding tokens.", double(s.kv_cells_used)},
        {"kv_cache_cells_total", "gauge", "KV cache cells allocated.", double(s.kv_cells_total)},
        {"kv_cache_usage_ratio", "gauge", "Share of KV cache cells in use.",
         ratio(double(s.kv_cells_used), double(s.kv_cells_total))},
        {"kv_cache_bytes", "gauge", "KV cache size in bytes.", double(s.kv_bytes)},
        {"prompt_cache_entries", "gauge", "Prompts held in the RAM prompt cache (--cache-ram).",
         double(s.prompt_cache_entries)},
        {"prompt_cache_bytes", "gauge", "Bytes of the RAM prompt cache.", double(s.prompt_cache_bytes)},
        {"prompt_cache_saves_total", "counter", "Slot states saved to the RAM prompt cache.",
         double(s.prompt_cache_saves)},
        {"prompt_cache_loads_total", "counter", "Slot states loaded from the RAM prompt cache.",
         double(s.prompt_cache_loads)},
    };
    for (const auto& m : own) write(out, "moeserve:", m);

    out << "# HELP moeserve:slot_state Slot state: 0 idle, 1 prefilling, 2 generating.\n";
    out << "# TYPE moeserve:slot_state gauge\n";
    for (const auto& sl : slots) out << "moeserve:slot_state{slot=\"" << sl.id << "\"} " << int(sl.state) << "\n";
    out << "# HELP moeserve:slot_cached_tokens Tokens a slot holds in the KV cache.\n";
    out << "# TYPE moeserve:slot_cached_tokens gauge\n";
    for (const auto& sl : slots) out << "moeserve:slot_cached_tokens{slot=\"" << sl.id << "\"} " << sl.n_cached << "\n";
    return out.str();
}

}  // namespace moeserve
