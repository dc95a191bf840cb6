# examples/resnet.mk -- the residual-CNN experiment of issue 14 (rotated
# Fashion-MNIST; every layer on the circle vs input concatenation vs FiLM on
# point layers vs only the last block and head on the circle).
#
#   make $(BUILD)/examples/resnet_rotation
#   make demo-resnet     the experiment, results in build/demo-resnet/ (or RESNET_OUT=dir;
#                        docs/results/resnet_rotation.* hold the recorded run);
#                        not part of `make demo`: several minutes

RESNET_BIN  := $(BUILD)/examples/resnet
RESNET_PROG := $(BUILD)/examples/resnet_rotation
RESNET_OBJS := $(RESNET_BIN)/resnet_rotation.o $(RESNET_BIN)/common.o $(RESNET_BIN)/idx.o
RESNET_DATA  ?= /usr/share/datasets/fashion-mnist
RESNET_OUT   ?= build/demo-resnet
RESNET_FLAGS ?=

.PHONY: demo-resnet

$(RESNET_BIN)/%.o: examples/%.c examples/common.h examples/idx.h include/wmanifold.h
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(RESNET_PROG): $(RESNET_OBJS) $(STLIB)
	$(CC) -o $@ $(RESNET_OBJS) $(STLIB) $(LIBS) -lz $(LDFLAGS_SAN)

demo-resnet: lib $(RESNET_PROG)
	@mkdir -p $(RESNET_OUT)
	OPENBLAS_NUM_THREADS=1 $(RESNET_PROG) --data $(RESNET_DATA) --out $(RESNET_OUT) $(RESNET_FLAGS) \
	    2>&1 | tee $(RESNET_OUT)/resnet_rotation.log

# A seconds-long end-to-end run (part of `make test`): --help, and every
# method trains and reports on a few hundred images.
.PHONY: test-resnet
TEST_EXTRA += test-resnet
test-resnet: lib $(RESNET_PROG)
	@$(RESNET_PROG) --help | grep -q "residual CNN" || { echo "resnet: --help"; exit 1; }
	@if [ ! -f $(RESNET_DATA)/train-images-idx3-ubyte.gz ]; then echo "resnet: SKIP (no $(RESNET_DATA): apt-get install dataset-fashion-mnist)"; exit 0; fi; \
	out=$$(mktemp -d); \
	OPENBLAS_NUM_THREADS=1 $(TEST_RUN) $(RESNET_PROG) --data $(RESNET_DATA) --out $$out --seeds 1 --epochs 1 \
	    --train 256 --test 64 --no-plot --quiet > $$out/log 2>&1 || { cat $$out/log; rm -rf $$out; echo "resnet: 0 passed, 1 failed"; exit 1; }; \
	n=$$(grep -cE '^(manifold|concat|film|lastblock) ' $$out/log); rows=$$(($$(wc -l < $$out/resnet_rotation.csv) - 1)); \
	rm -rf $$out; \
	if [ "$$n" = 4 ] && [ "$$rows" = 144 ]; then echo "resnet: 1 passed, 0 failed"; \
	else echo "resnet: 0 passed, 1 failed ($$n methods reported, $$rows csv rows)"; exit 1; fi
