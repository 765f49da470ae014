# The two commands a new machine needs: `make run` and `make test`.
# Both install missing Debian packages first, then build with CMake.

BUILD    ?= build
JOBS     ?= $(shell nproc)
CMAKE_FLAGS ?=
DEMO     := $(BUILD)/demo/demo-model.gguf

.PHONY: all deps build run test bench fuzz format clean

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

# Bounded libFuzzer runs of every tests/fuzz/*_fuzz.cpp target (clang from
# Debian), FUZZ_SECONDS each; seeds from tests/fuzz/seeds/<target>/.
FUZZ_SECONDS ?= 60
fuzz:
	@scripts/install-deps.sh --fuzz
	cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ -DMOESERVE_FUZZ=ON
	cmake --build build-fuzz -j $(JOBS)
	@set -e; for src in tests/fuzz/*_fuzz.cpp; do \
	    name=$$(basename $$src .cpp); corpus=build-fuzz/corpus/$$name; mkdir -p $$corpus; \
	    if [ -d tests/fuzz/seeds/$$name ]; then cp -n tests/fuzz/seeds/$$name/* $$corpus/ 2>/dev/null || true; fi; \
	    echo "== $$name ($(FUZZ_SECONDS) s)"; \
	    build-fuzz/$$name -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -rss_limit_mb=2048 -timeout=10 $$corpus; \
	done

format:
	clang-format -i $$(git ls-files '*.cpp' '*.h')

clean:
	rm -rf $(BUILD) build-fuzz
