# libwmanifold -- the one build entry.
#
#   make                 build lib/libwmanifold.{so,a} and lib/wmanifold.pc
#   make test            build and run every test suite (one line each, a total)
#   make demo            the flagship experiment on Fashion-MNIST, into build/demo
#   make install PREFIX=/usr/local DESTDIR=    |  make uninstall (same variables)
#   make help            every target
#   make BLAS=openblas | BLAS=reference    choose the BLAS (default: OpenBLAS if found)
#   make test SANITIZE=1 (ASan+UBSan)  |  make test VALGRIND=1 (memcheck)
#
# Other pieces add targets through fragments: examples/*.mk, tests/*.mk, docs/*.mk.

comma := ,
.DEFAULT_GOAL := all
VERSION_MAJOR := 0
VERSION_MINOR := 1
VERSION_PATCH := 0
VERSION       := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)
SONAME        := libwmanifold.so.$(VERSION_MAJOR)

PREFIX  ?= /usr/local
DESTDIR ?=
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
PYTHON  ?= /usr/bin/python3

CC      ?= cc
OPT     ?= -O2
WARN    := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS  ?=
# -O2 plus the loop vectoriser's full cost model (GCC's -O2 default only
# vectorises loops that need no epilogue), no errno from libm and no FP traps
# (nothing reads them; they block if-conversion of selects), so the
# elementwise passes (activations, the optimizer update) run in SIMD.
VECTORIZE := $(if $(findstring clang,$(shell $(CC) --version 2>/dev/null)),,-fvect-cost-model=dynamic)
BASE_CFLAGS := -std=c11 $(OPT) $(VECTORIZE) -fno-math-errno -fno-trapping-math -g $(WARN) -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc

# Debian packages. The build: a C compiler, pkg-config, OpenBLAS and what its
# static link needs (openblas.pc's Libs.private name -lgfortran, which is
# libgfortran-N-dev of the system's gcc; zlib for the examples' data reader).
# The tests add C++, cmocka, python3 with numpy and pytest, and doxygen; the
# demo its data set, gnuplot and python3. `make test` and `make demo` install
# these as root, else stop with the one `apt-get install` line to run.
GCC_MAJOR  := $(or $(shell gcc -dumpversion 2>/dev/null | cut -d. -f1),12)
BUILD_DEBS := gcc libc6-dev make pkg-config libopenblas-dev libgfortran-$(GCC_MAJOR)-dev zlib1g-dev
TEST_DEBS  := $(BUILD_DEBS) g++ libcmocka-dev python3 python3-numpy python3-pytest doxygen \
              python3-pip python3-setuptools python3-wheel \
              $(if $(filter 1,$(VALGRIND)),valgrind)
DEMO_DEBS  := $(BUILD_DEBS) python3 dataset-fashion-mnist gnuplot-nox
# Checks that run only when these are present (each SKIP line names its own):
# the real-data example runs and plots, libFuzzer and TSan, TSan's BLAS.
OPTIONAL_TEST_DEBS := dataset-fashion-mnist gnuplot-nox clang libclang-rt-14-dev libblas-dev python3-torch

# ---- BLAS selection ---------------------------------------------------------
BLAS ?= auto
ifeq ($(BLAS),auto)
  ifeq ($(shell pkg-config --exists openblas 2>/dev/null && echo y),y)
    BLAS := openblas
  else ifneq ($(wildcard /usr/include/x86_64-linux-gnu/cblas.h /usr/include/cblas.h),)
    BLAS := reference
  else
    BLAS := openblas
  endif
endif
ifeq ($(BLAS),openblas)
  BLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null)
  BLAS_LIBS   := $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)
  BLAS_PC     := openblas
else ifeq ($(BLAS),reference)
  # Debian's libblas-dev: netlib BLAS with the cblas interface in libblas.so.3.
  # Link the reference copy by path so the alternatives system cannot swap it.
  REF_DIR     := $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/blas /usr/lib/$(shell gcc -dumpmachine)/blas))
  BLAS_CFLAGS :=
  BLAS_LIBS   := $(if $(REF_DIR),-L$(REF_DIR) -Wl$(comma)-rpath$(comma)$(REF_DIR)) -lblas
  BLAS_PC     := blas-netlib
else
  $(error BLAS must be openblas, reference or auto (got '$(BLAS)'))
endif
LIBS := $(BLAS_LIBS) -lm -lpthread

# ---- build variants ---------------------------------------------------------
# Sanitized and coverage builds keep their own objects, never mixed with -O2 ones.
VARIANT := release
ifeq ($(SANITIZE),1)
  VARIANT := asan
  BASE_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS_SAN := -fsanitize=address,undefined
endif
BUILD := build/$(VARIANT)

ALL_CFLAGS := $(BASE_CFLAGS) $(BLAS_CFLAGS) $(CFLAGS)

# Switching BLAS relinks the library and the tests (the objects do not change).
BLAS_STAMP := build/blas-$(BLAS).stamp
$(BLAS_STAMP):
	@mkdir -p build && rm -f build/blas-*.stamp && touch $@

SRCS := $(wildcard src/*.c src/layers/*.c)
OBJS := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(SRCS))
PIC_OBJS := $(patsubst src/%.c,$(BUILD)/pic/%.o,$(SRCS))

ifeq ($(VARIANT),release)
  LIBOUT := lib
else
  LIBOUT := $(BUILD)/lib
endif
SHLIB  := $(LIBOUT)/libwmanifold.so.$(VERSION)
STLIB  := $(LIBOUT)/libwmanifold.a

.PHONY: all lib deps print-debs test test-c test-docs test-suites check-blas install install-ldconfig uninstall clean demo bench docs help
all: lib
lib: check-blas $(SHLIB) $(LIBOUT)/$(SONAME) $(LIBOUT)/libwmanifold.so $(STLIB) $(LIBOUT)/wmanifold.pc

check-blas:
	@echo "libwmanifold: BLAS = $(BLAS) ($(BLAS_LIBS))"
	@test -n "$(BLAS_LIBS)" || { echo "no BLAS found: sudo apt-get install -y libopenblas-dev"; exit 1; }

deps:
	@.ci/ensure-deps $(TEST_DEBS)

# Every package any target here installs or skips for (.ci/run installs these).
print-debs:
	@echo $(sort $(TEST_DEBS) $(DEMO_DEBS) $(OPTIONAL_TEST_DEBS))

$(BUILD)/obj/%.o: src/%.c $(wildcard src/*.h src/layers/*.h) include/wmanifold.h Makefile | $(BUILD)/obj
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@
$(BUILD)/pic/%.o: src/%.c $(wildcard src/*.h src/layers/*.h) include/wmanifold.h Makefile | $(BUILD)/pic
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -fPIC -fvisibility=hidden -c $< -o $@
$(BUILD)/obj $(BUILD)/pic:
	@mkdir -p $@
ifeq ($(SANITIZE),1)
# The own GEMM kernels (src/gemm_small_body.h) hold blocks of vector
# accumulators in every unrolled variant; ASan's use-after-scope check gives
# each its own stack slot (frames up to 116 KB), which overflows a 128 KiB
# thread stack when the first product (and so the route measurement) runs on
# one (test_manifold's small-stack test). Without it the frames are 2-7 KB,
# as in the release build; heap and global accesses are still checked.
$(BUILD)/obj/gemm_small.o $(BUILD)/pic/gemm_small.o: ALL_CFLAGS += -fno-sanitize-address-use-after-scope
endif

# (no order-only "| lib" prerequisite: `lib` is also the phony target's name)
$(SHLIB): $(PIC_OBJS) src/libwmanifold.map $(BLAS_STAMP)
	@mkdir -p $(LIBOUT)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=src/libwmanifold.map \
	    -Wl,--no-undefined $(LDFLAGS_SAN) -o $@ $(PIC_OBJS) $(LIBS)
$(LIBOUT)/$(SONAME): $(SHLIB)
	ln -sf libwmanifold.so.$(VERSION) $@
$(LIBOUT)/libwmanifold.so: $(LIBOUT)/$(SONAME)
	ln -sf $(SONAME) $@
$(STLIB): $(OBJS)
	@mkdir -p $(LIBOUT)
	rm -f $@ && ar rcs $@ $(OBJS)

# The .pc names the prefix it is installed under, so install writes it afresh.
PC_WRITE = printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCDIR)' '' \
	  'Name: wmanifold' 'Description: neural networks whose weights live on a manifold' \
	  'Version: $(VERSION)' 'Requires.private: $(BLAS_PC)' \
	  'Libs: -L$${libdir} -lwmanifold' 'Libs.private: -lm -lpthread' \
	  'Cflags: -I$${includedir}'
$(LIBOUT)/wmanifold.pc: Makefile
	@mkdir -p $(LIBOUT)
	@printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCDIR)' '' \
	  'Name: wmanifold' 'Description: neural networks whose weights live on a manifold' \
	  'Version: $(VERSION)' 'Requires.private: $(BLAS_PC)' \
	  'Libs: -L$${libdir} -lwmanifold' 'Libs.private: -lm -lpthread' \
	  'Cflags: -I$${includedir}' > $@

# ---- tests (C, cmocka) --------------------------------------------------------
TEST_SRCS := $(wildcard tests/test_*.c)
TEST_BINS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRCS))
TEST_RUN  := $(if $(filter 1,$(VALGRIND)),valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite$(comma)indirect$(comma)possible,)
TEST_LIBS := $(STLIB) $(LIBS) $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

$(BUILD)/tests/%: tests/%.c tests/testutil.h $(STLIB) $(BLAS_STAMP) | $(BUILD)/tests
	$(CC) $(ALL_CFLAGS) -Itests -o $@ $< $(TEST_LIBS) $(LDFLAGS_SAN)
$(BUILD)/tests:
	@mkdir -p $@
# The correctness audit's suites share their reference.
$(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/test_audit_*.c)): tests/audit_ref.h

# Fragments append their own runners to TEST_EXTRA.
TEST_EXTRA :=
-include $(sort $(wildcard examples/*.mk tests/*.mk docs/*.mk python/*.mk))
-include src/mpi/mpi.mk

# Each suite runs with its whole output in $(TEST_LOGS)/NAME.log and prints one
# line (tests/suite.sh); tests/summary.sh prints the total. The C suites are
# one per tests/test_*.c and the README's quickstart; the fragments add theirs
# to TEST_EXTRA. Everything the suites share is built first, so that suites
# running in parallel (make -j2 test) never build the same file.
TEST_LOGS    := $(BUILD)/test-logs
C_SUITES     := $(patsubst tests/%.c,%,$(TEST_SRCS)) quickstart
TEST_PREBUILD = lib $(TEST_BINS) $(BUILD)/quickstart
SUITE_NAME    = $(patsubst test-%,%,$(patsubst suite-c-%,%,$(1)))

test: deps
	@$(MAKE) --no-print-directory test-suites TEST_LABEL="make test" \
	    SUITES="$(addprefix suite-c-,$(C_SUITES)) $(TEST_EXTRA)" PREBUILD="$(TEST_PREBUILD) examples"

test-c:
	@$(MAKE) --no-print-directory test-suites TEST_LABEL="make test-c" \
	    SUITES="$(addprefix suite-c-,$(C_SUITES))" PREBUILD="$(TEST_PREBUILD)"

# (`make test-suites SUITES="test-abi test-install"` runs any chosen few.)
SUITES   ?= $(addprefix suite-c-,$(C_SUITES))
PREBUILD ?= $(TEST_PREBUILD)
test-suites:
	@rm -rf $(TEST_LOGS) && mkdir -p $(TEST_LOGS) && date +%s > $(TEST_LOGS)/.start
	@sh tests/suite.sh $(TEST_LOGS) build sh -c '$(MAKE) --no-print-directory $(PREBUILD) && echo "build: 1 passed, 0 failed"'; \
	if [ "$$(cut -d' ' -f1 $(TEST_LOGS)/build.result)" = 0 ]; then \
	    $(MAKE) --no-print-directory $(addprefix run-suite/,$(SUITES)); fi; \
	sh tests/summary.sh $(TEST_LOGS) "$(or $(TEST_LABEL),make test-suites)" build $(foreach t,$(SUITES),$(call SUITE_NAME,$(t)))

run-suite/%:
	@sh tests/suite.sh $(TEST_LOGS) $(call SUITE_NAME,$*) $(MAKE) --no-print-directory $*

suite-c-%: $(BUILD)/tests/%
	@CMOCKA_MESSAGE_OUTPUT=stdout $(TEST_RUN) $<

suite-c-quickstart: $(BUILD)/quickstart
	@$(PYTHON) -c "import sys; r=open('README.md').read(); q=open('examples/quickstart.c').read(); sys.exit(0 if q in r else 'README.md does not contain examples/quickstart.c verbatim')" \
	    && echo "ok   README.md quotes examples/quickstart.c verbatim"
	@$(TEST_RUN) $(BUILD)/quickstart && echo "ok   quickstart runs"
	@echo "quickstart: 2 passed, 0 failed"

$(BUILD)/quickstart: examples/quickstart.c $(STLIB) $(BLAS_STAMP)
	@mkdir -p $(BUILD)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(STLIB) $(LIBS) $(LDFLAGS_SAN)

# ---- API reference ------------------------------------------------------------
# Doxygen over the public header; any warning (an undocumented name) fails.
docs:
	@.ci/ensure-deps doxygen
	@rm -rf build/docs && doxygen docs/Doxyfile && echo "API reference: build/docs/html/index.html"

test-docs: docs
	@echo "docs: 1 passed, 0 failed"
TEST_EXTRA += test-docs

# ---- install ------------------------------------------------------------------
# Into the loader's own search path (e.g. /usr/local/lib on Debian) as root,
# install runs ldconfig so that programs find libwmanifold.so.0 at once; for
# any other directory it says how to point programs at it (README: Installing).
# The directories ld.so searches: ldconfig's list, and the built-in /lib, /usr/lib.
# LDCONFIG is what install runs (tests/install_test.sh replaces it by an echo).
LDCONFIG ?= $(firstword $(wildcard /sbin/ldconfig /usr/sbin/ldconfig) ldconfig)
LD_LIST  := $(firstword $(wildcard /sbin/ldconfig /usr/sbin/ldconfig) ldconfig)
LD_DIRS   = $$( { $(LD_LIST) -v -N 2>/dev/null | sed -n 's|^\(/[^:]*\):.*|\1|p'; echo /lib; echo /usr/lib; } \
	      | while read -r d; do readlink -f "$$d"; done)
INSTALLED := $(INCDIR)/wmanifold.h $(INCDIR)/wmanifold.hpp $(LIBDIR)/libwmanifold.so.$(VERSION) \
	     $(LIBDIR)/$(SONAME) $(LIBDIR)/libwmanifold.so $(LIBDIR)/libwmanifold.a $(LIBDIR)/pkgconfig/wmanifold.pc

install: lib
	install -d $(DESTDIR)$(INCDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 644 include/wmanifold.h include/wmanifold.hpp $(DESTDIR)$(INCDIR)/
	install -m 755 lib/libwmanifold.so.$(VERSION) $(DESTDIR)$(LIBDIR)/
	ln -sf libwmanifold.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libwmanifold.so
	install -m 644 lib/libwmanifold.a $(DESTDIR)$(LIBDIR)/
	$(PC_WRITE) > $(DESTDIR)$(LIBDIR)/pkgconfig/wmanifold.pc
	@$(MAKE) --no-print-directory install-ldconfig

# (its own target so that `make install` shows what it decided)
install-ldconfig:
	@if [ -n "$(DESTDIR)" ]; then \
	    echo "libwmanifold: staged under DESTDIR=$(DESTDIR); ldconfig is the package manager's job"; \
	elif echo "$(LD_DIRS)" | tr ' ' '\n' | grep -qx "$$(readlink -f $(LIBDIR))"; then \
	    if [ "$$(id -u)" = 0 ]; then echo "$(LDCONFIG)"; $(LDCONFIG); \
	    else echo "libwmanifold: $(LIBDIR) is on the loader's path; run ldconfig as root to refresh its cache"; fi; \
	else \
	    echo "libwmanifold: $(LIBDIR) is not on the loader's search path; programs need one of"; \
	    echo "    cc prog.c \$$(pkg-config --cflags --libs wmanifold) -Wl,-rpath,$(LIBDIR)"; \
	    echo "    LD_LIBRARY_PATH=$(LIBDIR) ./prog"; \
	    echo "  (and PKG_CONFIG_PATH=$(LIBDIR)/pkgconfig for pkg-config to find wmanifold.pc)"; \
	fi

# Removes exactly the files install writes (the directories stay: they may
# be shared, like /usr/local/include).
uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && \
	    echo "$(LD_DIRS)" | tr ' ' '\n' | grep -qx "$$(readlink -f $(LIBDIR) 2>/dev/null)"; then \
	    echo "$(LDCONFIG)"; $(LDCONFIG); fi

# ---- help -----------------------------------------------------------------------
help:
	@echo "libwmanifold $(VERSION) -- make targets (variables: VAR=value on the command line)"
	@echo ""
	@echo "  make [all|lib]       lib/libwmanifold.so.$(VERSION) (+ soname links), lib/libwmanifold.a, lib/wmanifold.pc"
	@echo "                       BLAS=openblas|reference (default: OpenBLAS if pkg-config finds it)"
	@echo "  make test            every suite: one line each, then 'N passed, M failed, K skipped';"
	@echo "                       logs in build/<variant>/test-logs/; as root installs what it needs"
	@echo "  make test-c          the C suites only;  SANITIZE=1 (ASan+UBSan), VALGRIND=1 (memcheck)"
	@echo "  make test-suites SUITES='test-abi suite-c-test_io'   chosen suites only"
	@echo "  make demo            Fashion-MNIST: rotation for seeds DEMO_SEEDS='$(DEMO_SEEDS)', noise and torus"
	@echo "                       for DEMO_OTHER_SEEDS='$(DEMO_OTHER_SEEDS)'; into OUT=$(DEMO_OUT) (never over tracked files)"
	@echo "  make results RUN=dir record a demo run in docs/results/ and regenerate docs/results.md"
	@echo "  make demo-cnn        the CNN on rotated Fashion-MNIST, into CNN_OUT=$(CNN_OUT)"
	@echo "  make examples        build the example programs into $(BUILD)/examples"
	@echo "  make install         PREFIX=$(PREFIX) (LIBDIR, INCDIR) DESTDIR=; runs ldconfig as root in the loader's path"
	@echo "  make uninstall       the same variables: removes what install wrote"
	@echo "  make docs            the API reference (Doxygen) in build/docs/html"
	@echo "  make bench | bench-quick   speed against PyTorch and the GEMM floor (build/bench.md)"
	@echo "  make fuzz [FUZZ_SECONDS=60] | fuzz-load | fuzz-api    libFuzzer (docs/reliability.md)"
	@echo "  make coverage        gcov/lcov coverage of src/ from the C suites"
	@echo "  make deps            install (as root) or name the Debian packages make test needs:"
	@echo "                       $(TEST_DEBS)"
	@echo "  make clean           remove build/ and lib/"

clean:
	rm -rf build lib/libwmanifold.* lib/wmanifold.pc
