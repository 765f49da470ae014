#!/usr/bin/env bash
# The GPU check of the CUDA backend, sized for one short lease on a GPU
# machine that has the CUDA toolkit but none of our Debian build
# dependencies and no network. Two halves:
#
#   scripts/gpu-check.sh prepare [STEM...]   (here, no GPU needed)
#       Builds moeserve and the test binary for sm_90 (machine code only, no
#       PTX: 0.8 MB less to carry) with a portable CPU
#       target (x86-64-v3) into build-gpu/, and bundles them (stripped) with
#       the non-system shared libraries they load and the tiny fixture models
#       of the given stems (default: all three architectures) into
#       .device/gpu/ (git-ignored; carry it to the GPU machine; the binaries
#       and the fixtures travel as two .tar.xz). A carry holds 64 MiB: the
#       binaries, two stems and one GLM weight file fit (`prepare
#       qwen3moe-tiny-s1 nemotron-h-moe-tiny-s1 glm47flash-tiny-s1-q4_k_m`:
#       62 MB with the repository); goldens of models not carried skip.
#
#   scripts/gpu-check.sh run [SECONDS]   (on the GPU machine, repository root)
#       1. the GPU correctness suite (tests/cuda: kernels against the CPU
#          backend, every fixture golden with -ngl all, batching), failures
#          again with each switch off, and the whole suite again with the
#          opt-in x86-order products (MOESERVE_CUDA_X86_ORDER=1) and exact
#          prompts (MOESERVE_CUDA_EXACT_PROMPTS=1); decode attention alone
#          (cuda_attention_bench: every kernel form and cache type at depth);
#          the opt-in attention forms (64-row prompt blocks, FlashAttention-2)
#          on the goldens and chunked-versus-single; the suite again with
#          programmatic dependent launch (MOESERVE_CUDA_PDL=1);
#       2. the server end-to-end tests (curl) with -ngl 99;
#       3. compute-sanitizer memcheck and racecheck on a short logits run;
#       4. a short benchmark (moeserve bench, synthetic 4-layer slice of the
#          qwen3-coder-30b-a3b preset; decode with and without CUDA graphs),
#          then a table of everything.
#       Logs go to $OUT (the device tool's folder) or .device/gpu/out/.
#       GPU_CHECK_NO_PROFILE=1 skips the Nsight Compute profile (~90 s).
#       GPU_CHECK_STEPS=REGEX runs only the steps whose names match (e.g.
#       'gpu-suite.*|server-e2e-ngl99|memcheck.*|racecheck' for a correctness-only
#       call, 'synth-full|bench-full.*' for the whole model alone), so that a
#       lease can be split into calls; GPU_CHECK_SKIP=REGEX skips the steps that
#       match (e.g. 'synth-full|bench-full.*' for a first call without the
#       whole model); GPU_CHECK_SUITE_FILTER replaces the GPU suite's test
#       filter (default '*Cuda*').
#       SECONDS bounds the whole run (default 540); later steps are skipped
#       with a note when time runs out. On the H200 (2026-11-28) the suite,
#       server, sanitizers, tiny and slice benchmarks and one decode profile
#       took 181 s, the whole model's synth and benchmarks 50 s.
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
bundle="$here/.device/gpu"

prepare() {
    set -e
    local build="$here/build-gpu"
    cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOESERVE_CUDA=ON -DMOESERVE_ARCH=portable \
        -DCMAKE_CUDA_COMPILER="${CUDACXX:-/usr/local/cuda/bin/nvcc}" -DMOESERVE_CUDA_ARCHS=90-real
    cmake --build "$build" -j "$(nproc)" --target moeserve moeserve_tests cuda_attention_bench cpu_attention_bench
    rm -rf "$bundle"
    mkdir -p "$bundle/bin" "$bundle/lib" "$bundle/fixtures/models/golden"
    # (cuda_attention_bench shares moeserve's kernels: +0.3 MB in the compressed bundle.)
    cp "$build/moeserve" "$build/moeserve_tests" "$build/cuda_attention_bench" "$build/cpu_attention_bench" "$bundle/bin/"
    strip "$bundle"/bin/*  # symbols only: the CUDA fat binaries stay
    # Shared libraries outside glibc and the CUDA toolkit (the GPU machine has
    # both): fmt, PCRE2, cpp-httplib, GoogleTest, ...
    for exe in "$bundle"/bin/*; do
        ldd "$exe" | awk '/=> \//{print $3}' | while read -r lib; do
            case "$(basename "$lib")" in
                libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libgcc_s.so*|libstdc++.so*) ;;
                libcuda*|libcublas*|libcudart*|libnvrtc*) ;;
                *) cp -L "$lib" "$bundle/lib/" ;;
            esac
        done
    done
    # libstdc++ too: the GPU machine's may be older than the one we built with.
    cp -L "$(g++ -print-file-name=libstdc++.so.6)" "$bundle/lib/"
    local fx="$here/../shared/fixtures"
    local stems=("$@")
    [ ${#stems[@]} -eq 0 ] && stems=(qwen3moe-tiny-s1 nemotron-h-moe-tiny-s1 glm47flash-tiny-s1)
    # A STEM carries its four weight files; STEM-WEIGHTS (glm47flash-tiny-s1-q4_k_m)
    # carries one, with the stem's f16 golden tokens that the batching tests read.
    for stem in "${stems[@]}"; do
        if [ -f "$fx/models/$stem.gguf" ]; then
            cp "$fx/models/$stem.gguf" "$bundle/fixtures/models/"
            cp "$fx"/models/golden/"$stem".* "$bundle/fixtures/models/golden/"
            cp "$fx/models/golden/${stem%-*}-f16.kv-f16.json" "$bundle/fixtures/models/golden/"
        else
            cp "$fx"/models/"$stem"-*.gguf "$bundle/fixtures/models/"
            cp "$fx"/models/golden/"$stem"-* "$bundle/fixtures/models/golden/"
        fi
    done
    # The chat templates, rendered chats and prompts the server tests read (~170 KiB).
    cp -r "$fx/templates" "$fx/chat" "$fx/prompts" "$bundle/fixtures/"
    # The binaries compress about 3x; the fixtures (random weights, logits) by a tenth: 54 -> 49 MB,
    # which the 64 MiB carry needs with three stems (2026-11-28: 62 MB in all, 67 uncompressed).
    XZ_OPT="-9e -T2" tar -C "$bundle" -cJf "$bundle/binaries.tar.xz" bin lib  # -9e: 2 MB less than the default
    XZ_OPT="-6 -T2" tar -C "$bundle" -cJf "$bundle/fixtures.tar.xz" fixtures
    rm -rf "$bundle/bin" "$bundle/lib" "$bundle/fixtures"
    du -sh "$bundle"
    echo "bundle ready: carry .device/gpu to the GPU machine and run: scripts/gpu-check.sh run"
}

run() {
    local budget=${1:-540}
    local start=$SECONDS
    # Logs go to a work folder; $OUT gets the summary, the GPU suite's log and
    # one tarball of everything (the device tool returns at most 8 files).
    local out=/tmp/gpu-check-out
    gpu_check_out=$out gpu_check_dest="${OUT:-$bundle/out}"
    rm -rf "$out"
    mkdir -p "$out" "$gpu_check_dest"
    trap 'cp "$gpu_check_out/summary.md" "$gpu_check_out/gpu-suite.log" "$gpu_check_dest/" 2>/dev/null
          tar -C "$gpu_check_out" -czf "$gpu_check_dest/logs.tar.gz" . 2>/dev/null' EXIT
    if [ ! -x "$bundle/bin/moeserve" ]; then
        [ -f "$bundle/binaries.tar.xz" ] || { echo "no bundle at $bundle: run scripts/gpu-check.sh prepare first" >&2; exit 2; }
        tar -C "$bundle" -xJf "$bundle/binaries.tar.xz"
    fi
    if [ ! -d "$bundle/fixtures" ] && [ -f "$bundle/fixtures.tar.xz" ]; then
        tar -C "$bundle" -xJf "$bundle/fixtures.tar.xz"
    fi
    export LD_LIBRARY_PATH="$bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
    export MOESERVE_FIXTURES="$bundle/fixtures"
    export MOESERVE_BIN="$bundle/bin/moeserve"
    local tests="$bundle/bin/moeserve_tests"
    local summary="$out/summary.md"
    left() { echo $((budget - (SECONDS - start))); }
    # step NAME SECONDS_NEEDED CMD...: runs CMD within the time left (at most
    # STEP_CAP seconds when set, so that a hang leaves time for the later steps).
    step() {
        local name=$1 need=$2
        shift 2
        if [ -n "${GPU_CHECK_STEPS:-}" ] && ! [[ $name =~ ^($GPU_CHECK_STEPS)$ ]]; then
            return
        fi
        if [ -n "${GPU_CHECK_SKIP:-}" ] && [[ $name =~ ^($GPU_CHECK_SKIP)$ ]]; then
            return
        fi
        if [ "$(left)" -lt "$need" ]; then
            echo "| $name | skipped (time) | |" >>"$summary"
            return
        fi
        local t0=$SECONDS limit
        limit=$(left)
        [ -n "${STEP_CAP:-}" ] && [ "$STEP_CAP" -lt "$limit" ] && limit=$STEP_CAP
        timeout "$limit" "$@" >"$out/$name.log" 2>&1
        local rc=$?
        local result="PASS"
        [ $rc -ne 0 ] && result="FAIL (rc $rc)"
        local detail
        detail=$(grep -E "^\[  (PASSED|FAILED)  \]|tests? ran|ERROR SUMMARY" "$out/$name.log" | head -3 | tr '\n' ' ')
        echo "| $name | $result, $((SECONDS - t0)) s | $detail |" >>"$summary"
    }

    {
        echo "# scripts/gpu-check.sh run, $(date -u +%FT%TZ)"
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: none"
        echo "CPU: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
        echo
        echo "| step | result | detail |"
        echo "|---|---|---|"
    } >"$summary"

    STEP_CAP=200 step gpu-suite 60 "$tests" --gtest_filter="${GPU_CHECK_SUITE_FILTER:-*Cuda*}" --gtest_output=xml:"$out/gpu-suite.xml"
    # Decode attention alone (bench/cuda_attention_bench.cpp): each kernel form and cache type at
    # 4K, 32K and 128K cells, timed by CUDA events against the cache bytes it reads; then at 32K
    # the shortest chunk a block takes, swept. Whether the ~100 µs a layer that decode at 32K
    # costs on the slice is the attention kernels' own time (bench/README.md).
    STEP_CAP=90 step attention-bench 30 "$bundle/bin/cuda_attention_bench"
    STEP_CAP=60 step attention-bench-chunks 20 "$bundle/bin/cuda_attention_bench" --depths 32768 \
        --forms mma,lane,tile,tile2,fa2,fa2p --min-chunks 64,128,256,512,1024 --blocks-per-sm 4,8,16
    # And 4 and 8 sequences decoding at once at 32K each (a server's parallel slots).
    STEP_CAP=60 step attention-bench-tokens 20 "$bundle/bin/cuda_attention_bench" --depths 32768 --tokens 4,8 \
        --forms mma,lane,tile,tile2,fa2,fa2p
    # Failures again with the int8 products off (MOESERVE_CUDA_INT8=0): whether they are the cause.
    local failed
    failed=$(grep -E "^\[  FAILED  \] [A-Za-z]" "$out/gpu-suite.log" | sed -E 's/^\[  FAILED  \] ([^ ,]+).*/\1/' | sort -u |
        tr '\n' ':')
    [ -n "$failed" ] && STEP_CAP=120 step gpu-suite-int8-off 30 env MOESERVE_CUDA_INT8=0 "$tests" \
        --gtest_filter="$failed" --gtest_brief=1
    # And with the attention tiles loaded value by value (MOESERVE_CUDA_TILE_LOADS=0).
    [ -n "$failed" ] && STEP_CAP=120 step gpu-suite-tile-loads-off 30 env MOESERVE_CUDA_TILE_LOADS=0 "$tests" \
        --gtest_filter="$failed" --gtest_brief=1
    # And with one f16 product for P and MLA's Q (MOESERVE_CUDA_MMA_PAIRS=0).
    [ -n "$failed" ] && STEP_CAP=120 step gpu-suite-pairs-off 30 env MOESERVE_CUDA_MMA_PAIRS=0 "$tests" \
        --gtest_filter="$failed" --gtest_brief=1
    # And with the decode fusions off (MOESERVE_CUDA_FUSE=0: routing + plan, gate + up + activation, the
    # norms' int8 forms).
    [ -n "$failed" ] && STEP_CAP=120 step gpu-suite-fuse-off 30 env MOESERVE_CUDA_FUSE=0 "$tests" \
        --gtest_filter="$failed" --gtest_brief=1
    # The whole suite with the int8 matrix-vector kernel in the CPU's x86 float order (MOESERVE_CUDA_X86_ORDER=1,
    # opt-in until checked here): decode products bit for bit the CPU backend's.
    STEP_CAP=200 step gpu-suite-x86 60 env MOESERVE_CUDA_X86_ORDER=1 "$tests" \
        --gtest_filter="${GPU_CHECK_SUITE_FILTER:-*Cuda*}" --gtest_output=xml:"$out/gpu-suite-x86.xml"
    # The whole suite with prompts on the x86-order kernel too (MOESERVE_CUDA_EXACT_PROMPTS=1, opt-in):
    # whether prompt logits then match the CPU's as decode's do (goldens, chunked vs single, MoE).
    STEP_CAP=200 step gpu-suite-exact-prompts 60 env MOESERVE_CUDA_EXACT_PROMPTS=1 "$tests" \
        --gtest_filter="${GPU_CHECK_SUITE_FILTER:-*Cuda*}" --gtest_output=xml:"$out/gpu-suite-exact-prompts.xml"
    # Prompts' tensor-core attention with 64 query rows a block (MOESERVE_CUDA_MMA_ROWS=64, opt-in):
    # the attention tests, goldens and chunked-versus-single.
    STEP_CAP=120 step gpu-suite-mma-rows 30 env MOESERVE_CUDA_MMA_ROWS=64 "$tests" \
        --gtest_filter='CudaAttention*:CudaMla*:AllFixtures/CudaGolden*:EachArchitecture/CudaBatching*' --gtest_brief=1 \
        --gtest_output=xml:"$out/gpu-suite-mma-rows.xml"
    # The FlashAttention-2 form for every batch (MOESERVE_CUDA_ATTENTION=fa2, opt-in): goldens and
    # chunked-versus-single (its own test against the CPU runs in gpu-suite).
    STEP_CAP=120 step gpu-suite-fa2 30 env MOESERVE_CUDA_ATTENTION=fa2 "$tests" \
        --gtest_filter='AllFixtures/CudaGolden*:EachArchitecture/CudaBatching*' --gtest_brief=1 \
        --gtest_output=xml:"$out/gpu-suite-fa2.xml"
    # Programmatic dependent launch (MOESERVE_CUDA_PDL=1, opt-in: each kernel may start while the previous
    # one ends, waiting at its prologue): the whole suite, goldens in the table below.
    STEP_CAP=200 step gpu-suite-pdl 60 env MOESERVE_CUDA_PDL=1 "$tests" \
        --gtest_filter="${GPU_CHECK_SUITE_FILTER:-*Cuda*}" --gtest_brief=1 --gtest_output=xml:"$out/gpu-suite-pdl.xml"
    # The pipelined int8 prompt products (MOESERVE_CUDA_MMQ_PIPELINE=1, opt-in): the product tests and goldens.
    STEP_CAP=90 step gpu-suite-mmq-pipeline 30 env MOESERVE_CUDA_MMQ_PIPELINE=1 "$tests" \
        --gtest_filter='CudaMatmul*:CudaFfn*:AllFixtures/CudaGolden*:EachArchitecture/CudaBatching*' --gtest_brief=1
    local model="$MOESERVE_FIXTURES/models/qwen3moe-tiny-s1-q4_k_m.gguf"
    if [ ! -f "$model" ]; then  # a later part of the fixtures: the GPU suite only
        echo "| server, sanitizers, bench | skipped (qwen3moe fixtures not carried) | |" >>"$summary"
        cat "$summary"
        return
    fi
    # The server suites on the tiny fixtures (the node/SDK ones need npm packages; GLM's tool-call
    # family reads the F16 GLM file, which the usual prepare line does not carry).
    STEP_CAP=150 step server-e2e-ngl99 60 env MOESERVE_TEST_SERVER_ARGS="-ngl 99" "$tests" \
        --gtest_filter='ServerE2E*:ServerScheduler*:ServerToolCalls*:ServerGrammar*:ServerEmbeddings*:ServerInfill*:ServerCompletionRules*:ServerModelSampling*:ServerSlotLog*:ServerReversePrompt*:ServerTurnBoundaries*:ServerPrefixSharing*:-*Sdk*:*ServerToolCalls*/glm' \
        --gtest_brief=1
    # The embeddings' batched-versus-alone tests with prompts on the x86-order kernel.
    STEP_CAP=90 step server-embeddings-exact-prompts 20 env MOESERVE_CUDA_EXACT_PROMPTS=1 \
        MOESERVE_TEST_SERVER_ARGS="-ngl 99" "$tests" --gtest_filter='ServerEmbeddings*' --gtest_brief=1
    local toks="$out/tokens.json"
    echo '{"tokens": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]}' >"$toks"
    if command -v compute-sanitizer >/dev/null || [ -x /usr/local/cuda/bin/compute-sanitizer ]; then
        local cs
        cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
        step memcheck 60 "$cs" --tool memcheck --error-exitcode 1 "$MOESERVE_BIN" logits -m "$model" -ngl all \
            -ctk q4_0 -ctv q4_0 --tokens "$toks" -o "$out/memcheck"
        step racecheck 60 "$cs" --tool racecheck --error-exitcode 1 "$MOESERVE_BIN" logits -m "$model" -ngl all \
            --tokens "$toks" -o "$out/racecheck"
        # Decode steps: captured and replayed CUDA graphs.
        step memcheck-decode 60 "$cs" --tool memcheck --error-exitcode 1 "$MOESERVE_BIN" run -m "$model" -ngl all \
            -ctk q4_0 -ctv q4_0 -p "Hello" -n 24 --temp 0
    else
        echo "| sanitizer | skipped (no compute-sanitizer) | |" >>"$summary"
    fi
    # Issue 5's batching bar on the tiny fixture (4 busy slots >= 2.5x one slot): on the 2-core
    # CPU a tiny-model token is compute that grows with the tokens of a step; on the GPU a
    # step costs about the same for 1 token as for 4. The engine alone, then through the server.
    step bench-tiny 30 "$MOESERVE_BIN" bench -m "$model" -ngl all -p 0 -n 128 -npl 1,4,8 -r 3
    # The newest defaults not yet run on a GPU when this was written (the decode fusions, the
    # attention's f16 pairs): if the tiny bench cannot run with them, the rest of the run goes
    # without them, so that its benchmarks still measure something.
    if grep -q "^| bench-tiny | FAIL" "$summary"; then
        STEP_CAP=60 step bench-tiny-safe 30 env MOESERVE_CUDA_FUSE=0 MOESERVE_CUDA_MMA_PAIRS=0 "$MOESERVE_BIN" \
            bench -m "$model" -ngl all -p 0 -n 128 -npl 1,4 -r 2
        if grep -q "^| bench-tiny-safe | PASS" "$summary"; then
            export MOESERVE_CUDA_FUSE=0 MOESERVE_CUDA_MMA_PAIRS=0
            echo "| (note) | the rest of the run has MOESERVE_CUDA_FUSE=0 MOESERVE_CUDA_MMA_PAIRS=0 | |" >>"$summary"
        fi
    fi
    step tiny-load-np1 40 "$0" tiny-load 1
    step tiny-load-np4 40 "$0" tiny-load 4
    # The same without the RAM prompt cache: what saving each finished slot's sequence costs.
    step tiny-load-np4-no-cache-ram 40 "$0" tiny-load 4 --cache-ram 0
    # Benchmark: a 4-layer full-width slice of the Qwen3-Coder-30B-A3B preset.
    # Models go to their own folder: the log tarball must not take them.
    local models=/tmp/gpu-check-models
    mkdir -p "$models"
    local slice="$models/qwen3-coder-slice.gguf"
    step synth 120 "$MOESERVE_BIN" synth --preset qwen3-coder-30b-a3b --type Q4_K_M --layers 4 -o "$slice"
    if [ ! -f "$slice" ]; then
        echo "| slice benchmarks | skipped (no synthetic slice) | |" >>"$summary"
    else
        # The clocks while the benchmarks run (a card that stays at low SM clocks
        # for short bursts of work would explain slow kernels on its own).
        local clocks_pid=""
        if command -v nvidia-smi >/dev/null; then
            nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu \
                --format=csv,noheader -lms 250 >"$out/clocks.csv" 2>&1 &
            clocks_pid=$!
        fi
        STEP_CAP=180 step bench 120 "$MOESERVE_BIN" bench -m "$slice" -ngl all -p 512 -n 64 -d 0,32768 -ctk f16,q4_0 -ctv f16,q4_0 -r 2
        # Decode without the decode fusions (MOESERVE_CUDA_FUSE=0): what they save, the norms' int8 forms included.
        STEP_CAP=60 step bench-fuse-off 30 env MOESERVE_CUDA_FUSE=0 "$MOESERVE_BIN" bench -m "$slice" -ngl all \
            -p 0 -n 64 -d 0 -npl 1,4,8 -r 2
        # Decode with programmatic dependent launch (MOESERVE_CUDA_PDL=1; compare bench-graphs), then the
        # same with graphs off (launches from the host).
        STEP_CAP=60 step bench-pdl 30 env MOESERVE_CUDA_PDL=1 "$MOESERVE_BIN" bench -m "$slice" -ngl all \
            -p 512 -n 64 -d 0 -npl 1,4,8 -r 2
        STEP_CAP=60 step bench-pdl-eager 30 env MOESERVE_CUDA_PDL=1 MOESERVE_CUDA_GRAPHS=0 "$MOESERVE_BIN" bench \
            -m "$slice" -ngl all -p 0 -n 64 -d 0 -r 2
        # Decode with the x86-order int8 kernel (MOESERVE_CUDA_X86_ORDER=1; compare bench-graphs).
        STEP_CAP=60 step bench-x86 30 env MOESERVE_CUDA_X86_ORDER=1 "$MOESERVE_BIN" bench -m "$slice" -ngl all \
            -p 0 -n 64 -d 0 -npl 1,4,8 -r 2
        # Prompts on the x86-order kernel (MOESERVE_CUDA_EXACT_PROMPTS=1; compare bench's pp512).
        STEP_CAP=60 step bench-exact-prompts 20 env MOESERVE_CUDA_EXACT_PROMPTS=1 "$MOESERVE_BIN" bench -m "$slice" \
            -ngl all -p 512 -n 0 -d 0 -r 3
        # Prompts at depth with 64 query rows an attention block (MOESERVE_CUDA_MMA_ROWS=64; compare bench's
        # pp512 @ d32768).
        STEP_CAP=90 step bench-mma-rows 30 env MOESERVE_CUDA_MMA_ROWS=64 "$MOESERVE_BIN" bench -m "$slice" \
            -ngl all -p 512 -n 0 -d 0,32768 -ctk f16,q4_0 -ctv f16,q4_0 -r 2
        # Prompts and decode with the FlashAttention-2 form (MOESERVE_CUDA_ATTENTION=fa2; compare bench).
        STEP_CAP=120 step bench-fa2 45 env MOESERVE_CUDA_ATTENTION=fa2 "$MOESERVE_BIN" bench -m "$slice" \
            -ngl all -p 512 -n 64 -d 0,32768 -ctk f16,q4_0 -ctv f16,q4_0 -r 2
        STEP_CAP=120 step bench-fa2p 45 env MOESERVE_CUDA_ATTENTION=fa2p "$MOESERVE_BIN" bench -m "$slice" \
            -ngl all -p 512 -n 64 -d 0,32768 -ctk f16,q4_0 -ctv f16,q4_0 -r 2
        # Prompts with the pipelined int8 products (MOESERVE_CUDA_MMQ_PIPELINE=1).
        STEP_CAP=60 step bench-mmq-pipeline 20 env MOESERVE_CUDA_MMQ_PIPELINE=1 "$MOESERVE_BIN" bench -m "$slice" \
            -ngl all -p 512 -n 0 -d 0 -r 3
        # The tensor-core attention with one f16 product for P (and MLA's Q) instead of hi + lo pairs
        # (MOESERVE_CUDA_MMA_PAIRS=0): what the pairs cost, at depth.
        STEP_CAP=90 step bench-pairs-off 45 env MOESERVE_CUDA_MMA_PAIRS=0 "$MOESERVE_BIN" bench -m "$slice" \
            -ngl all -p 512 -n 64 -d 32768 -ctk f16,q4_0 -ctv f16,q4_0 -r 2
        # The attention tiles loaded value by value (MOESERVE_CUDA_TILE_LOADS=0), at depth.
        STEP_CAP=90 step bench-tile-loads-off 45 env MOESERVE_CUDA_TILE_LOADS=0 "$MOESERVE_BIN" bench -m "$slice" \
            -ngl all -p 512 -n 64 -d 32768 -ctk f16,q4_0 -ctv f16,q4_0 -r 2
        # The decode attention kernel (MOESERVE_CUDA_ATTENTION=vec, opt-in while measured) on the decode rows.
        STEP_CAP=120 step bench-vec 60 env MOESERVE_CUDA_ATTENTION=vec "$MOESERVE_BIN" bench -m "$slice" -ngl all \
            -p 0 -n 64 -d 0,32768 -ctk f16,q4_0 -ctv f16,q4_0 -r 2
        # The lane-per-cell decode attention kernel (MOESERVE_CUDA_ATTENTION=lane, opt-in while measured).
        STEP_CAP=120 step bench-lane 60 env MOESERVE_CUDA_ATTENTION=lane "$MOESERVE_BIN" bench -m "$slice" -ngl all \
            -p 0 -n 64 -d 0,32768 -ctk f16,q4_0 -ctv f16,q4_0 -r 2
        # The shared-memory tile decode attention kernel (MOESERVE_CUDA_ATTENTION=tile, opt-in while measured).
        STEP_CAP=120 step bench-tile 60 env MOESERVE_CUDA_ATTENTION=tile "$MOESERVE_BIN" bench -m "$slice" -ngl all \
            -p 0 -n 64 -d 0,32768 -ctk f16,q4_0 -ctv f16,q4_0 -r 2
        # Decode at 1, 4 and 8 sequences with CUDA graphs (the first GPU run measured op by op too:
        # graphs saved 13%; MOESERVE_CUDA_GRAPHS=0 runs it without).
        step bench-graphs 60 "$MOESERVE_BIN" bench -m "$slice" -ngl all -p 0 -n 64 -d 0 -npl 1,4,8 -r 2
        # The MoE decode tiles as they were before the choice by items per expert (cuda_moe_tiles.h):
        # 8 tokens a tile for batches of 8 and more (compare bench-graphs' x4 and x8 rows).
        STEP_CAP=60 step bench-moe-tile8 30 env MOESERVE_CUDA_MOE_TILE_TOKENS=8 "$MOESERVE_BIN" bench -m "$slice" \
            -ngl all -p 0 -n 64 -d 0 -npl 1,4,8 -r 2
        # The layer split: the slice's last 2 of 4 layers and the head on the GPU, the rest on the CPU.
        step bench-split 60 "$MOESERVE_BIN" bench -m "$slice" -ngl 3 -p 512 -n 32 -d 0 -r 1
        # Routed experts in host memory (--cpu-moe: every layer's expert FFN on the CPU, the rest on the
        # GPU; --n-cpu-moe 2: the first two layers' only).
        step bench-cpu-moe 60 "$MOESERVE_BIN" bench -m "$slice" -ngl all -cmoe -p 512 -n 32 -d 0 -r 1
        step bench-n-cpu-moe 60 "$MOESERVE_BIN" bench -m "$slice" -ngl all -ncmoe 2 -p 512 -n 32 -d 0 -r 1
        # The CPU side, on this machine's cores: a decoded token's GQA attention at 32K with its cells split
        # across all threads against one work item per KV head (bench/README.md, "A deep token's cells split
        # across the threads"; measured so far on 2 vCPUs only). The portable build: the general path's loops.
        STEP_CAP=60 step cpu-attention-split 30 "$bundle/bin/cpu_attention_bench" --threads "$(nproc)" \
            --shapes gqa --depths 32768 --cache f16,q8_0 --split on,off,on,off --reps 10
        [ -n "$clocks_pid" ] && kill "$clocks_pid" 2>/dev/null
    fi
    # The whole 17 GB model (issue 10's benchmark) with what time is left:
    # prompt and decode at depth 0 and 8K, then 1/4/8 parallel sequences.
    local full="$models/qwen3-coder-30b-a3b.gguf"
    step synth-full 120 "$MOESERVE_BIN" synth --preset qwen3-coder-30b-a3b --type Q4_K_M -o "$full"
    if [ -f "$full" ]; then
        STEP_CAP=150 step bench-full 100 "$MOESERVE_BIN" bench -m "$full" -ngl all -p 512 -n 32 -d 0,32768 \
            -ctk f16 -ctv f16 -r 1
        STEP_CAP=150 step bench-full-q4 100 "$MOESERVE_BIN" bench -m "$full" -ngl all -p 512 -n 32 -d 0,32768 \
            -ctk q4_0 -ctv q4_0 -r 1
        STEP_CAP=120 step bench-full-npl 40 "$MOESERVE_BIN" bench -m "$full" -ngl all -p 0 -n 32 -d 0 -npl 1,4,8 -r 1
        # The seed guide's way to fit a long context on a smaller card: the routed experts of the first 24 of
        # 48 layers in host memory (9 GB less on the GPU), their FFNs on the host's cores.
        STEP_CAP=120 step bench-full-n-cpu-moe 60 "$MOESERVE_BIN" bench -m "$full" -ngl all -ncmoe 24 -p 512 -n 32 \
            -d 0 -r 1
        # 8 sequences with the MoE decode tiles of before (8 tokens a tile): the 490 t/s of session 16.
        STEP_CAP=60 step bench-full-moe-tile8 30 env MOESERVE_CUDA_MOE_TILE_TOKENS=8 "$MOESERVE_BIN" bench -m "$full" \
            -ngl all -p 0 -n 32 -d 0 -npl 8 -r 1
        # 8 sequences fell from 594 to 490 t/s when the decode fusions came: the same without them.
        STEP_CAP=60 step bench-full-fuse-off 30 env MOESERVE_CUDA_FUSE=0 "$MOESERVE_BIN" bench -m "$full" -ngl all \
            -p 0 -n 32 -d 0 -npl 1,8 -r 1
        STEP_CAP=60 step bench-full-exact-prompts 30 env MOESERVE_CUDA_EXACT_PROMPTS=1 "$MOESERVE_BIN" bench \
            -m "$full" -ngl all -p 512 -n 0 -d 0 -r 1
        STEP_CAP=60 step bench-full-mma-rows 30 env MOESERVE_CUDA_MMA_ROWS=64 "$MOESERVE_BIN" bench -m "$full" \
            -ngl all -p 512 -n 0 -d 32768 -ctk q4_0 -ctv q4_0 -r 1
        STEP_CAP=60 step bench-full-pdl 30 env MOESERVE_CUDA_PDL=1 "$MOESERVE_BIN" bench -m "$full" \
            -ngl all -p 512 -n 32 -d 0 -npl 1,8 -r 1
        STEP_CAP=60 step bench-full-tile 30 env MOESERVE_CUDA_ATTENTION=tile "$MOESERVE_BIN" bench -m "$full" \
            -ngl all -p 0 -n 32 -d 32768 -ctk q4_0 -ctv q4_0 -r 1
        STEP_CAP=60 step bench-full-fa2 30 env MOESERVE_CUDA_ATTENTION=fa2 "$MOESERVE_BIN" bench -m "$full" \
            -ngl all -p 512 -n 32 -d 32768 -ctk q4_0 -ctv q4_0 -r 1
        STEP_CAP=60 step bench-full-fa2p 30 env MOESERVE_CUDA_ATTENTION=fa2p "$MOESERVE_BIN" bench -m "$full" \
            -ngl all -p 512 -n 32 -d 32768 -ctk q4_0 -ctv q4_0 -r 1
        STEP_CAP=60 step bench-full-x86 30 env MOESERVE_CUDA_X86_ORDER=1 "$MOESERVE_BIN" bench -m "$full" \
            -ngl all -p 0 -n 32 -d 0 -npl 1,8 -r 1
        STEP_CAP=200 step bench-full-128k 100 "$MOESERVE_BIN" bench -m "$full" -ngl all -p 0 -n 32 -d 131072 \
            -ctk q4_0 -ctv q4_0 -r 1
        rm -f "$full"
    fi
    # Nsight Compute profiles of the slice last (diagnostics; the benchmarks above come first).
    if [ -f "$slice" ]; then
        # Where a decoded token's time goes: every kernel of a few op-by-op decode
        # steps timed by Nsight Compute, summed by kernel name.
        local ncu
        ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
        if [ -x "$ncu" ] && [ -z "${GPU_CHECK_NO_PROFILE:-}" ]; then
            # The attention kernels of decode steps at 32K depth (q4_0 cache): every attention, combine
            # and KV-store launch timed, prompt and decode ones told apart by their grids. First: what
            # decode at depth costs was never profiled, the other two were.
            STEP_CAP=120 step profile-depth 60 "$0" profile-depth "$ncu" "$slice" "$out/profile-depth.csv"
            kernel_table "$out/profile-depth.csv" grid >"$out/profile-depth-summary.txt" 2>&1
            STEP_CAP=150 step profile 60 "$0" profile "$ncu" "$slice" "$out/profile.csv"
            kernel_table "$out/profile.csv" >"$out/profile-summary.txt" 2>&1
            # Where a 512-token prompt's time goes (every kernel of one prompt pass of the slice).
            STEP_CAP=120 step profile-prefill 60 "$0" profile "$ncu" "$slice" "$out/profile-prefill.csv" prefill
            kernel_table "$out/profile-prefill.csv" >"$out/profile-prefill-summary.txt" 2>&1
        fi
        rm -f "$slice"
    fi
    {
        echo
        echo "## tiny fixture: engine decode with N sequences, then the server at -np 1 and -np 4"
        cat "$out/bench-tiny.log" 2>/dev/null | grep -E "^\| [^-m]" || echo "(no bench output)"
        grep -H -E "aggregate tokens/s|per-request tokens/s|server decode steps|forward_seconds|decode_steps|prompt_cache_saves|n_decode_total|cuda graphs" \
            "$out"/tiny-load-np*.log 2>/dev/null || echo "(no load output)"
        echo
        section table "decode attention alone (cuda_attention_bench: one token, each form and cache type)" \
            "$out/attention-bench.log"
        section table "decode attention alone at 32K, the shortest chunk a block takes and the blocks an SM swept" \
            "$out/attention-bench-chunks.log"
        section table "decode attention alone, 4 and 8 sequences at 32K each" "$out/attention-bench-tokens.log"
        section table "bench" "$out/bench.log"
        section rows "decode attention kernel (MOESERVE_CUDA_ATTENTION=vec), the decode rows" "$out/bench-vec.log"
        section rows "lane-per-cell decode attention kernel (MOESERVE_CUDA_ATTENTION=lane), the decode rows" \
            "$out/bench-lane.log"
        section rows "shared-memory tile decode attention kernel (MOESERVE_CUDA_ATTENTION=tile), the decode rows" \
            "$out/bench-tile.log"
        section rows "decode at 1, 4 and 8 sequences (CUDA graphs)" "$out/bench-graphs.log"
        section rows "the same with the MoE decode tiles of before (MOESERVE_CUDA_MOE_TILE_TOKENS=8)" \
            "$out/bench-moe-tile8.log"
        section table "bench, layer split (-ngl 3: the last 2 of 4 layers and the head)" "$out/bench-split.log"
        section table "bench, routed experts on the CPU (-ngl all --cpu-moe)" "$out/bench-cpu-moe.log"
        section table "the CPU's decode attention at 32K on every core, split and unsplit" \
            "$out/cpu-attention-split.log"
        section table "bench, the first two layers' routed experts on the CPU (-ngl all --n-cpu-moe 2)" \
            "$out/bench-n-cpu-moe.log"
        section rows "the whole model (48 layers, ~17 GB)" "$out"/bench-full.log "$out"/bench-full-q4.log \
            "$out"/bench-full-npl.log "$out"/bench-full-128k.log
        section rows "the slice at 32K with the attention tiles loaded value by value (MOESERVE_CUDA_TILE_LOADS=0)" \
            "$out/bench-tile-loads-off.log"
        section rows "prompts of the slice with 64 query rows an attention block (MOESERVE_CUDA_MMA_ROWS=64)" \
            "$out/bench-mma-rows.log"
        section rows "the slice with the FlashAttention-2 attention form (MOESERVE_CUDA_ATTENTION=fa2), then pipelined (=fa2p)" \
            "$out/bench-fa2.log" "$out/bench-fa2p.log"
        section rows "a 512-token prompt of the slice with the pipelined int8 products (MOESERVE_CUDA_MMQ_PIPELINE=1)" \
            "$out/bench-mmq-pipeline.log"
        section rows "the slice at 32K with one f16 product for P instead of pairs (MOESERVE_CUDA_MMA_PAIRS=0)" \
            "$out/bench-pairs-off.log"
        section rows "decode of the slice without the decode fusions (MOESERVE_CUDA_FUSE=0; compare bench-graphs)" \
            "$out/bench-fuse-off.log"
        section rows "the slice with programmatic dependent launch (MOESERVE_CUDA_PDL=1; compare bench, bench-graphs), then op by op" \
            "$out/bench-pdl.log" "$out/bench-pdl-eager.log"
        section rows "decode of the slice, x86-order int8 kernel (MOESERVE_CUDA_X86_ORDER=1; compare bench-graphs)" \
            "$out/bench-x86.log"
        section rows "prompts on the x86-order kernel (MOESERVE_CUDA_EXACT_PROMPTS=1): the slice, then the whole model" \
            "$out/bench-exact-prompts.log" "$out/bench-full-exact-prompts.log"
        section rows "the whole model at 32K: a prompt with 64-row attention blocks (MOESERVE_CUDA_MMA_ROWS=64), decode with the tile kernel (=tile), both with the FlashAttention-2 form (=fa2)" \
            "$out/bench-full-mma-rows.log" "$out/bench-full-tile.log" "$out/bench-full-fa2.log" "$out/bench-full-fa2p.log"
        section rows "the whole model with programmatic dependent launch (MOESERVE_CUDA_PDL=1)" \
            "$out/bench-full-pdl.log"
        section rows "the whole model at 1 and 8 sequences without the decode fusions (MOESERVE_CUDA_FUSE=0)" \
            "$out/bench-full-fuse-off.log"
        section rows "the whole model at 8 sequences with the MoE decode tiles of before (MOESERVE_CUDA_MOE_TILE_TOKENS=8)" \
            "$out/bench-full-moe-tile8.log"
        section rows "the whole model with the x86-order int8 kernel (MOESERVE_CUDA_X86_ORDER=1)" \
            "$out/bench-full-x86.log"
        section rows "the whole model with the first 24 layers' routed experts on the CPU (--n-cpu-moe 24)" \
            "$out/bench-full-n-cpu-moe.log"
        echo "## SM / memory clocks (MHz) during the slice's benchmarks: min, median, max of the samples"
        clock_summary "$out/clocks.csv" 2>/dev/null || echo "(no samples)"
        echo
        local mode title
        for mode in ":" "-x86:with the x86-order int8 kernel (MOESERVE_CUDA_X86_ORDER=1)" \
            "-exact-prompts:with prompts on the x86-order kernel (MOESERVE_CUDA_EXACT_PROMPTS=1)" \
            "-mma-rows:with 64 query rows a prompt's attention block (MOESERVE_CUDA_MMA_ROWS=64)" \
            "-fa2:with the FlashAttention-2 form (MOESERVE_CUDA_ATTENTION=fa2)" \
            "-pdl:with programmatic dependent launch (MOESERVE_CUDA_PDL=1)"; do
            title=${mode#*:}
            echo "## goldens${title:+ $title}: mean KL against llama.cpp and against the CPU backend"
            golden_table "$out/gpu-suite${mode%%:*}.xml" 2>/dev/null || echo "(no results)"
            echo
        done
        echo "## kernels of op-by-op decode steps (Nsight Compute; total, share, launches, kernel)"
        head -30 "$out/profile-summary.txt" 2>/dev/null || echo "(no profile)"
        echo
        echo "## kernels of a 512-token prompt (Nsight Compute)"
        head -30 "$out/profile-prefill-summary.txt" 2>/dev/null || echo "(no profile)"
        echo
        echo "## attention kernels at 32K depth, q4_0 cache (by kernel and grid; grid x = 1: decode)"
        head -24 "$out/profile-depth-summary.txt" 2>/dev/null || echo "(no profile)"
    } >>"$summary"
    cat "$summary"
}

# profile NCU MODEL CSV [prefill] (called by run): Nsight Compute over a few op-by-op
# decode steps (or one 512-token prompt with `prefill`): each kernel's time, DRAM and SM throughput (% of peak),
# achieved occupancy, grid and registers; only the time if those are refused.
profile() {
    local ncu=$1 model=$2 csv=$3
    local cmd=("$MOESERVE_BIN" bench -m "$model" -ngl all -p 0 -n 2 -d 0 -r 1)
    [ "${4:-}" = prefill ] && cmd=("$MOESERVE_BIN" bench -m "$model" -ngl all -p 512 -n 0 -d 0 -r 1)
    local rich=gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed
    rich+=,sm__throughput.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active
    rich+=,launch__grid_size,launch__registers_per_thread
    MOESERVE_CUDA_GRAPHS=0 "$ncu" --metrics "$rich" --csv --log-file "$csv" -c 1500 "${cmd[@]}" && return 0
    MOESERVE_CUDA_GRAPHS=0 "$ncu" --metrics gpu__time_duration.sum --csv --log-file "$csv" -c 1500 "${cmd[@]}"
}

# section rows|table TITLE LOG...: a summary section: the title, then the benchmark table lines of
# the logs (rows: without the table's header lines), or a note that they have none.
section() {
    local mode=$1 title=$2
    shift 2
    local pattern='^\| [^-m]'
    [ "$mode" = table ] && pattern='^\|'
    echo "## $title"
    cat "$@" 2>/dev/null | grep -E "$pattern" || echo "(no bench output)"
    echo
}

# profile-depth NCU MODEL CSV (called by run): the attention kernels' times over a prompt filled to
# 32K cells and two decode steps (op by op, the clocks and caches as in a run).
profile_depth() {
    local ncu=$1 model=$2 csv=$3
    MOESERVE_CUDA_GRAPHS=0 "$ncu" --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed \
        --kernel-name regex:"attention|combine|store_rows" --cache-control none --clock-control none --csv \
        --log-file "$csv" -c 3000 "$MOESERVE_BIN" bench -m "$model" -ngl all -p 0 -n 2 -d 32768 -ctk q4_0 -ctv q4_0 -r 1
}

# kernel_table CSV [grid]: Nsight Compute's per-kernel durations summed by kernel name (and grid), largest first, with
# the time-weighted DRAM / SM throughput and occupancy when measured, and the last launch's grid.
kernel_table() {
    python3 - "$1" "${2:-}" <<'EOF'
import collections, csv, sys
rows = list(csv.reader(l for l in open(sys.argv[1]) if not l.startswith("==")))
head = rows[0]
id_i, name_i = head.index("ID"), head.index("Kernel Name")
metric_i, unit_i, value_i = head.index("Metric Name"), head.index("Metric Unit"), head.index("Metric Value")
scale = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3}
launches = collections.defaultdict(dict)  # launch id -> metric -> value (time in us)
names = {}
for r in rows[1:]:
    if len(r) <= value_i:
        continue
    name = r[name_i].replace("void ", "")
    names[r[id_i]] = (name.rsplit("(", 1)[0] if name.endswith(")") else name)[:90]  # without the arguments
    if sys.argv[2] == "grid" and "Grid Size" in head:  # decode and prompt launches apart
        names[r[id_i]] += " " + r[head.index("Grid Size")].replace(" ", "")
    try:
        v = float(r[value_i].replace(",", ""))
    except ValueError:
        continue
    if r[metric_i] == "gpu__time_duration.sum":
        v *= scale.get(r[unit_i], 1.0)
    launches[r[id_i]][r[metric_i]] = v
total, count = collections.Counter(), collections.Counter()
weighted = collections.defaultdict(collections.Counter)
last = {}
for lid, m in launches.items():
    name, us = names[lid], m.get("gpu__time_duration.sum", 0.0)
    total[name] += us
    count[name] += 1
    for key in ("dram__throughput.avg.pct_of_peak_sustained_elapsed", "sm__throughput.avg.pct_of_peak_sustained_elapsed",
                "sm__warps_active.avg.pct_of_peak_sustained_active"):
        if key in m:
            weighted[name][key] += m[key] * us
    last[name] = (m.get("launch__grid_size"), m.get("launch__registers_per_thread"))
all_us = sum(total.values()) or 1.0
print(f"{all_us:10.1f} us in {sum(count.values())} kernels")
print(f"{'total us':>10} {'share':>6} {'count':>6} {'us each':>8} {'dram%':>6} {'sm%':>5} {'occ%':>5} {'grid':>7} {'regs':>4}  kernel")
for name, us in total.most_common(30):
    w = weighted[name]
    pct = lambda k: f"{w[k] / us:6.1f}" if us and k in w else "     -"
    grid, regs = last[name]
    print(f"{us:10.1f} {100 * us / all_us:5.1f}% {count[name]:6d} {us / count[name]:8.2f} "
          f"{pct('dram__throughput.avg.pct_of_peak_sustained_elapsed')} "
          f"{pct('sm__throughput.avg.pct_of_peak_sustained_elapsed')[1:]} "
          f"{pct('sm__warps_active.avg.pct_of_peak_sustained_active')[1:]} "
          f"{int(grid) if grid else '-':>7} {int(regs) if regs else '-':>4}  {name}")
EOF
}

# clock_summary CSV: min / median / max of the SM and memory clocks nvidia-smi sampled.
clock_summary() {
    python3 - "$1" <<'EOF'
import statistics, sys
sm, mem = [], []
for line in open(sys.argv[1]):
    f = [x.strip() for x in line.split(",")]
    if len(f) >= 3 and f[1].endswith("MHz") and f[2].endswith("MHz"):
        sm.append(int(f[1].split()[0]))
        mem.append(int(f[2].split()[0]))
for name, v in (("SM", sm), ("memory", mem)):
    if v:
        print(f"{name}: {min(v)} / {int(statistics.median(v))} / {max(v)} MHz over {len(v)} samples")
EOF
}

# golden_table XML: each CudaGolden case's recorded mean KL (llama.cpp, CPU backend) from the suite's XML.
golden_table() {
    python3 - "$1" <<'EOF'
import sys, xml.etree.ElementTree as ET
for case in ET.parse(sys.argv[1]).iter("testcase"):
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    if "mean_kl" in props:
        failed = "FAILED" if case.find("failure") is not None else "ok"
        print(f"{case.get('name').split('/')[-1]:32s} {props['mean_kl']:>10s} {props.get('gpu_vs_cpu_mean_kl', '-'):>10s} {failed}")
EOF
}

# tiny-load NP [SERVE-ARGS...] (called by run): serves the tiny qwen3moe fixture on the GPU with
# -np NP and drives it with 8 streaming clients (moeserve load), 64 requests of 64 tokens.
tiny_load() {
    local np=$1 port=$((18300 + $1))
    shift
    local model="$MOESERVE_FIXTURES/models/qwen3moe-tiny-s1-q4_k_m.gguf"
    "$MOESERVE_BIN" serve -m "$model" -ngl 99 -c 4096 -np "$np" --port "$port" --metrics "$@" &
    local pid=$! ready=0
    for _ in $(seq 150); do
        # bash's /dev/tcp: the GPU machine need not have curl.
        if exec 3<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
            printf 'GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3
            if head -1 <&3 | grep -q " 200"; then ready=1; fi
            exec 3<&-
        fi
        [ $ready = 1 ] && break
        sleep 0.2
    done
    local rc=1
    [ $ready = 1 ] && "$MOESERVE_BIN" load --url "http://127.0.0.1:$port" -c 8 -n 64 --max-tokens 64 --prompt-tokens 16
    rc=$?
    # The forward passes' share of the run (where the host time per step goes), and the
    # decode-only steps' tokens and time (their tokens/s: issue 5's decode throughput).
    if [ $ready = 1 ] && exec 3<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
        printf 'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3
        grep -E "^(moeserve:forward_seconds_total|moeserve:decode_steps_(tokens|seconds|forward_seconds)_total|moeserve:prompt_cache_saves_total|llamacpp:n_decode_total|llamacpp:n_busy_slots_per_decode)" <&3
        exec 3<&-
    fi
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return $rc
}

case "${1:-}" in
    prepare) shift; prepare "$@" ;;
    run) shift; run "$@" ;;
    tiny-load) shift; tiny_load "$@" ;;
    profile) shift; profile "$@" ;;
    profile-depth) shift; profile_depth "$@" ;;
    *) sed -n '2,30p' "$0"; exit 2 ;;
esac
