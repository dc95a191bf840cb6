# examples/cpp.mk -- the C++ wrapper include/wmanifold.hpp: its examples are
# part of `make examples`, and its test is part of `make test`.
# Included by the top-level Makefile (STLIB, LIBS, BUILD, TEST_RUN, TEST_EXTRA);
# the rule that builds $(BUILD)/examples/cpp/* is in tests/python.mk.
#
#   make test-hpp      build tests/cpp/test_hpp.cpp (-std=c++17 -Werror) and run it, and
#                      as C++11, 14 and 20 (test-hpp-stds, with wmanifold.h alone as C++98-20);
#                      check that the header wraps every C call that creates a handle

.PHONY: test-hpp test-hpp-stds cxx-deps

CPP_EXAMPLE_BINS := $(patsubst examples/cpp/%.cpp,$(BUILD)/examples/cpp/%,$(wildcard examples/cpp/*.cpp))
# The C++ compiler is a package of its own on Debian (g++): install it, or say
# how, before building (as the C side's `deps` does for its packages).
cxx-deps:
	$(if $(filter g++ c++,$(CXX)),@.ci/ensure-deps g++)
$(CPP_EXAMPLE_BINS) $(BUILD)/tests/cpp/test_hpp: | cxx-deps

examples: $(CPP_EXAMPLE_BINS)

HPP_CXXFLAGS := -std=c++17 -O1 -g -Wall -Wextra -Wpedantic -Wshadow -Werror -Iinclude $(LDFLAGS_SAN)

$(BUILD)/tests/cpp/test_hpp: tests/cpp/test_hpp.cpp include/wmanifold.hpp include/wmanifold.h $(STLIB)
	@mkdir -p $(@D)
	$(CXX) $(HPP_CXXFLAGS) -o $@ $< $(STLIB) $(LIBS)

# The wrapper promises C++11 and later: its test also runs built as each other
# standard; the plain C header compiles alone as every C++ standard (98 too).
HPP_STDS     := c++11 c++14 c++20
HPP_STD_BINS := $(patsubst %,$(BUILD)/tests/cpp/test_hpp_%,$(HPP_STDS))
$(HPP_STD_BINS): $(BUILD)/tests/cpp/test_hpp_%: tests/cpp/test_hpp.cpp include/wmanifold.hpp include/wmanifold.h $(STLIB) | cxx-deps
	@mkdir -p $(@D)
	$(CXX) $(filter-out -std=%,$(HPP_CXXFLAGS)) -std=$* -o $@ $< $(STLIB) $(LIBS)

test-hpp-stds: lib $(HPP_STD_BINS)
	@for std in c++98 c++11 c++14 c++17 c++20; do \
	    printf '#include "wmanifold.h"\nint main() { return wm_version() == 0; }\n' | \
	    $(CXX) -std=$$std -Wall -Wextra -Wpedantic -Werror -Iinclude -x c++ -fsyntax-only - \
	    || { echo "FAIL include/wmanifold.h does not compile as $$std"; exit 1; }; done
	@for t in $(HPP_STD_BINS); do echo "== $$t"; $(TEST_RUN) $$t || exit 1; done

# The header's list of constructors must name every `wm_status wm_*(T **out, ...)`
# the C header declares (a new one would otherwise throw with a vague name).
test-hpp: lib $(BUILD)/tests/cpp/test_hpp test-hpp-stds
	@missing=""; for f in $$($(CC) -E -P -x c include/wmanifold.h | tr -s ' \n' ' ' | \
	    grep -oE 'wm_status wm_[a-z0-9_]+ ?\( ?wm_[a-z_]+ ?\*\*' | grep -oE 'wm_[a-z0-9_]+ ?\(' | tr -d ' ('); do \
	    grep -q "\"$$f\"" include/wmanifold.hpp || missing="$$missing $$f"; done; \
	if [ -n "$$missing" ]; then echo "FAIL include/wmanifold.hpp does not wrap:$$missing"; \
	    echo "hpp: 0 passed, 1 failed"; exit 1; fi
	@$(TEST_RUN) $(BUILD)/tests/cpp/test_hpp

TEST_EXTRA += test-hpp
