# Kiln: `make run` and `make test` do all set-up on a fresh Debian 12 machine.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CXX_COMPILER ?= g++
C_COMPILER ?= gcc
PY ?= .venv/bin/python
HOST ?= 127.0.0.1
PORT ?= 8080
STAMP := $(BUILD_DIR)/.deps-ok

# clang's -Wthread-safety over every source file, LibTorch's users included (clang 14 parses
# LibTorch 2.11's headers in C++20), except src/http/load_client.cc: it uses Asio's coroutines,
# which Boost 1.74 enables for clang only through <experimental/coroutine>, which libstdc++ lacks.
# The LibTorch headers come from the folder CMake links up at configure time (cmake/torch.cmake).
TSA_SOURCES = $(filter-out %_test.cc src/http/load_client.cc, \
  $(wildcard src/*/*.cc src/*/*/*.cc))
TSA_FLAGS = -std=c++20 -fsyntax-only -Wthread-safety -Werror -Isrc -I/usr/include/stb \
  -isystem $(BUILD_DIR)/torch-include -isystem $(BUILD_DIR)/torch-include/torch/csrc/api/include \
  -DKILN_VERSION='"tsa"'

.PHONY: fuzz fuzz-merge test-asan browser-deps thread-safety deps configure build run test test-models bench bench-overhead bench-peer bench-png bench-batching format format-check model clean

$(STAMP): scripts/install-deps.sh requirements.txt
	bash scripts/install-deps.sh
	@mkdir -p $(BUILD_DIR) && touch $(STAMP)

deps: $(STAMP)

$(BUILD_DIR)/build.ninja: CMakeLists.txt $(STAMP)
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  -DCMAKE_CXX_COMPILER=$(CXX_COMPILER) -DCMAKE_C_COMPILER=$(C_COMPILER)

configure: $(BUILD_DIR)/build.ninja

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS) --target kiln

# Serves models/ (tiny-shapes ships there). Without any model folder in models/, it serves the
# randomly initialised test models instead, and says so.
run: build test-models
	@if ls models/*/model.yaml >/dev/null 2>&1; then MODELS=models; else \
	  echo "run: no model in models/; serving the untrained test models from $(BUILD_DIR)/test-models"; \
	  MODELS=$(BUILD_DIR)/test-models; fi; \
	exec $(BUILD_DIR)/kiln serve --host $(HOST) --port $(PORT) --models $$MODELS --data data

# Small randomly initialised pipelines that exercise the engine without trained weights.
test-models: $(STAMP)
	$(PY) tools/make_test_models.py --out $(BUILD_DIR)/test-models

# playwright-core for the browser test, pinned by tests/browser/package-lock.json.
tests/browser/node_modules/.package-lock.json: tests/browser/package-lock.json $(STAMP)
	npm ci --prefix tests/browser --no-audit --no-fund

browser-deps: tests/browser/node_modules/.package-lock.json

test: configure test-models browser-deps
	cmake --build $(BUILD_DIR) -j $(JOBS)
	cd $(BUILD_DIR) && ctest --output-on-failure -j 2 --timeout 600

# Benchmarks live in bench/; results and the commands that reproduce them are in docs/benchmarks.md.
bench: build test-models
	cmake --build $(BUILD_DIR) --target kiln_bench_latency
	$(BUILD_DIR)/kiln_bench_latency $(BUILD_DIR)/test-models test-pixel 20 9
	$(BUILD_DIR)/kiln_bench_latency $(BUILD_DIR)/test-models test-latent 20 9

# Serving overhead: kiln vs FastAPI + uvicorn + PyTorch on the identity model (docs/benchmarks.md).
bench-overhead: build test-models
	cmake --build $(BUILD_DIR) --target kiln_bench_http_load kiln_bench_null_server
	bash bench/overhead.sh

# PNG encoding cost by zlib settings (docs/benchmarks.md).
bench-png: configure
	cmake --build $(BUILD_DIR) --target kiln_bench_png_encode
	$(BUILD_DIR)/kiln_bench_png_encode

# The same load through `kiln loadtest` against Kiln and the FastAPI peer (bench/peer).
bench-peer: build test-models
	bash bench/overhead.sh --client loadtest

# Step-level vs request-level batching on tiny-shapes at two sizes (docs/benchmarks.md).
bench-batching: build
	cmake --build $(BUILD_DIR) --target kiln_bench_batching
	bash bench/batching.sh

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

thread-safety: configure
	@printf '%s\n' $(TSA_SOURCES) | xargs -P $(JOBS) -I{} clang++ $(TSA_FLAGS) {} && \
	  echo "thread-safety: $(words $(TSA_SOURCES)) files clean"

format-check: $(STAMP)
	clang-format --dry-run -Werror $$(git ls-files '*.cc' '*.h')

# Coverage-guided fuzzing (libFuzzer, clang) of every target in fuzz/ with ASan and UBSan, each
# for FUZZ_SECONDS (FUZZ_TARGETS to choose), on FUZZ_JOBS cores; new inputs collect in
# $(FUZZ_DIR)/corpus, crashes in $(FUZZ_DIR)/findings. `make fuzz-merge` folds what was found
# into fuzz/corpus (minimised). docs/security.md has the runs so far.
FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_JOBS ?= 1
FUZZ_TARGETS ?= traceparent http_request multipart json_requests image_decode safetensors \
  model_config clip_tokenizer
$(FUZZ_DIR)/build.ninja: CMakeLists.txt $(STAMP)
	cmake -S . -B $(FUZZ_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_FUZZ=ON \
	  -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang

fuzz: $(FUZZ_DIR)/build.ninja test-models
	cmake --build $(FUZZ_DIR) -j $(JOBS) $(addprefix --target kiln_fuzz_,$(FUZZ_TARGETS))
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_DIR)/corpus/$$t $(FUZZ_DIR)/findings/$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  KILN_TEST_MODELS=$(CURDIR)/$(BUILD_DIR)/test-models \
	  ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  $(FUZZ_DIR)/kiln_fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=20 -rss_limit_mb=4096 \
	    -max_len=65536 -jobs=$(FUZZ_JOBS) -workers=$(FUZZ_JOBS) \
	    -artifact_prefix=$(FUZZ_DIR)/findings/$$t/ \
	    $(FUZZ_DIR)/corpus/$$t fuzz/corpus/$$t 2>&1 | tail -n 3 || exit 1; \
	done

fuzz-merge: $(FUZZ_DIR)/build.ninja
	@for t in $(FUZZ_TARGETS); do \
	  KILN_TEST_MODELS=$(CURDIR)/$(BUILD_DIR)/test-models ASAN_OPTIONS=detect_leaks=0 \
	  $(FUZZ_DIR)/kiln_fuzz_$$t -merge=1 -max_len=65536 fuzz/corpus/$$t $(FUZZ_DIR)/corpus/$$t \
	    2>&1 | tail -n 1; \
	done

# The unit and integration tests built with AddressSanitizer and UndefinedBehaviorSanitizer
# (GCC), in their own build folder; a report fails the test that caused it. Not part of `make
# test` (a second full build); docs/security.md has its runs.
ASAN_DIR ?= build-asan
test-asan: test-models browser-deps
	cmake -S . -B $(ASAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_SANITIZE=ON \
	  -DCMAKE_CXX_COMPILER=$(CXX_COMPILER) -DCMAKE_C_COMPILER=$(C_COMPILER)
	cmake --build $(ASAN_DIR) -j $(JOBS)
	$(PY) tools/make_test_models.py --out $(ASAN_DIR)/test-models
	cd $(ASAN_DIR) && ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:detect_odr_violation=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j 2 --timeout 1200 $(ASAN_CTEST_ARGS)

model: $(STAMP)
	bash tools/shapes/train_all.sh

clean:
	rm -rf $(BUILD_DIR)
