# tests/fuzz.mk -- hardening: libFuzzer, ThreadSanitizer and coverage.
# Included by the top-level Makefile (SRCS, TEST_SRCS, BUILD, STLIB, LIBS,
# BLAS_CFLAGS, ALL_CFLAGS and TEST_EXTRA come from there). See docs/reliability.md.
#
#   make fuzz [FUZZ_SECONDS=60]   build both fuzzers and run each for FUZZ_SECONDS
#                                 (make -j2 fuzz runs them in parallel)
#   make fuzz-load | fuzz-api     one of them
#   make test-fuzz-corpus         replay tests/fuzz/corpus through both (part of make test)
#   make fuzz-corpus-gen          rewrite the seed corpus (tests/fuzz/gen_corpus.c)
#   make test-tsan                8 threads x wm_infer on one net under TSan (part of make test)
#   make coverage                 gcov/lcov line and branch coverage of src/ from the cmocka suites
#
# Each keeps its own objects: build/fuzz, build/tsan, build/coverage.

.PHONY: fuzz fuzz-load fuzz-api fuzz-bins test-fuzz-corpus fuzz-corpus-gen test-tsan coverage

HARD_ROOT    := $(patsubst %/,%,$(dir $(BUILD)))
HARD_CFLAGS  := -std=c11 -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc -g -fno-omit-frame-pointer

# ---- libFuzzer ------------------------------------------------------------------
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_TIMEOUT ?= 30
FUZZ_DIR     := $(HARD_ROOT)/fuzz
# UBSan is recoverable only so that tests/fuzz/ubsan.supp can silence known
# findings; halt_on_error=1 still stops at the first one not listed there.
FUZZ_SAN     := -fsanitize=address,undefined -fsanitize-recover=undefined
FUZZ_CFLAGS  := $(HARD_CFLAGS) -O1 $(FUZZ_SAN) $(BLAS_CFLAGS)
FUZZ_OBJS    := $(patsubst src/%.c,$(FUZZ_DIR)/obj/%.o,$(SRCS))
FUZZ_NAMES   := load api
FUZZ_BINS    := $(patsubst %,$(FUZZ_DIR)/fuzz_%,$(FUZZ_NAMES))
# OpenBLAS threads are not ours to fuzz; leaks are findings.
FUZZ_ENV     := OPENBLAS_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1:quarantine_size_mb=64 \
                UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:suppressions=$(CURDIR)/tests/fuzz/ubsan.supp
FUZZ_PROBE    = printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n);\nint LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' \
                | $(FUZZ_CC) -x c - -fsanitize=fuzzer,address,undefined -o $(FUZZ_DIR)/probe >/dev/null 2>&1

# Library objects carry coverage instrumentation for libFuzzer but no main.
$(FUZZ_DIR)/obj/%.o: src/%.c $(wildcard src/*.h src/layers/*.h) include/wmanifold.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_common.h $(FUZZ_OBJS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -Itests/fuzz -o $@ $< $(FUZZ_OBJS) $(LIBS)

fuzz-bins: $(FUZZ_BINS)

# New inputs go to $(FUZZ_DIR)/work/NAME (the checked-in seeds stay as they
# are), crashes to $(FUZZ_DIR)/artifacts/, the whole log to $(FUZZ_DIR)/NAME.log.
fuzz-load fuzz-api: fuzz-%: $(FUZZ_DIR)/fuzz_%
	@mkdir -p $(FUZZ_DIR)/work/$* $(FUZZ_DIR)/artifacts
	@echo "== fuzz_$*: $(FUZZ_SECONDS) s, log in $(FUZZ_DIR)/$*.log"
	@$(FUZZ_ENV) $(FUZZ_DIR)/fuzz_$* -max_total_time=$(FUZZ_SECONDS) -timeout=$(FUZZ_TIMEOUT) \
	    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/artifacts/$*- \
	    $(FUZZ_DIR)/work/$* tests/fuzz/corpus/$* > $(FUZZ_DIR)/$*.log 2>&1; st=$$?; \
	    grep -E '^(#[0-9]+[[:space:]]+DONE|Done [0-9]+ runs|stat::|==[0-9]+==ERROR|SUMMARY|fuzz invariant)|runtime error' \
	        $(FUZZ_DIR)/$*.log | sed 's/^/fuzz_$*: /'; \
	    ls $(FUZZ_DIR)/artifacts/$*-* 2>/dev/null | sed 's/^/fuzz_$*: finding: /'; exit $$st

fuzz: fuzz-load fuzz-api

# Replay every seed once (no mutation): a few seconds, part of `make test`.
test-fuzz-corpus:
	@mkdir -p $(FUZZ_DIR)
	@if ! $(FUZZ_PROBE); then \
	    echo "fuzz-corpus: SKIP ($(FUZZ_CC) -fsanitize=fuzzer does not link: apt-get install clang libclang-rt-14-dev)"; \
	    exit 0; fi; \
	$(MAKE) --no-print-directory -s fuzz-bins || exit 1; \
	pass=0; fail=0; \
	for name in $(FUZZ_NAMES); do for f in tests/fuzz/corpus/$$name/*; do \
	    if $(FUZZ_ENV) $(FUZZ_DIR)/fuzz_$$name -runs=1 $$f > $(FUZZ_DIR)/replay.log 2>&1; then \
	        pass=$$((pass+1)); \
	    else fail=$$((fail+1)); echo "FAIL fuzz_$$name $$f"; tail -n 30 $(FUZZ_DIR)/replay.log; fi; \
	done; done; \
	echo "fuzz-corpus: $$pass passed, $$fail failed"; [ $$fail -eq 0 ]

$(FUZZ_DIR)/gen_corpus: tests/fuzz/gen_corpus.c tests/fuzz/fuzz_common.h $(STLIB) $(BLAS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Itests/fuzz -o $@ $< $(STLIB) $(LIBS) $(LDFLAGS_SAN)

fuzz-corpus-gen: $(FUZZ_DIR)/gen_corpus
	rm -rf tests/fuzz/corpus/load tests/fuzz/corpus/api
	$(FUZZ_DIR)/gen_corpus tests/fuzz/corpus

# ---- ThreadSanitizer --------------------------------------------------------------
# OpenBLAS is not instrumented (its thread pool would report false races), so
# this build uses the reference BLAS, which runs in the calling thread.
TSAN_CC      ?= clang
TSAN_DIR     := $(HARD_ROOT)/tsan
TSAN_BLASDIR := $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/blas /usr/lib/$(shell gcc -dumpmachine 2>/dev/null)/blas))
TSAN_CFLAGS  := $(HARD_CFLAGS) -O1 -fsanitize=thread
TSAN_LIBS    := -L$(TSAN_BLASDIR) -Wl,-rpath,$(TSAN_BLASDIR) -lblas -lm -lpthread
TSAN_OBJS    := $(patsubst src/%.c,$(TSAN_DIR)/obj/%.o,$(SRCS))
TSAN_PROBE    = printf 'int main(void) { return 0; }\n' | $(TSAN_CC) -x c - -fsanitize=thread \
                -o $(TSAN_DIR)/probe >/dev/null 2>&1

$(TSAN_DIR)/obj/%.o: src/%.c $(wildcard src/*.h src/layers/*.h) include/wmanifold.h
	@mkdir -p $(@D)
	$(TSAN_CC) $(TSAN_CFLAGS) -c $< -o $@

$(TSAN_DIR)/tsan_test: tests/tsan_test.c $(TSAN_OBJS)
	$(TSAN_CC) $(TSAN_CFLAGS) -o $@ $< $(TSAN_OBJS) $(TSAN_LIBS)

test-tsan:
	@mkdir -p $(TSAN_DIR)
	@if [ -z "$(TSAN_BLASDIR)" ]; then echo "tsan: SKIP (no reference BLAS: apt-get install libblas-dev)"; exit 0; fi; \
	if ! $(TSAN_PROBE); then echo "tsan: SKIP ($(TSAN_CC) -fsanitize=thread does not link: apt-get install clang libclang-rt-14-dev)"; exit 0; fi; \
	$(MAKE) --no-print-directory -s $(TSAN_DIR)/tsan_test || exit 1; \
	if TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1" $(TSAN_DIR)/tsan_test; then \
	    echo "tsan: 1 passed, 0 failed"; else echo "tsan: 0 passed, 1 failed"; exit 1; fi

# ---- coverage ---------------------------------------------------------------------
COV_DIR    := $(HARD_ROOT)/coverage
COV_CFLAGS := $(HARD_CFLAGS) -O0 --coverage $(BLAS_CFLAGS)
COV_OBJS   := $(patsubst src/%.c,$(COV_DIR)/obj/%.o,$(SRCS))
COV_TESTS  := $(patsubst tests/%.c,$(COV_DIR)/tests/%,$(TEST_SRCS))
COV_LCOV   := lcov -q --rc lcov_branch_coverage=1

$(COV_DIR)/obj/%.o: src/%.c $(wildcard src/*.h src/layers/*.h) include/wmanifold.h
	@mkdir -p $(@D)
	$(CC) $(COV_CFLAGS) -c $< -o $@

$(COV_DIR)/libwmanifold.a: $(COV_OBJS)
	rm -f $@ && ar rcs $@ $(COV_OBJS)

$(COV_DIR)/tests/%: tests/%.c tests/testutil.h $(COV_DIR)/libwmanifold.a
	@mkdir -p $(@D)
	$(CC) $(COV_CFLAGS) -Itests -o $@ $< $(COV_DIR)/libwmanifold.a $(LIBS) \
	    $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

coverage: $(COV_TESTS)
	@.ci/ensure-deps lcov
	@find $(COV_DIR)/obj -name '*.gcda' -delete
	@set -e; for t in $(COV_TESTS); do echo "== $$t"; \
	    OPENBLAS_NUM_THREADS=1 CMOCKA_MESSAGE_OUTPUT=stdout $$t > $$t.log 2>&1 \
	    || { cat $$t.log; exit 1; }; done
	@# (lcov 1.16's geninfo warns about redefined Perl subroutines: kept in lcov.log)
	@$(COV_LCOV) --capture --directory $(COV_DIR)/obj --output-file $(COV_DIR)/all.info \
	    2> $(COV_DIR)/lcov.log || { cat $(COV_DIR)/lcov.log; exit 1; }
	@$(COV_LCOV) --extract $(COV_DIR)/all.info '$(CURDIR)/src/*' --output-file $(COV_DIR)/src.info
	@genhtml -q --branch-coverage --output-directory $(COV_DIR)/html $(COV_DIR)/src.info
	@echo "coverage of src/ (HTML: $(COV_DIR)/html/index.html):"
	@$(COV_LCOV) --list $(COV_DIR)/src.info | sed -n '1,40p'
	@lcov --rc lcov_branch_coverage=1 --summary $(COV_DIR)/src.info 2>&1 | grep -E 'lines|functions|branches'

TEST_EXTRA += test-fuzz-corpus test-tsan

# The objects are reused between runs (make would delete them as intermediates).
.SECONDARY: $(FUZZ_OBJS) $(TSAN_OBJS) $(COV_OBJS)
