# tests/bench.mk -- the speed benchmark of issue 7: libwmanifold against PyTorch
# and the GEMM floor (tests/bench/). Included by the top-level Makefile, which
# defines BUILD, STLIB, LIBS, ALL_CFLAGS, LDFLAGS_SAN, PYTHON, TEST_RUN, TEST_EXTRA.
#
#   make bench         the full benchmark (a few minutes): build/bench.md, build/bench.json
#   make bench-quick   the same with 3 short repetitions (about a minute)
#   make test-bench    a seconds-long smoke run of the C benchmark (part of `make test`)
#   make bench-ab OLD=/path/libwmanifold.so [AB_CONFIGS="mlp-circle-mixed-16 ..."]
#                      the built library against an old one, both loaded in one
#                      process and alternated (tests/bench/ab_dlopen.c)
#
# Single-threaded unless asked: the benchmark sets OPENBLAS_NUM_THREADS=1 and
# calls openblas_set_num_threads(1) (PyTorch: torch.set_num_threads(1)); its
# two-thread section sets 2. BENCH_ARGS passes options to tests/bench/report.py,
# e.g. make bench BENCH_ARGS="--only circle", or "--only cnn" for the CNN rows
# alone (issue 6: WM_CONV_AUTO, STACKED and MATERIALISED against PyTorch's
# conv2d on the stacked kernels). test-bench includes a one-repetition CNN run
# and checks that the three conv strategies agree. The report also times the
# MLP's matrix products through each of src/blas.c's routes (gemm_shapes: on
# the core's own OpenBLAS kernels and with OPENBLAS_CORETYPE=Haswell, and
# BLIS's when Debian's libblis4-serial is installed).
# The end-to-end section (issue 15) runs the rotation example and the same
# experiment in PyTorch (tests/bench/rotation_torch.py) alternately, 3 pairs
# (about 10 minutes; --quick: one pair of 1-epoch runs); BENCH_ARGS="--only e2e"
# runs it alone, --no-e2e skips it, --e2e-runs N sets the pairs.

.PHONY: bench bench-quick bench-run test-bench bench-ab

BENCH_BIN  := $(BUILD)/bench
GEMM_SHAPES_BIN := $(BUILD)/gemm_shapes
# BLIS (Debian libblis4-serial, optional): timed by gemm_shapes beside OpenBLAS
BLIS_SO    := $(firstword $(wildcard /usr/lib/*/blis-serial/libblis.so.4 /usr/lib/*/libblis.so.4))
BENCH_ARGS ?=
BENCH_QUICK ?=
BENCH_RUN   = $(PYTHON) tests/bench/report.py --bench $(BENCH_BIN) --torch tests/bench/bench_torch.py \
              --python $(PYTHON) --variant $(VARIANT) --lib-flags "$(filter -O% -f% -m%,$(ALL_CFLAGS))" \
              --out build/bench.md --json build/bench.json --gemm-shapes $(GEMM_SHAPES_BIN) \
              $(if $(BLIS_SO),--blis $(BLIS_SO)) \
              --e2e-c $(EX_BIN)/rotation --e2e-torch tests/bench/rotation_torch.py --e2e-data $(EX_DATA)

# -O3 for the floor's update pass; the library keeps its own flags.
$(BENCH_BIN): tests/bench/bench.c include/wmanifold.h $(STLIB) $(BLAS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -O3 -DBENCH_OPENBLAS=$(if $(filter openblas,$(BLAS)),1,0) -o $@ $< $(STLIB) $(LIBS) $(LDFLAGS_SAN)

# The products the library issues for the MLP, by route (issue 15).
$(GEMM_SHAPES_BIN): tests/bench/gemm_shapes.c src/blas.h $(STLIB) $(BLAS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -O3 -o $@ $< $(STLIB) $(LIBS) $(LDFLAGS_SAN)

# Old against new in one process (no code-placement noise between binaries).
AB_BIN     := $(BUILD)/ab_dlopen
AB_CONFIGS ?= ctl-circle-mixed-1 ctl-circle-mixed-16 mlp-point-none-1 mlp-line-mixed-1 mlp-circle-mixed-1 \
              mlp-line-mixed-16 mlp-circle-mixed-16 mlp-circle-shared-16 mlp-circle-mixed-128 \
              mlp-circle-shared-128 mlp-bspline16-mixed-16 mlp-bspline16-mixed-128 \
              cnn-circle-mixed-16 cnn-circle-shared-64 cnn-point-none-64 cnn-circle-mixed-128
AB_ARGS    ?= --rounds 20 --ms 40
$(AB_BIN): tests/bench/ab_dlopen.c include/wmanifold.h
	@mkdir -p $(@D)
	$(CC) -std=c11 -O2 -Wall -Wextra -Wpedantic -Iinclude -o $@ $< -ldl -lm

bench-ab: lib $(AB_BIN)
	@test -n "$(OLD)" || { echo "bench-ab: OLD=/path/to/old/libwmanifold.so is needed"; exit 1; }
	@d=$$(mktemp -d) && cp "$(OLD)" $$d/old.so && cp $(LIBOUT)/libwmanifold.so $$d/new.so && \
	  OPENBLAS_NUM_THREADS=1 $(AB_BIN) $$d/old.so $$d/new.so $(AB_ARGS) $(AB_CONFIGS); rc=$$?; rm -rf $$d; exit $$rc

# The dependencies first, then a fresh make that sees them (BLAS is chosen when
# the Makefile is read).
bench:
	@.ci/ensure-deps python3-torch python3-numpy libopenblas-dev dataset-fashion-mnist
	@$(MAKE) --no-print-directory bench-run

bench-quick:
	@.ci/ensure-deps python3-torch python3-numpy libopenblas-dev dataset-fashion-mnist
	@$(MAKE) --no-print-directory bench-run BENCH_QUICK=--quick

bench-run: lib $(BENCH_BIN) $(GEMM_SHAPES_BIN) $(EX_BIN)/rotation
	@test "$(BLAS)" = openblas || { echo "bench: needs OpenBLAS (BLAS=$(BLAS)): apt-get install libopenblas-dev"; exit 1; }
	@test "$(VARIANT)" = release || echo "bench: warning: timing the $(VARIANT) build"
	@$(BENCH_RUN) $(BENCH_QUICK) $(BENCH_ARGS)

test-bench: lib $(BENCH_BIN) $(AB_BIN)
	@echo "== $(BENCH_BIN) --smoke"
	@$(TEST_RUN) $(BENCH_BIN) --smoke
	@echo "== $(AB_BIN): the library against a copy of itself (it runs; no timing judged)"
	@test "$(VARIANT)" = release || { echo "(skipped in the $(VARIANT) build: a plain program cannot dlopen it)"; exit 0; }; \
	d=$$(mktemp -d) && cp $(LIBOUT)/libwmanifold.so $$d/a.so && cp $(LIBOUT)/libwmanifold.so $$d/b.so && \
	  $(AB_BIN) $$d/a.so $$d/b.so --rounds 2 --ms 2 ctl-circle-mixed-1 cnn-point-none-2 >$$d/out; rc=$$?; \
	  grep -c '^| `' $$d/out | grep -qx 2 || rc=1; rm -rf $$d; exit $$rc

TEST_EXTRA += test-bench
