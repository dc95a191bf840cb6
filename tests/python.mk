# tests/python.mk -- "use it from anywhere": the Python binding, C++ and the
# tutorial's programs, the installed library, and the exported ABI.
# Included by the top-level Makefile, which runs $(TEST_EXTRA) after the C tests.
#
#   make test-python     pytest tests/python (the ctypes binding, bit for bit vs C)
#   make test-cpp        build examples/cpp with -std=c++17 -Werror, run them
#   make test-tutorial   build and run examples/tutorial, check docs/tutorial.md
#   make test-install    make install into a temp prefix and DESTDIR, build outside
#   make test-abi        exported symbols == the header's functions, soname

.PHONY: test-python test-cpp test-tutorial test-install test-abi

# ---- Python ---------------------------------------------------------------------
# The binding loads exactly the library this build made; the bit-for-bit
# test compiles its C reference against that same file.
PY_TEST_ENV := PYTHONDONTWRITEBYTECODE=1 WMANIFOLD_LIB=$(abspath $(SHLIB)) CC="$(CC)" WM_TEST_LDFLAGS="$(LDFLAGS_SAN)"
ifeq ($(SANITIZE),1)
  # python3 is not instrumented: the ASan runtime has to be loaded first, and
  # the interpreter's own allocations are not ours to report.
  PY_TEST_ENV += LD_PRELOAD="$$($(CC) -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0
endif

test-python: lib
	@.ci/ensure-deps python3-numpy python3-pytest
	$(PY_TEST_ENV) $(PYTHON) -m pytest -q -rs -p no:cacheprovider tests/python

# ---- C++ ------------------------------------------------------------------------
CXX_EX_FLAGS := -std=c++17 -O2 -g -Wall -Wextra -Wpedantic -Werror -Iinclude $(LDFLAGS_SAN)
CPP_SRCS := $(wildcard examples/cpp/*.cpp)
CPP_BINS := $(patsubst examples/cpp/%.cpp,$(BUILD)/examples/cpp/%,$(CPP_SRCS))

$(BUILD)/examples/cpp/%: examples/cpp/%.cpp $(wildcard examples/cpp/*.hpp) include/wmanifold.h $(STLIB)
	@mkdir -p $(@D)
	$(CXX) $(CXX_EX_FLAGS) -o $@ $< $(STLIB) $(LIBS)

test-cpp: lib $(CPP_BINS)
	@pass=0; fail=0; for t in $(CPP_BINS); do echo "== $$t"; \
	    if $(TEST_RUN) $$t; then pass=$$((pass+1)); else fail=$$((fail+1)); echo "FAIL $$t"; fi; \
	    done; echo "cpp: $$pass passed, $$fail failed"; [ $$fail -eq 0 ]

# ---- tutorial -------------------------------------------------------------------
# Built as a user would: the public header only, strict C11.
TUT_CFLAGS := -std=c11 -O2 -g -Wall -Wextra -Wpedantic -Werror -Iinclude $(LDFLAGS_SAN)
TUT_SRCS := $(wildcard examples/tutorial/*.c)
TUT_BINS := $(patsubst examples/tutorial/%.c,$(BUILD)/examples/tutorial/%,$(TUT_SRCS))

$(BUILD)/examples/tutorial/%: examples/tutorial/%.c include/wmanifold.h $(STLIB)
	@mkdir -p $(@D)
	$(CC) $(TUT_CFLAGS) -o $@ $< $(STLIB) $(LIBS)

test-tutorial: lib $(TUT_BINS)
	@RUN="$(TEST_RUN)" sh tests/tutorial_test.sh $(BUILD)/examples/tutorial

# ---- install and ABI --------------------------------------------------------------
test-install: lib
	@MAKE="$(MAKE)" CC="$(CC)" CXX="$(CXX)" sh tests/install_test.sh

test-abi: lib
	@CC="$(CC)" CXX="$(CXX)" sh tests/abi_test.sh $(LIBOUT)/libwmanifold.so include/wmanifold.h

TEST_EXTRA += test-python test-cpp test-tutorial test-install test-abi
