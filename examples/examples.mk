# examples/examples.mk -- the Fashion-MNIST examples and the flagship demo.
# Included by the top-level Makefile, which defines STLIB, LIBS, ALL_CFLAGS,
# BUILD, TEST_RUN and TEST_EXTRA.
#
#   make examples        build $(BUILD)/examples/{rotation,noise,torus}
#   make demo            run all three on Fashion-MNIST, results in docs/results/
#   make test-examples   quick end-to-end checks (part of `make test`)

EX_BIN      := $(BUILD)/examples
EX_NAMES    := rotation noise torus which_task
EX_PROGS    := $(addprefix $(EX_BIN)/,$(EX_NAMES))
EX_SUPPORT  := $(EX_BIN)/common.o $(EX_BIN)/idx.o
EX_HEADERS  := examples/common.h examples/idx.h include/wmanifold.h
EX_DATA     ?= /usr/share/datasets/fashion-mnist
DEMO_OUT    ?= docs/results
# The demo's settings, chosen so that all three runs finish in under five
# minutes on two cores (see docs/results.md for the measurements).
DEMO_FLAGS  ?=
DEMO_ROTATION_FLAGS ?=
DEMO_NOISE_FLAGS    ?=
DEMO_TORUS_FLAGS    ?=

.PHONY: examples demo test-examples

examples: $(EX_PROGS)

$(EX_BIN)/%.o: examples/%.c $(EX_HEADERS) | $(EX_BIN)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(EX_PROGS): $(EX_BIN)/%: $(EX_BIN)/%.o $(EX_SUPPORT) $(STLIB)
	$(CC) -o $@ $< $(EX_SUPPORT) $(STLIB) $(LIBS) -lz $(LDFLAGS_SAN)

$(EX_BIN):
	@mkdir -p $@

# Each run's output goes to the terminal and to docs/results/NAME.log; the
# exit status survives the pipe through tee via a status file (plain sh has
# no pipefail).
demo:
	@.ci/ensure-deps $(BUILD_DEBS) dataset-fashion-mnist gnuplot-nox
	@$(MAKE) --no-print-directory lib examples
	@mkdir -p $(DEMO_OUT)
	@set -e; t0=$$(date +%s.%N); \
	for ex in rotation noise torus; do \
	    case $$ex in rotation) extra="$(DEMO_ROTATION_FLAGS)";; noise) extra="$(DEMO_NOISE_FLAGS)";; \
	                 torus) extra="$(DEMO_TORUS_FLAGS)";; esac; \
	    echo "== $(EX_BIN)/$$ex --data $(EX_DATA) --out $(DEMO_OUT) $(DEMO_FLAGS) $$extra"; \
	    t1=$$(date +%s.%N); \
	    { $(EX_BIN)/$$ex --data $(EX_DATA) --out $(DEMO_OUT) $(DEMO_FLAGS) $$extra \
	        && echo 0 > $(DEMO_OUT)/.$$ex.status || echo $$? > $(DEMO_OUT)/.$$ex.status; } \
	        2>&1 | tee $(DEMO_OUT)/$$ex.log; \
	    st=$$(cat $(DEMO_OUT)/.$$ex.status); rm -f $(DEMO_OUT)/.$$ex.status; \
	    [ "$$st" = 0 ] || { echo "demo: $$ex failed (exit $$st)"; exit 1; }; \
	    echo "demo: $$ex took $$(awk "BEGIN{printf \"%.1f\", $$(date +%s.%N) - $$t1}") s" \
	        | tee -a $(DEMO_OUT)/$$ex.log; \
	done; \
	echo "demo: all three took $$(awk "BEGIN{printf \"%.1f\", $$(date +%s.%N) - $$t0}") s;" \
	     "results in $(DEMO_OUT)/"

test-examples: lib examples
	@EX_RUN="$(TEST_RUN)" sh examples/test-examples.sh $(EX_BIN) $(EX_DATA)

TEST_EXTRA += test-examples
