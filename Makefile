# libwmanifold -- the one build entry.
#
#   make                 build lib/libwmanifold.{so,a} and lib/wmanifold.pc
#   make test            build and run every test suite
#   make demo            the flagship experiment on Fashion-MNIST
#   make install PREFIX=/usr/local DESTDIR=
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

# Packages the build and the test suite need on Debian.
BUILD_DEBS := libopenblas-dev libcmocka-dev pkg-config zlib1g-dev

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

.PHONY: all lib deps test test-c test-docs check-blas install uninstall clean demo bench docs
all: lib
lib: check-blas $(SHLIB) $(LIBOUT)/$(SONAME) $(LIBOUT)/libwmanifold.so $(STLIB) $(LIBOUT)/wmanifold.pc

check-blas:
	@echo "libwmanifold: BLAS = $(BLAS) ($(BLAS_LIBS))"
	@test -n "$(BLAS_LIBS)" || { echo "no BLAS found: sudo apt-get install -y libopenblas-dev"; exit 1; }

deps:
	@.ci/ensure-deps $(BUILD_DEBS)

$(BUILD)/obj/%.o: src/%.c $(wildcard src/*.h src/layers/*.h) include/wmanifold.h Makefile | $(BUILD)/obj
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@
$(BUILD)/pic/%.o: src/%.c $(wildcard src/*.h src/layers/*.h) include/wmanifold.h Makefile | $(BUILD)/pic
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -fPIC -fvisibility=hidden -c $< -o $@
$(BUILD)/obj $(BUILD)/pic:
	@mkdir -p $@

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

# Fragments append their own runners to TEST_EXTRA.
TEST_EXTRA :=
-include $(sort $(wildcard examples/*.mk tests/*.mk docs/*.mk python/*.mk))
-include src/mpi/mpi.mk

test: deps
	@$(MAKE) --no-print-directory test-c $(TEST_EXTRA)

test-c: lib $(TEST_BINS) $(BUILD)/quickstart
	@set -e; for t in $(TEST_BINS); do echo "== $$t"; \
	    CMOCKA_MESSAGE_OUTPUT=stdout $(TEST_RUN) $$t; done
	@echo "== quickstart (the README's example, which must match examples/quickstart.c)"
	@$(PYTHON) -c "import sys; r=open('README.md').read(); q=open('examples/quickstart.c').read(); sys.exit(0 if q in r else 'README.md does not contain examples/quickstart.c verbatim')"
	@$(TEST_RUN) $(BUILD)/quickstart

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
install: lib
	install -d $(DESTDIR)$(INCDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 644 include/wmanifold.h include/wmanifold.hpp $(DESTDIR)$(INCDIR)/
	install -m 755 lib/libwmanifold.so.$(VERSION) $(DESTDIR)$(LIBDIR)/
	ln -sf libwmanifold.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libwmanifold.so
	install -m 644 lib/libwmanifold.a $(DESTDIR)$(LIBDIR)/
	$(PC_WRITE) > $(DESTDIR)$(LIBDIR)/pkgconfig/wmanifold.pc

uninstall:
	rm -f $(DESTDIR)$(INCDIR)/wmanifold.h $(DESTDIR)$(INCDIR)/wmanifold.hpp $(DESTDIR)$(LIBDIR)/libwmanifold.* \
	      $(DESTDIR)$(LIBDIR)/pkgconfig/wmanifold.pc

clean:
	rm -rf build lib/libwmanifold.* lib/wmanifold.pc
