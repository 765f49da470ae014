// GET /metrics: Prometheus text (format 0.0.4) with llama-server's
// llamacpp:* metrics in its order (spec server-behaviour §5.12), then
// moeserve's own: tokens evaluated, throughput since start, requests in
// flight and queued, KV cache use, and one state gauge per slot.
#pragma once

#include <string>
#include <vector>

#include "engine/scheduler.h"

namespace moeserve {

std::string prometheus_metrics(const SchedulerStats& stats, const std::vector<SlotInfo>& slots);

}  // namespace moeserve
