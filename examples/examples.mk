# examples/examples.mk -- the Fashion-MNIST examples and the flagship demo.
# Included by the top-level Makefile, which defines STLIB, LIBS, ALL_CFLAGS,
# BUILD, TEST_RUN and TEST_EXTRA.
#
#   make examples        build $(BUILD)/examples/{rotation,noise,torus}
#   make demo            rotation for each seed in DEMO_SEEDS, noise and torus for
#                        DEMO_OTHER_SEEDS, on Fashion-MNIST, into build/demo/seedN/
#                        (or OUT=dir), and print the summary
#   make results RUN=build/demo   record that run in docs/results/demo/ and
#                        regenerate docs/results.md and the README's numbers from it
#   make test-examples   quick end-to-end checks (part of `make test`)
#   make test-results    docs/results.md and the README match the recorded run (part of `make test`)

EX_BIN      := $(BUILD)/examples
EX_NAMES    := rotation noise torus which_task
EX_PROGS    := $(addprefix $(EX_BIN)/,$(EX_NAMES))
EX_SUPPORT  := $(EX_BIN)/common.o $(EX_BIN)/idx.o
EX_HEADERS  := examples/common.h examples/idx.h include/wmanifold.h
EX_DATA     ?= /usr/share/datasets/fashion-mnist
# Outputs go under build/ (or OUT=dir); never into the source tree's tracked
# files: `make results` is the one step that writes docs/.
OUT         ?= build/demo
DEMO_OUT    ?= $(OUT)
# The headline (the rotation) runs for three seeds, for the spread of its
# numbers; noise and torus for DEMO_OTHER_SEEDS (the first seed; set it to
# "1 2 3" for their spread too). Every program runs
# with its defaults (they are the demo's settings); the first seed also runs
# the rotation against a baseline widened to the manifold's parameter count,
# into seedN/matched/ (DEMO_MATCHED=0 skips it). docs/results.md has the
# recorded run's times.
DEMO_SEEDS  ?= 1 2 3
DEMO_OTHER_SEEDS ?= $(firstword $(DEMO_SEEDS))
DEMO_MATCHED ?= 1
DEMO_MATCHED_FLAGS ?= --concat-hidden 585,585
DEMO_FLAGS  ?=
DEMO_ROTATION_FLAGS ?=
DEMO_NOISE_FLAGS    ?=
DEMO_TORUS_FLAGS    ?=
RESULTS_DIR := docs/results/demo
RUN         ?= $(DEMO_OUT)

.PHONY: examples demo test-examples results test-results

examples: $(EX_PROGS)

$(EX_BIN)/%.o: examples/%.c $(EX_HEADERS) | $(EX_BIN)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(EX_PROGS): $(EX_BIN)/%: $(EX_BIN)/%.o $(EX_SUPPORT) $(STLIB)
	$(CC) -o $@ $< $(EX_SUPPORT) $(STLIB) $(LIBS) -lz $(LDFLAGS_SAN)

$(EX_BIN):
	@mkdir -p $@

# tests/test_warp.c checks the examples' warp against its scalar definition:
# the generic test rule plus the examples' support objects.
$(BUILD)/tests/test_warp: tests/test_warp.c tests/testutil.h $(EX_SUPPORT) $(STLIB) $(BLAS_STAMP) | $(BUILD)/tests
	$(CC) $(ALL_CFLAGS) -Itests -Iexamples -o $@ $< $(EX_SUPPORT) $(TEST_LIBS) -lz $(LDFLAGS_SAN)

# Each run's output goes to the terminal and to DIR/seedN/NAME.log; the exit
# status survives the pipe through tee via a status file (plain sh has no
# pipefail). DIR/run.txt records what ran, where and when, for docs/results.py.
DEMO_RUN_ONE = \
	echo "== $(EX_BIN)/$$ex --data $(EX_DATA) --out $$dir --seed $$seed $(DEMO_FLAGS) $$extra"; \
	echo "command $$name $(EX_BIN)/$$ex --data $(EX_DATA) --out $$dir --seed $$seed $(DEMO_FLAGS) $$extra" >> $(DEMO_OUT)/run.txt; \
	t1=$$(date +%s.%N); \
	{ $(EX_BIN)/$$ex --data $(EX_DATA) --out $$dir --seed $$seed $(DEMO_FLAGS) $$extra \
	    && echo 0 > $$dir/.$$name.status || echo $$? > $$dir/.$$name.status; } \
	    2>&1 | tee $$dir/$$name.log; \
	st=$$(cat $$dir/.$$name.status); rm -f $$dir/.$$name.status; \
	[ "$$st" = 0 ] || { echo "demo: $$name (seed $$seed) failed (exit $$st)"; exit 1; }; \
	echo "demo: $$name (seed $$seed) took $$(awk "BEGIN{printf \"%.1f\", $$(date +%s.%N) - $$t1}") s" \
	    | tee -a $$dir/$$name.log

demo:
	@.ci/ensure-deps $(DEMO_DEBS)
	@if command -v git >/dev/null 2>&1 && [ -n "$$(git ls-files -- '$(DEMO_OUT)' 2>/dev/null)" ]; then \
	    echo "demo: $(DEMO_OUT) holds files tracked in git; choose another OUT=dir (make results records a run)"; exit 1; fi
	@$(MAKE) --no-print-directory lib $(EX_PROGS)
	@rm -rf $(DEMO_OUT) && mkdir -p $(DEMO_OUT)
	@{ echo "date $$(date -u '+%Y-%m-%d %H:%M UTC')"; \
	   echo "commit $$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$$(git status --porcelain -- src include 'examples/*.c' 'examples/*.h' 2>/dev/null | grep -q . && echo ' (modified)')"; \
	   echo "cpu $$(nproc) x $$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"; \
	   echo "blas $(BLAS) ($(strip $(BLAS_LIBS)))"; echo "seeds $(sort $(DEMO_SEEDS) $(DEMO_OTHER_SEEDS))"; \
	   echo "make make demo DEMO_SEEDS='$(DEMO_SEEDS)' DEMO_OTHER_SEEDS='$(DEMO_OTHER_SEEDS)' DEMO_MATCHED=$(DEMO_MATCHED)"; \
	 } > $(DEMO_OUT)/run.txt
	@set -e; t0=$$(date +%s.%N); first=1; \
	for seed in $(sort $(DEMO_SEEDS) $(DEMO_OTHER_SEEDS)); do \
	    dir=$(DEMO_OUT)/seed$$seed; mkdir -p $$dir; \
	    exs=; case " $(DEMO_SEEDS) " in *" $$seed "*) exs=rotation;; esac; \
	    case " $(DEMO_OTHER_SEEDS) " in *" $$seed "*) exs="$$exs noise torus";; esac; \
	    for ex in $$exs; do \
	        case $$ex in rotation) extra="$(DEMO_ROTATION_FLAGS)";; noise) extra="$(DEMO_NOISE_FLAGS)";; \
	                     torus) extra="$(DEMO_TORUS_FLAGS)";; esac; \
	        name=$$ex; $(DEMO_RUN_ONE); \
	    done; \
	    if [ $$first = 1 ] && [ "$(DEMO_MATCHED)" = 1 ] && [ "$$seed" = "$(firstword $(DEMO_SEEDS))" ]; then \
	        dir=$(DEMO_OUT)/seed$$seed/matched; mkdir -p $$dir; \
	        ex=rotation; name=rotation; extra="$(DEMO_ROTATION_FLAGS) $(DEMO_MATCHED_FLAGS) --no-plot"; \
	        $(DEMO_RUN_ONE); fi; \
	    first=0; \
	done; \
	secs=$$(awk "BEGIN{printf \"%.1f\", $$(date +%s.%N) - $$t0}"); \
	echo "total $$secs" >> $(DEMO_OUT)/run.txt; \
	echo; $(PYTHON) docs/results.py summary $(DEMO_OUT); \
	echo "demo: all runs took $$secs s; results in $(DEMO_OUT)/ (make results RUN=$(DEMO_OUT) records them in docs/)"

# Record a run (copies its logs, CSVs and plots; the gnuplot scripts name
# their own directory, so they are left out), then regenerate from the record.
results:
	@test -r $(RUN)/run.txt || { echo "results: $(RUN)/run.txt is missing; run make demo first (or RUN=dir)"; exit 1; }
	@test "$$(readlink -f $(RUN))" != "$$(readlink -f $(RESULTS_DIR))" || \
	    { echo "results: RUN is the record itself; to regenerate from it: $(PYTHON) docs/results.py write $(RESULTS_DIR) docs/results.md README.md"; exit 1; }
	rm -rf $(RESULTS_DIR) && mkdir -p $(RESULTS_DIR)
	cp $(RUN)/run.txt $(RESULTS_DIR)/
	cd $(RUN) && find . -name '*.log' -o -name '*.csv' -o -name '*.png' | while read -r f; do \
	    mkdir -p "$(CURDIR)/$(RESULTS_DIR)/$$(dirname "$$f")" && cp "$$f" "$(CURDIR)/$(RESULTS_DIR)/$$f"; done
	$(PYTHON) docs/results.py write $(RESULTS_DIR) docs/results.md README.md

# The checked-in docs/results.md and README numbers are what the script makes
# of the recorded run.
test-results:
	@$(PYTHON) docs/results.py check $(RESULTS_DIR) docs/results.md README.md

test-examples: lib examples
	@EX_RUN="$(TEST_RUN)" sh examples/test-examples.sh $(EX_BIN) $(EX_DATA)

TEST_EXTRA += test-examples test-results
