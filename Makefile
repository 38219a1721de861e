# hfr — top-level entry points. `make demo` and `make test` set everything up
# on a fresh Debian 12 machine (installing missing packages), build and run.
#
#   make            set up and build (build/bin/hfr-*)
#   make test       set up, build, run all tests (unit, CLI, sanitizers, fuzz smoke)
#   make demo       set up, build, run the main job on bundled defaults (FULL=1: the larger run)
#   make docs       regenerate man pages and completions from the tools' option tables
#   make bench      run the benchmarks (results in bench/)
#   make fuzz       run each fuzzer for FUZZ_SECONDS (default 600)
#   make install    install binaries, man pages and completions under PREFIX
#
# A CUDA LibTorch is used when Torch_DIR points at one (make Torch_DIR=/path/share/cmake/Torch).

BUILD       ?= build
CHECK_BUILD ?= build-check
JOBS        ?= $(shell nproc)
PREFIX      ?= /usr/local
FUZZ_SECONDS ?= 600
FULL        ?= 0
CMAKE_FLAGS := -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo $(if $(Torch_DIR),-DTorch_DIR=$(Torch_DIR))
CTEST_FLAGS := --output-on-failure -j$(JOBS)

TOOLS := hfr-reconstruct hfr-synth hfr-render hfr-train hfr-embed hfr-match hfr-eval hfr-tensor

.PHONY: all setup build test test-main test-check demo docs bench fuzz install clean

all: build

setup:
	@bash scripts/setup-deps.sh
	@bash scripts/fetch-models.sh >/dev/null

$(BUILD)/build.ninja: | setup
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) > $(BUILD).configure.log 2>&1 || { cat $(BUILD).configure.log; exit 1; }

build: setup $(BUILD)/build.ninja
	@cmake --build $(BUILD) -j$(JOBS) -- --quiet

test: build
	@$(MAKE) --no-print-directory test-main test-check

test-main:
	@echo "== unit and CLI tests ($(BUILD))"
	@cd $(BUILD) && ctest $(CTEST_FLAGS)

# libcommon's base modules and their tests under AddressSanitizer and
# UndefinedBehaviorSanitizer (clang), plus a short run of every fuzzer.
$(CHECK_BUILD)/build.ninja: | setup
	@CC=clang CXX=clang++ cmake -S . -B $(CHECK_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	  -DHFR_BASE_ONLY=ON -DHFR_SANITIZE=ON -DHFR_FUZZ=ON > $(CHECK_BUILD).configure.log 2>&1 \
	  || { cat $(CHECK_BUILD).configure.log; exit 1; }

test-check: $(CHECK_BUILD)/build.ninja
	@cmake --build $(CHECK_BUILD) -j$(JOBS) -- --quiet
	@echo "== sanitizer build (ASan+UBSan) and fuzz smoke ($(CHECK_BUILD))"
	@cd $(CHECK_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest $(CTEST_FLAGS)

demo: build
	@FULL=$(FULL) bash examples/demo.sh

docs: build
	@for t in $(TOOLS); do \
	  $(BUILD)/bin/$$t --generate-man > man/$$t.1; \
	  $(BUILD)/bin/$$t --generate-completion=bash > completions/bash/$$t; \
	  $(BUILD)/bin/$$t --generate-completion=zsh > completions/zsh/_$$t; \
	done
	@echo "man/ and completions/ regenerated"

bench: build
	@cmake --build $(BUILD) --target bench_tensorfile -- --quiet
	@bash bench/run_tensorfile.sh $(BUILD)
	@bash bench/run_match.sh $(BUILD)
	@bash bench/run_eval.sh $(BUILD)

fuzz: $(CHECK_BUILD)/build.ninja
	@cmake --build $(CHECK_BUILD) -j$(JOBS) -- --quiet
	@bash tests/fuzz/run.sh $(CHECK_BUILD) $(FUZZ_SECONDS)

install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5 \
	  $(DESTDIR)$(PREFIX)/share/man/man7 $(DESTDIR)$(PREFIX)/share/bash-completion/completions \
	  $(DESTDIR)$(PREFIX)/share/zsh/site-functions
	for t in $(TOOLS); do \
	  install -m 755 $(BUILD)/bin/$$t $(DESTDIR)$(PREFIX)/bin/; \
	  install -m 644 man/$$t.1 $(DESTDIR)$(PREFIX)/share/man/man1/; \
	  install -m 644 completions/bash/$$t $(DESTDIR)$(PREFIX)/share/bash-completion/completions/; \
	  install -m 644 completions/zsh/_$$t $(DESTDIR)$(PREFIX)/share/zsh/site-functions/; \
	done
	install -m 644 man/hfr-formats.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	install -m 644 man/hfr.7 $(DESTDIR)$(PREFIX)/share/man/man7/

clean:
	rm -rf $(BUILD) $(CHECK_BUILD) $(BUILD).configure.log $(CHECK_BUILD).configure.log
