# python/python.mk -- installing the Python package (python/, package wmanifold).
# Included by the top-level Makefile; tests/python.mk runs its tests.
#
#   make install-python      pip install the package, offline, with Debian's setuptools:
#                            into the active virtual environment when PYTHON is a venv's
#                            python, else into $(PYTHON_SITE) under PREFIX
#   make uninstall-python    remove it again
#
# The package is a ctypes binding: it finds the library make install put in
# place by its soname (libwmanifold.so.0), so install both.

.PHONY: install-python uninstall-python

PYTHON_DEBS := python3-pip python3-setuptools python3-wheel python3-numpy
# Whether $(PYTHON) runs inside a virtual environment (then pip installs there).
PYTHON_IN_VENV = $(shell $(PYTHON) -c 'import sys; print(int(sys.prefix != sys.base_prefix))' 2>/dev/null)
# Outside a venv: PREFIX's site directory, on Debian's sys.path for /usr/local
# (another prefix needs PYTHONPATH=$(PYTHON_SITE)). pip's --target skips
# Debian's "externally managed" guard, which is meant for pip installing into
# /usr itself.
PYTHON_SITE ?= $(PREFIX)/lib/python$(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)/dist-packages

# --no-build-isolation: build with the installed setuptools, download nothing;
# --no-index: never reach for PyPI (numpy must come from Debian's python3-numpy).
# Built from a copy, so pip leaves no build/ or *.egg-info in the tree.
install-python:
	@.ci/ensure-deps $(PYTHON_DEBS)
	@set -e; src=$$(mktemp -d); trap 'rm -rf "$$src"' EXIT; cp -R python/. "$$src"; \
	if [ "$(PYTHON_IN_VENV)" = 1 ]; then \
	    echo "pip install wmanifold into the virtual environment of $(PYTHON)"; \
	    $(PYTHON) -m pip install -q --root-user-action=ignore --no-build-isolation --no-index "$$src"; \
	else \
	    echo "pip install wmanifold into $(DESTDIR)$(PYTHON_SITE)"; \
	    $(PYTHON) -m pip install -q --root-user-action=ignore --no-build-isolation --no-index --no-deps --upgrade \
	        --target "$(DESTDIR)$(PYTHON_SITE)" "$$src"; \
	    $(PYTHON) -c 'import numpy' || { echo "install-python: numpy is missing (apt-get install python3-numpy)"; exit 1; }; \
	    case ":$$($(PYTHON) -c 'import sys; print(":".join(sys.path))'):" in \
	        *":$(PYTHON_SITE):"*) ;; \
	        *) echo "install-python: $(PYTHON_SITE) is not on $(PYTHON)'s path: set PYTHONPATH=$(PYTHON_SITE)";; \
	    esac; \
	fi

uninstall-python:
	@if [ "$(PYTHON_IN_VENV)" = 1 ]; then $(PYTHON) -m pip uninstall -q -y wmanifold; \
	else rm -rf "$(DESTDIR)$(PYTHON_SITE)/wmanifold" "$(DESTDIR)$(PYTHON_SITE)"/wmanifold-*.dist-info; fi
