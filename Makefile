# The two commands a new machine needs: `make run` and `make test`.
# Both install missing Debian packages first, then build with CMake.

BUILD    ?= build
JOBS     ?= $(shell nproc)
CMAKE_FLAGS ?=
DEMO     := $(BUILD)/demo/demo-model.gguf

.PHONY: all deps build run test test-asan test-tsan bench fuzz format clean cuda

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja: | deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

# Writes the built-in demo model (tiny, random weights) and serves it with
# the OpenAI-compatible API on http://$(HOST):$(PORT) until Ctrl-C.
HOST ?= 127.0.0.1
PORT ?= 8080
run: build
	@mkdir -p $(dir $(DEMO))
	@[ -f $(DEMO) ] || $(BUILD)/moeserve demo -o $(DEMO)
	$(BUILD)/moeserve serve -m $(DEMO) --host $(HOST) --port $(PORT)

test: build
	@scripts/install-npm-deps.sh
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

bench: build
	@for b in $(BUILD)/*_bench; do echo "== $$b"; $$b; done

# The CUDA build (MOESERVE_CUDA=ON) in its own folder: needs nvcc and cuBLAS,
# not a GPU. CUDA_ARCHS defaults to sm_89 + sm_90; the GPU tests skip when no
# device is present. scripts/gpu-check.sh is the one-lease check on a GPU.
CUDA_BUILD ?= build-cuda
CUDA_ARCHS ?= 89;90
cuda: deps
	cmake -S . -B $(CUDA_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOESERVE_CUDA=ON \
	      -DCMAKE_CUDA_COMPILER=$${CUDACXX:-/usr/local/cuda/bin/nvcc} "-DMOESERVE_CUDA_ARCHS=$(CUDA_ARCHS)" $(CMAKE_FLAGS)
	cmake --build $(CUDA_BUILD) -j $(JOBS)

# Sanitizer runs. test-asan: ASan + UBSan over the whole suite, with any
# single allocation above 4 GiB an error; it shares the clang build of `make
# fuzz` (FUZZ_BUILD: ASan + UBSan + fuzzer coverage, -O1 -g1), so the two
# cost one build. test-tsan: TSan (GCC) over the tests that run threads:
# scheduler, thread pool, server, engine. Neither is part of `make test`
# (times in docs/reliability.md). Both stop at the first report.
FUZZ_BUILD ?= build-fuzz
TSAN_BUILD ?= build-tsan
TSAN_TESTS ?= Server|Engine|Qwen3MoeGreedy|Deepseek2Mla|CpuMla|NemotronDense|ResumableStreams|CompletionControl|StreamSession
SANITIZER_ENV := ASAN_OPTIONS=detect_leaks=1:max_allocation_size_mb=4096:allocator_may_return_null=0 \
                 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
                 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$(CURDIR)/tests/tsan.supp
FUZZ_CONFIGURE := cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++ \
                  -DMOESERVE_FUZZ=ON $(CMAKE_FLAGS)

test-asan:
	@scripts/install-deps.sh --fuzz
	@scripts/install-npm-deps.sh
	$(FUZZ_CONFIGURE)
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target moeserve_tests
	cd $(FUZZ_BUILD) && $(SANITIZER_ENV) ctest --output-on-failure -j $(JOBS)

test-tsan: deps
	@scripts/install-npm-deps.sh
	cmake -S . -B $(TSAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOESERVE_SANITIZE=thread $(CMAKE_FLAGS)
	cmake --build $(TSAN_BUILD) -j $(JOBS) --target moeserve_tests
	cd $(TSAN_BUILD) && $(SANITIZER_ENV) ctest --output-on-failure -j $(JOBS) -R '$(TSAN_TESTS)'

# Bounded libFuzzer runs (clang from Debian) of every tests/fuzz/*_fuzz.cpp
# target, FUZZ_SECONDS each, or of FUZZ_TARGETS. Seeds are read from
# tests/fuzz/corpus/<target>/; what the fuzzer learns goes to
# $(FUZZ_BUILD)/corpus/<target>/ and crashes to $(FUZZ_BUILD)/crashes/. Fails
# when any target crashed (each crash becomes a regression test and a seed).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= $(basename $(notdir $(wildcard tests/fuzz/*_fuzz.cpp)))
fuzz:
	@scripts/install-deps.sh --fuzz
	$(FUZZ_CONFIGURE)
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target $(FUZZ_TARGETS)
	@failed=""; for name in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_BUILD)/corpus/$$name $(FUZZ_BUILD)/crashes; \
	    echo "== $$name ($(FUZZ_SECONDS) s)"; \
	    $(FUZZ_BUILD)/$$name -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
	        -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/crashes/$$name- \
	        $(FUZZ_BUILD)/corpus/$$name tests/fuzz/corpus/$$name || failed="$$failed $$name"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: crashes in:$$failed (inputs in $(FUZZ_BUILD)/crashes/)"; exit 1; fi

format:
	clang-format -i $$(git ls-files '*.cpp' '*.h')

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD) $(TSAN_BUILD)
