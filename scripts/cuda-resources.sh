#!/usr/bin/env bash
# Registers, spills and static shared memory of the CUDA kernels, from ptxas
# (-Xptxas -v), on a machine without a GPU: what decides how many blocks an
# SM holds (65,536 registers and 228 KB of shared memory an SM on sm_90), and
# so how much memory latency a kernel can hide, before any lease.
#
#   scripts/cuda-resources.sh [FILE_REGEX [KERNEL_REGEX]]
#   scripts/cuda-resources.sh matvec_int8 'matvec_int8_kernel<.*Q4_K'
#
# FILE_REGEX picks among src/backend/cuda/*.cu (default: all, a few minutes
# on 2 cores); KERNEL_REGEX filters the demangled kernel names. Target:
# MOESERVE_CUDA_ARCH (default 90). "blocks/SM" is the register limit alone
# for blocks of 128 and of 256 threads (shared memory may lower it).
set -euo pipefail
cd "$(dirname "$0")/.."

file_regex=${1:-.}
kernel_regex=${2:-.}
arch=${MOESERVE_CUDA_ARCH:-90}
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
if [ ! -x "$nvcc" ]; then
    echo "cuda-resources: no nvcc (set NVCC or install the CUDA toolkit)" >&2
    exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
found=0
for f in src/backend/cuda/*.cu; do
    [[ $(basename "$f") =~ $file_regex ]] || continue
    found=1
    echo "compiling $f ..." >&2
    "$nvcc" -DMOESERVE_WITH_CUDA=1 -Isrc -O3 -DNDEBUG --use_fast_math -std=c++20 \
        --generate-code=arch=compute_${arch},code=sm_${arch} -Xptxas -v -x cu -c "$f" -o "$work/k.o" \
        >"$work/$(basename "$f").log" 2>&1 || {
        cat "$work/$(basename "$f").log" >&2
        exit 1
    }
done
if [ "$found" = 0 ]; then
    echo "cuda-resources: no src/backend/cuda/*.cu matches '$file_regex'" >&2
    exit 2
fi

python3 - "$work" "$kernel_regex" <<'EOF'
import glob, os, re, subprocess, sys

work, kernel_regex = sys.argv[1], re.compile(sys.argv[2])
# GgmlType's values (src/quant/ggml_type.h), as the demangled template arguments show them.
GGML_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K",
              11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 20: "IQ4_NL", 23: "IQ4_XS", 30: "BF16"}
rows = []
for log in sorted(glob.glob(os.path.join(work, "*.log"))):
    source = os.path.basename(log)[: -len(".log")]
    kernel = None
    entry = {}
    for line in open(log, errors="replace"):
        m = re.search(r"Compiling entry function '(\S+)'", line)
        if m:
            kernel, entry = m.group(1), {}
            continue
        if kernel is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            entry["stack"], entry["spill_st"], entry["spill_ld"] = map(int, m.groups())
        m = re.search(r"Used (\d+) registers", line)
        if m:
            entry["regs"] = int(m.group(1))
            smem = re.search(r"(\d+) bytes smem", line)
            entry["smem"] = int(smem.group(1)) if smem else 0
            rows.append((source, kernel, dict(entry)))
            kernel = None

names = subprocess.run(["c++filt"], input="\n".join(k for _, k, _ in rows), capture_output=True,
                       text=True).stdout.split("\n") if rows else []
print("| source | kernel | registers | blocks/SM at 128 / 256 threads | spill bytes (st/ld) | stack | static smem |")
print("|---|---|---:|---:|---:|---:|---:|")
for (source, _, e), name in zip(rows, names):
    name = re.sub(r"^void ", "", name)
    name = re.sub(r"moeserve::cuda::\(anonymous namespace\)::", "", name)
    name = re.sub(r"\([^()]*\)$", "", name)  # the parameter list
    name = re.sub(r"\(moeserve::GgmlType\)(\d+)", lambda m: GGML_TYPES.get(int(m.group(1)), m.group(1)), name)
    if not kernel_regex.search(name):
        continue
    regs = e.get("regs", 0)
    per_thread = (regs + 7) // 8 * 8  # registers are allocated in units of 8 a thread
    # 65,536 registers and 2,048 threads an SM.
    blocks = [min(65536 // max(1, per_thread * t), 2048 // t) for t in (128, 256)]
    print(f"| {source} | `{name}` | {regs} | {blocks[0]} / {blocks[1]} | {e.get('spill_st', 0)}/{e.get('spill_ld', 0)} "
          f"| {e.get('stack', 0)} | {e.get('smem', 0)} |")
EOF
