# examples/cnn.mk -- the CNN example (rotated Fashion-MNIST / CIFAR-10).
# Included by the top-level Makefile, which defines STLIB, LIBS, ALL_CFLAGS,
# BUILD, TEST_RUN and TEST_EXTRA.
#
#   make $(BUILD)/examples/cnn_rotation   (also built by `make examples`)
#   make demo-cnn        the default experiment, results in build/demo-cnn/ (or CNN_OUT=dir)
#   make test-cnn        quick end-to-end checks (part of `make test`)
#
# This file is read before examples/examples.mk, so it uses its own variable
# names and creates its build directory in the recipes.

CNN_BIN      := $(BUILD)/examples
CNN_PROG     := $(CNN_BIN)/cnn_rotation
CNN_OBJS     := $(CNN_BIN)/cnn_rotation.o $(CNN_BIN)/cifar.o $(CNN_BIN)/cnn-common.o \
                $(CNN_BIN)/cnn-idx.o
CNN_HEADERS  := examples/cifar.h examples/common.h examples/idx.h include/wmanifold.h
CNN_DATA     ?= /usr/share/datasets/fashion-mnist
CNN_OUT      ?= build/demo-cnn
CNN_FLAGS    ?=

.PHONY: demo-cnn test-cnn examples

examples: $(CNN_PROG)

$(CNN_BIN)/cnn_rotation.o $(CNN_BIN)/cifar.o: $(CNN_BIN)/%.o: examples/%.c $(CNN_HEADERS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# Our own objects of the shared example code, so that this fragment does not
# depend on how examples.mk names or builds its copies.
$(CNN_BIN)/cnn-common.o $(CNN_BIN)/cnn-idx.o: $(CNN_BIN)/cnn-%.o: examples/%.c $(CNN_HEADERS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(CNN_PROG): $(CNN_OBJS) $(STLIB)
	$(CC) -o $@ $(CNN_OBJS) $(STLIB) $(LIBS) -lz $(LDFLAGS_SAN)

# The output goes to the terminal and to $(CNN_OUT)/cnn_rotation.log; the
# exit status survives the pipe through tee via a status file.
demo-cnn:
	@.ci/ensure-deps dataset-fashion-mnist zlib1g-dev gnuplot-nox
	@$(MAKE) --no-print-directory lib $(CNN_PROG)
	@mkdir -p $(CNN_OUT)
	@echo "== $(CNN_PROG) --data $(CNN_DATA) --out $(CNN_OUT) $(CNN_FLAGS)"
	@t0=$$(date +%s.%N); \
	{ $(CNN_PROG) --data $(CNN_DATA) --out $(CNN_OUT) $(CNN_FLAGS) \
	    && echo 0 > $(CNN_OUT)/.cnn.status || echo $$? > $(CNN_OUT)/.cnn.status; } \
	    2>&1 | tee $(CNN_OUT)/cnn_rotation.log; \
	st=$$(cat $(CNN_OUT)/.cnn.status); rm -f $(CNN_OUT)/.cnn.status; \
	[ "$$st" = 0 ] || { echo "demo-cnn: cnn_rotation failed (exit $$st)"; exit 1; }; \
	echo "demo-cnn: took $$(awk "BEGIN{printf \"%.1f\", $$(date +%s.%N) - $$t0}") s" \
	    | tee -a $(CNN_OUT)/cnn_rotation.log

test-cnn: lib $(CNN_PROG)
	@EX_RUN="$(TEST_RUN)" sh examples/test-cnn.sh $(CNN_BIN) $(CNN_DATA)

TEST_EXTRA += test-cnn
