# src/mpi/mpi.mk -- libwmanifold_mpi, the data-parallel companion library
# (issue 17, include/wmanifold_mpi.h). Included by the top-level Makefile,
# which defines BUILD, LIBOUT, VERSION*, STLIB, SHLIB, LIBS, ALL_CFLAGS,
# LDFLAGS_SAN, PREFIX, LIBDIR, INCDIR, DESTDIR and TEST_EXTRA.
#
#   make / make lib      also builds lib/libwmanifold_mpi.{so,a} and
#                        lib/wmanifold_mpi.pc when mpicc is found (MPI_CC=...)
#   make test-mpi        the MPI tests on 2 ranks and the example's check
#                        (part of `make test`; installs Open MPI when root,
#                        else says why it skipped)
#   make mpi-example     build $(BUILD)/examples/mpi_rotation
#   make install / uninstall   include the companion library when it was built
#
# The core library never sees MPI: this library links against
# libwmanifold.so and uses only its exported functions (-Wl,--no-undefined
# against the shared core proves it at link time).

MPI_CC    ?= mpicc
MPI_FOUND := $(shell command -v $(MPI_CC) 2>/dev/null)
MPI_DEBS  := openmpi-bin libopenmpi-dev
MPI_NP    ?= 2
# Root needs Open MPI's explicit consent; the 2-core machine needs oversubscribe.
MPIRUN    ?= mpirun --oversubscribe $(if $(filter 0,$(shell id -u)),--allow-run-as-root) -np
# pkg-config name of the MPI C bindings, for wmanifold_mpi.pc's Requires.
MPI_PCNAME := $(firstword $(foreach p,mpi-c ompi-c mpich,$(if $(shell pkg-config --exists $(p) 2>/dev/null && echo y),$(p))))

MPI_SONAME := libwmanifold_mpi.so.$(VERSION_MAJOR)
MPI_SHLIB  := $(LIBOUT)/libwmanifold_mpi.so.$(VERSION)
MPI_STLIB  := $(LIBOUT)/libwmanifold_mpi.a
MPI_PC     := $(LIBOUT)/wmanifold_mpi.pc
MPI_DIR    := $(BUILD)/mpi
MPI_LIBS   := $(MPI_SHLIB) $(LIBOUT)/$(MPI_SONAME) $(LIBOUT)/libwmanifold_mpi.so $(MPI_STLIB) $(MPI_PC)
MPI_DEPS   := src/mpi/wmanifold_mpi.c include/wmanifold_mpi.h include/wmanifold.h src/mpi/mpi.mk

.PHONY: mpi-lib test-mpi test-mpi-run mpi-example mpi-install mpi-uninstall mpi-clean

ifneq ($(MPI_FOUND),)
lib: $(MPI_LIBS)
install: mpi-install
endif
mpi-lib: $(MPI_LIBS)
uninstall: mpi-uninstall
clean: mpi-clean

$(MPI_DIR)/pic/%.o: src/mpi/%.c $(MPI_DEPS)
	@mkdir -p $(@D)
	$(MPI_CC) $(ALL_CFLAGS) -fPIC -fvisibility=hidden -c $< -o $@
$(MPI_DIR)/obj/%.o: src/mpi/%.c $(MPI_DEPS)
	@mkdir -p $(@D)
	$(MPI_CC) $(ALL_CFLAGS) -c $< -o $@

$(MPI_SHLIB): $(MPI_DIR)/pic/wmanifold_mpi.o src/mpi/libwmanifold_mpi.map $(LIBOUT)/libwmanifold.so
	$(MPI_CC) -shared -Wl,-soname,$(MPI_SONAME) -Wl,--version-script=src/mpi/libwmanifold_mpi.map \
	    -Wl,--no-undefined $(LDFLAGS_SAN) -o $@ $< -L$(LIBOUT) -lwmanifold
$(LIBOUT)/$(MPI_SONAME): $(MPI_SHLIB)
	ln -sf libwmanifold_mpi.so.$(VERSION) $@
$(LIBOUT)/libwmanifold_mpi.so: $(LIBOUT)/$(MPI_SONAME)
	ln -sf $(MPI_SONAME) $@
$(MPI_STLIB): $(MPI_DIR)/obj/wmanifold_mpi.o
	rm -f $@ && ar rcs $@ $<

MPI_PC_WRITE = printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCDIR)' '' \
	  'Name: wmanifold_mpi' 'Description: data-parallel training of libwmanifold nets on MPI' \
	  'Version: $(VERSION)' 'Requires: wmanifold $(MPI_PCNAME)' \
	  'Libs: -L$${libdir} -lwmanifold_mpi' 'Cflags: -I$${includedir}'
$(MPI_PC): src/mpi/mpi.mk
	@mkdir -p $(@D)
	@$(MPI_PC_WRITE) > $@

mpi-install: $(MPI_LIBS)
	install -d $(DESTDIR)$(INCDIR) $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 644 include/wmanifold_mpi.h $(DESTDIR)$(INCDIR)/
	install -m 755 $(MPI_SHLIB) $(DESTDIR)$(LIBDIR)/
	ln -sf libwmanifold_mpi.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(MPI_SONAME)
	ln -sf $(MPI_SONAME) $(DESTDIR)$(LIBDIR)/libwmanifold_mpi.so
	install -m 644 $(MPI_STLIB) $(DESTDIR)$(LIBDIR)/
	$(MPI_PC_WRITE) > $(DESTDIR)$(LIBDIR)/pkgconfig/wmanifold_mpi.pc

mpi-uninstall:
	rm -f $(DESTDIR)$(INCDIR)/wmanifold_mpi.h $(DESTDIR)$(LIBDIR)/libwmanifold_mpi.* \
	      $(DESTDIR)$(LIBDIR)/pkgconfig/wmanifold_mpi.pc

mpi-clean:
	rm -f lib/libwmanifold_mpi.* lib/wmanifold_mpi.pc

# ---- tests and the example ------------------------------------------------------
# Statically linked, so they run from the build tree without LD_LIBRARY_PATH.
MPI_TEST_BIN := $(MPI_DIR)/test_mpi
MPI_EX_BIN   := $(BUILD)/examples/mpi_rotation

$(MPI_TEST_BIN): tests/mpi/test_mpi.c $(MPI_STLIB) $(STLIB) $(BLAS_STAMP)
	@mkdir -p $(@D)
	$(MPI_CC) $(ALL_CFLAGS) -o $@ $< $(MPI_STLIB) $(STLIB) $(LIBS) $(LDFLAGS_SAN)

$(MPI_EX_BIN): examples/mpi_rotation.c examples/common.c examples/idx.c examples/common.h \
               examples/idx.h include/wmanifold_mpi.h $(MPI_STLIB) $(STLIB)
	@mkdir -p $(@D)
	$(MPI_CC) $(ALL_CFLAGS) -Iexamples -o $@ examples/mpi_rotation.c examples/common.c examples/idx.c \
	    $(MPI_STLIB) $(STLIB) $(LIBS) -lz $(LDFLAGS_SAN)

mpi-example: $(MPI_EX_BIN)

# Shared-memory transfers without CMA (process_vm_readv is often denied in
# containers, where Open MPI then prints errors). Under ASan, leaks are
# checked with full stacks so that Open MPI's own (tests/mpi/lsan.supp) can
# be told from ours.
MPI_ENV := OMPI_MCA_btl_vader_single_copy_mechanism=none \
           $(if $(filter 1,$(SANITIZE)),ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0 \
             LSAN_OPTIONS=suppressions=$(CURDIR)/tests/mpi/lsan.supp)

# A collective that never matches (a bug) hangs every rank: fail instead.
MPI_TIMEOUT := $(if $(shell command -v timeout 2>/dev/null),timeout 900)

# Installs Open MPI first when root, then a fresh make that sees mpicc.
test-mpi:
	@if { [ -z "$(MPI_FOUND)" ] || ! command -v mpirun >/dev/null 2>&1; } && [ "$$(id -u)" != 0 ]; then \
	    echo "mpi: SKIP ($(MPI_CC) or mpirun not found and not root: sudo apt-get install -y $(MPI_DEBS))"; \
	    echo "mpi: 0 passed, 0 failed (skipped)"; exit 0; fi; \
	.ci/ensure-deps $(MPI_DEBS) && $(MAKE) --no-print-directory test-mpi-run

test-mpi-run: lib $(MPI_LIBS) $(MPI_TEST_BIN) $(MPI_EX_BIN)
	@if ldd $(SHLIB) | grep -qi mpi; then echo "FAIL the core library links MPI:"; ldd $(SHLIB); exit 1; fi
	@if nm -D $(SHLIB) | grep -qiE ' (P?MPI|ompi)_'; then echo "FAIL the core library refers to MPI symbols"; exit 1; fi
	@echo "== $(MPIRUN) $(MPI_NP) $(MPI_TEST_BIN)"
	@$(MPI_ENV) $(MPI_TIMEOUT) $(MPIRUN) $(MPI_NP) $(MPI_TEST_BIN)
	@echo "== $(MPIRUN) 3 $(MPI_TEST_BIN) (3 ranks: uneven split, an empty rank)"
	@$(MPI_ENV) $(MPI_TIMEOUT) $(MPIRUN) 3 $(MPI_TEST_BIN)
	@sh tests/mpi/abi_mpi.sh $(LIBOUT)/libwmanifold_mpi.so include/wmanifold_mpi.h "$(CXX)"
	@$(MPI_ENV) MPIRUN="$(MPIRUN)" sh tests/mpi/example_mpi.sh $(MPI_EX_BIN) $(EX_DATA)
	@$(if $(filter release,$(VARIANT)),$(MPI_ENV) MAKE="$(MAKE)" MPIRUN="$(MPIRUN)" sh tests/mpi/install_mpi.sh,echo "install-mpi: SKIP (the $(VARIANT) build is not installed)")

TEST_EXTRA += test-mpi
