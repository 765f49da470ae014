#include "backend/cuda/cuda_graph.h"

#include <algorithm>

#include "backend/cuda/cuda_context.h"

namespace moeserve::cuda {

bool stream_is_capturing(cudaStream_t stream) {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(stream, &status) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    return status != cudaStreamCaptureStatusNone;
}

int64_t graph_cell_padding(int64_t n_cells) {
    if (n_cells <= 0) return 0;
    int64_t step = 256;
    while (step * 16 < n_cells) step *= 2;
    return (n_cells + step - 1) / step * step;
}

void OpRecorder::put_struct(const Weight& w) {
    put(w.data);
    put(w.type);
    for (int64_t n : w.ne) put(n);
    put(w.row_bytes);
    put(w.matrix_bytes);
}

void OpRecorder::put_struct(const RopeParams& p) {
    put(p.mode);
    put(p.n_rot);
    put(p.freq_base);
    put(p.freq_scale);
    put(p.ext_factor);
    put(p.attn_factor);
    put(p.beta_fast);
    put(p.beta_slow);
    put(p.n_ctx_orig);
    put(p.freq_factors);
}

void OpRecorder::put_struct(const MoeParams& p) {
    put(p.n_expert);
    put(p.n_expert_used);
    put(p.gating);
    put(p.selection_bias);
    put(p.normalize_weights);
    put(p.weights_scale);
    put(p.activation);
    put(p.expert_input);
}

void OpRecorder::put_struct(const SsmParams& p) {
    put(p.n_head);
    put(p.head_dim);
    put(p.d_state);
    put(p.n_group);
    put(p.dt_bias);
    put(p.a);
    put(p.d);
}

void OpRecorder::put_struct(const KvLayer& l) {
    put(l.k);
    put(l.v);
    put(l.k_row_bytes);
    put(l.v_row_bytes);
    put(l.type_k);
    put(l.type_v);
    put(l.n_embd_k);
    put(l.n_embd_v);
    put(l.k_rot_chunk);
    put(l.v_rot_chunk);
}

void OpRecorder::put_struct(const AttentionCells& c) {
    put(c.cells);
    put(c.offset);
    put(c.n_cells);
    put(c.max_cells);
    put(c.max_run);
}

void OpRecorder::put_struct(const RecurrentLayer& r) {
    put(r.conv);
    put(r.ssm);
    put(r.seq_stride);
}

UploadArena::~UploadArena() {
    if (host_) cudaFreeHost(host_);
    if (device_) cudaFree(device_);
}

void UploadArena::reserve(size_t bytes) {
    if (bytes <= capacity_) return;
    const size_t grown = std::max(bytes, capacity_ + capacity_ / 2);
    if (host_) cudaFreeHost(host_);
    if (device_) cudaFree(device_);
    host_ = device_ = nullptr;
    capacity_ = used_ = 0;
    MOESERVE_CUDA_CHECK(cudaMallocHost(&host_, grown));
    MOESERVE_CUDA_CHECK(cudaMalloc(&device_, grown));
    capacity_ = grown;
    ++generation_;
}

std::optional<size_t> UploadArena::put(const void* src, size_t bytes, size_t span_bytes) {
    const size_t offset = (used_ + 255) / 256 * 256;
    if (offset + span_bytes > capacity_) return std::nullopt;
    if (bytes) std::memcpy(host_ + offset, src, bytes);
    used_ = offset + span_bytes;
    return offset;
}

ReadbackBuffer::~ReadbackBuffer() {
    if (data_) cudaFreeHost(data_);
}

void ReadbackBuffer::reserve(size_t bytes) {
    if (bytes <= capacity_) return;
    const size_t grown = std::max(bytes, capacity_ + capacity_ / 2);
    if (data_) cudaFreeHost(data_);
    data_ = nullptr;
    capacity_ = 0;
    MOESERVE_CUDA_CHECK(cudaMallocHost(&data_, grown));
    capacity_ = grown;
    ++generation_;
}

void install_graph(CachedGraph& cached, cudaGraph_t graph) {
    if (cached.exec) {
        cudaGraphExecUpdateResultInfo info{};
        if (cudaGraphExecUpdate(cached.exec, graph, &info) == cudaSuccess) return;
        cudaGetLastError();  // a changed topology: instantiate anew
        cudaGraphExecDestroy(cached.exec);
        cached.exec = nullptr;
    }
    MOESERVE_CUDA_CHECK(cudaGraphInstantiate(&cached.exec, graph, 0));
}

void destroy_graph(CachedGraph& cached) noexcept {
    if (cached.exec) cudaGraphExecDestroy(cached.exec);
    cached.exec = nullptr;
    cached.words.clear();
}

}  // namespace moeserve::cuda
