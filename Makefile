# ztask: one non-recursive GNU Makefile (variants re-enter it with VARIANT=).
#
#   make                build build/release/bin/{ztask-master,ztask-worker,ztask}
#   make test           unit + end-to-end suites (prints "N passed, N failed"),
#                       and as root the multi-host test (make test-netns)
#   make asan|tsan      the same suite on sanitizer builds under build/<variant>/
#   make memcheck       every unit suite under valgrind
#   make check-layers   the include rules of docs/architecture.md (Layers)
#   make demo           installs missing packages, then a local cluster:
#                       master + 2 workers, a 1,000-task job
#   make install        PREFIX=/usr/local DESTDIR=   (make uninstall: the same files):
#                       programs, plugin header, example plugin, man pages,
#                       bash/zsh completion, systemd units (made for BINDIR)
#   make man            build/<variant>/man/*.1 from the programs' --help (help2man)
#   make dist           build/ztask-VERSION.tar.gz, which builds without git
#   fuzz, chaos, bench: mk/fuzz.mk, mk/chaos.mk, mk/bench.mk
#
# Nothing here installs packages except `make demo` (the README's first
# command on a fresh machine): a goal that needs a missing library stops at
# once, naming it and scripts/install-deps.sh. WERROR=0 builds without
# -Werror (for packagers on other compilers); CI and development keep it.
# There is no `make format`: the code's hand-aligned comments and mixed
# initialiser spacing match no clang-format 14 setting.

VARIANT ?= release
BUILD   := build/$(VARIANT)
PREFIX  ?= /usr/local
CC      ?= cc
WERROR  ?= 1

# ---- libraries: found by pkg-config, or the goal stops at once ----
PKGS       := libzmq libsodium libcjson sqlite3 libmicrohttpd
TEST_PKGS  := check
DEB_libzmq := libzmq3-dev
DEB_libsodium := libsodium-dev
DEB_libcjson := libcjson-dev
DEB_sqlite3 := libsqlite3-dev
DEB_libmicrohttpd := libmicrohttpd-dev
DEB_check  := check
# Goals that compile nothing (demo installs first, then re-enters make).
NOLIB_GOALS := clean demo dist uninstall check-layers test-compose test-swarm lint-deploy bench-peers
TEST_GOALS  := test test-build unit e2e asan tsan memcheck $(BUILD)/tests/%
ifneq ($(if $(MAKECMDGOALS),$(filter-out $(NOLIB_GOALS),$(MAKECMDGOALS)),all),)
  NEEDED := $(PKGS) $(if $(filter $(TEST_GOALS),$(MAKECMDGOALS)),$(TEST_PKGS))
  DEB_NEEDED = $(foreach p,$(1),$(DEB_$(p)))
  ifeq ($(shell command -v pkg-config),)
    $(error pkg-config is not installed, so $(NEEDED) cannot be found (Debian: pkg-config $(call DEB_NEEDED,$(NEEDED))); run scripts/install-deps.sh)
  endif
  MISSING := $(shell for p in $(NEEDED); do pkg-config --exists $$p || echo $$p; done)
  ifneq ($(MISSING),)
    $(error missing pkg-config library: $(MISSING) (Debian: $(call DEB_NEEDED,$(MISSING))); run scripts/install-deps.sh)
  endif
endif
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   := $(shell pkg-config --libs check 2>/dev/null)

# ---- flags per variant ----
WARN    := -Wall -Wextra -Wformat=2 $(if $(filter 1,$(WERROR)),-Werror)
CFLAGS_release := -O2
CFLAGS_asan    := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
CFLAGS_tsan    := -O1 -fsanitize=thread
# fuzz: clang only (make fuzz sets CC; mk/fuzz.mk); UB must abort, or libFuzzer never sees it.
CFLAGS_fuzz    := -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
                  -fno-omit-frame-pointer
LDFLAGS_asan   := -fsanitize=address,undefined
LDFLAGS_tsan   := -fsanitize=thread
LDFLAGS_fuzz   := -fsanitize=address,undefined

ALL_CFLAGS := -std=c11 -D_GNU_SOURCE -g -MMD -MP $(WARN) $(CFLAGS_$(VARIANT)) \
              -Iinclude $(PKG_CFLAGS) $(CFLAGS)
ALL_LDFLAGS := $(LDFLAGS_$(VARIANT)) $(LDFLAGS)
LIBS := $(PKG_LIBS) -lpthread -ldl -lm

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

# The version every program prints: `git describe` of this git tree, else
# the VERSION file `make dist` writes into its tarball (a tarball has no
# .git), else 0.1.0. The sources that use it get it as ZTASK_VERSION and
# are rebuilt when it changes: the stamp is rewritten only then.
ZTASK_VERSION := $(shell test -e .git && git describe --tags --always --dirty 2>/dev/null \
                   || cat VERSION 2>/dev/null || echo 0.1.0)
VERSION_SRC := $(shell grep -l ZTASK_VERSION common/*.c proto/*.c master/*.c worker/*.c cli/*.c)
$(BUILD)/version.stamp: FORCE
	@mkdir -p $(dir $@)
	@echo '$(ZTASK_VERSION)' | cmp -s - $@ || echo '$(ZTASK_VERSION)' >$@
$(call obj,$(VERSION_SRC)): $(BUILD)/version.stamp
$(call obj,$(VERSION_SRC)): ALL_CFLAGS += -DZTASK_VERSION='"$(ZTASK_VERSION)"'
.PHONY: FORCE
FORCE:

# ---- the programs: one library per directory, main.c apart ----
COMMON_SRC := $(wildcard common/*.c) $(wildcard proto/*.c)
MASTER_SRC := $(filter-out master/main.c,$(wildcard master/*.c))
WORKER_SRC := $(filter-out worker/main.c,$(wildcard worker/*.c))
CLI_SRC    := $(filter-out cli/main.c,$(wildcard cli/*.c))

COMMON_LIB := $(BUILD)/lib/libztcommon.a
MASTER_LIB := $(BUILD)/lib/libztmaster.a
WORKER_LIB := $(BUILD)/lib/libztworker.a
CLI_LIB    := $(BUILD)/lib/libztcli.a
ALL_LIBS   := $(MASTER_LIB) $(WORKER_LIB) $(CLI_LIB) $(COMMON_LIB)

BINS := $(BUILD)/bin/ztask-master $(BUILD)/bin/ztask-worker $(BUILD)/bin/ztask
PLUGIN := $(BUILD)/lib/libmytasks.so

UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
E2E_SRC   := $(wildcard tests/e2e/test_*.c)
E2E_BINS  := $(patsubst tests/e2e/%.c,$(BUILD)/tests/e2e_%,$(E2E_SRC))
E2E_LIB_SRC := $(filter-out tests/e2e/test_%.c,$(wildcard tests/e2e/*.c))

.PHONY: all test test-build unit e2e asan tsan memcheck demo install uninstall dist clean check-layers
.DEFAULT_GOAL := all

all: $(BINS) $(PLUGIN)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/obj/examples/plugin/%.o: examples/plugin/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fPIC -c $< -o $@

# The dashboard's files (master/web/) go into the master as C arrays
# (scripts/embed-assets.sh: sh and od, nothing fetched).
WEB_ASSETS := $(sort $(wildcard master/web/*))
$(BUILD)/gen/web_assets.c: $(WEB_ASSETS) scripts/embed-assets.sh
	@mkdir -p $(dir $@)
	scripts/embed-assets.sh $(WEB_ASSETS) >$@.tmp && mv $@.tmp $@
$(BUILD)/obj/gen/web_assets.o: $(BUILD)/gen/web_assets.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(COMMON_LIB): $(call obj,$(COMMON_SRC))
$(MASTER_LIB): $(call obj,$(MASTER_SRC)) $(BUILD)/obj/gen/web_assets.o
$(WORKER_LIB): $(call obj,$(WORKER_SRC))
$(CLI_LIB):    $(call obj,$(CLI_SRC))
$(ALL_LIBS):
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/bin/ztask-master: $(call obj,master/main.c) $(MASTER_LIB) $(COMMON_LIB)
$(BUILD)/bin/ztask-worker: $(call obj,worker/main.c) $(WORKER_LIB) $(COMMON_LIB)
$(BUILD)/bin/ztask:        $(call obj,cli/main.c) $(CLI_LIB) $(COMMON_LIB)
$(BINS):
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(PLUGIN): $(call obj,examples/plugin/mytasks.c)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -shared -o $@ $^

# ---- tests: one binary per suite (tests/ztest.h registers their tests) ----
$(BUILD)/tests/test_%: $(call obj,tests/unit/test_%.c) $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(LIBS)

$(BUILD)/tests/e2e_test_%: $(call obj,tests/e2e/test_%.c) $(call obj,$(E2E_LIB_SRC)) $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(LIBS)

$(call obj,$(UNIT_SRC) $(E2E_SRC) $(E2E_LIB_SRC)): ALL_CFLAGS += $(CHECK_CFLAGS)

unit: all $(UNIT_BINS)
	@tests/run.sh $(BUILD) unit

e2e: all $(E2E_BINS)
	@tests/run.sh $(BUILD) e2e

# Builds what `make test` runs, and runs nothing (to run one suite by
# hand). .ci/run does not use it: its phases run one at a time (see there).
test-build:
	@$(MAKE) --no-print-directory all $(UNIT_BINS) $(E2E_BINS)

# As root, `make test` also runs the multi-host test (tests/netns, ~1 min);
# it prints SKIP and passes when not root or when namespaces are not allowed.
test: test-build
	@tests/run.sh $(BUILD) all
	@tests/netns/run.sh $(BUILD)

asan:
	@$(MAKE) --no-print-directory VARIANT=asan test

tsan:
	@$(MAKE) --no-print-directory VARIANT=tsan test

# Every unit suite under valgrind memcheck (release build, which keeps -g).
memcheck:
	@$(MAKE) --no-print-directory all $(UNIT_BINS)
	@tests/memcheck.sh $(BUILD)

# Master, two workers and a client on four network namespaces over a
# private bridge, all with CURVE keys: a 5,000-task job, a link cut, a
# kill -9, intruders (tests/netns/run.sh; root only, SKIP otherwise).
.PHONY: test-netns
test-netns:
	@$(MAKE) --no-print-directory all
	@tests/netns/run.sh $(BUILD)

# The docker compose cluster, tested for real (needs a docker engine; builds
# debian:bookworm-slim locally when missing). See docs/docker.md.
.PHONY: test-compose
test-compose:
	@tests/compose/run.sh

check-layers:
	@python3 scripts/check-layers.py

# The first command of the README's Quick start on a fresh machine.
demo:
	@pkg-config --exists $(PKGS) $(TEST_PKGS) 2>/dev/null || scripts/install-deps.sh
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh $(BUILD)/bin

# ---- man pages: from the programs' --help, so they never drift ----
MAN_PAGES := $(BUILD)/man/ztask.1 $(BUILD)/man/ztask-master.1 $(BUILD)/man/ztask-worker.1
.PHONY: man
man: $(MAN_PAGES)
$(MAN_PAGES) &: $(BINS) scripts/gen-man.sh
	scripts/gen-man.sh $(BUILD)/bin $(BUILD)/man

# ---- install, uninstall, dist ----
# The systemd units name the programs by BINDIR (the path at run time,
# without DESTDIR); units go where systemd looks for them under PREFIX
# (/usr/local/lib/systemd/system is on its search path, as is /usr/lib/...).
BINDIR      ?= $(PREFIX)/bin
MANDIR      ?= $(PREFIX)/share/man
UNITDIR     ?= $(PREFIX)/lib/systemd/system
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/vendor-completions
UNITS       := ztask-master.service ztask-worker.service
INSTALLED := $(BINDIR)/ztask-master $(BINDIR)/ztask-worker $(BINDIR)/ztask \
             $(PREFIX)/include/ztask_plugin.h $(PREFIX)/lib/ztask/libmytasks.so \
             $(addprefix $(MANDIR)/man1/,ztask.1 ztask-master.1 ztask-worker.1) \
             $(addprefix $(BASHCOMPDIR)/,ztask ztask-master ztask-worker) \
             $(ZSHCOMPDIR)/_ztask $(addprefix $(UNITDIR)/,$(UNITS))

install: all $(MAN_PAGES)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/ztask \
	    $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) \
	    $(DESTDIR)$(UNITDIR)
	install -m 0755 $(BINS) $(DESTDIR)$(BINDIR)/
	install -m 0644 include/ztask_plugin.h $(DESTDIR)$(PREFIX)/include/
	install -m 0755 $(PLUGIN) $(DESTDIR)$(PREFIX)/lib/ztask/
	install -m 0644 $(MAN_PAGES) $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 scripts/completion/ztask.bash $(DESTDIR)$(BASHCOMPDIR)/ztask
	ln -sf ztask $(DESTDIR)$(BASHCOMPDIR)/ztask-master
	ln -sf ztask $(DESTDIR)$(BASHCOMPDIR)/ztask-worker
	install -m 0644 scripts/completion/_ztask $(DESTDIR)$(ZSHCOMPDIR)/_ztask
	for u in $(UNITS); do \
	    sed 's|@BINDIR@|$(BINDIR)|g' scripts/systemd/$$u >$(DESTDIR)$(UNITDIR)/$$u.tmp \
	    && chmod 0644 $(DESTDIR)$(UNITDIR)/$$u.tmp \
	    && mv $(DESTDIR)$(UNITDIR)/$$u.tmp $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done

# Removes what install put there, and lib/ztask when that leaves it empty.
# bin/ and include/ are shared with other packages and stay, except under a
# DESTDIR (a staging tree): there every directory left empty goes.
uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	rmdir $(DESTDIR)$(PREFIX)/lib/ztask 2>/dev/null || true
	$(if $(DESTDIR),cd $(DESTDIR) && rmdir -p --ignore-fail-on-non-empty \
	    .$(PREFIX)/lib .$(PREFIX)/bin .$(PREFIX)/include .$(MANDIR)/man1 .$(BASHCOMPDIR) \
	    .$(ZSHCOMPDIR) .$(UNITDIR) 2>/dev/null || true)

# The tarball holds the committed tree (HEAD) and a VERSION file, so it
# builds and prints its version with no git at hand.
DIST_VERSION = $(shell git describe --tags --always 2>/dev/null)
DIST_NAME    = ztask-$(DIST_VERSION)
dist:
	@[ -e .git ] || { echo "make dist: run it in the git tree (this is already a release tree)"; exit 1; }
	@mkdir -p build
	git archive --format=tar.gz --prefix=$(DIST_NAME)/ \
	    --add-virtual-file=$(DIST_NAME)/VERSION:'$(DIST_VERSION)' -o build/$(DIST_NAME).tar.gz HEAD
	@git diff --quiet HEAD || echo "make dist: note: the tarball holds HEAD, not uncommitted changes"
	@echo "build/$(DIST_NAME).tar.gz"

clean:
	rm -rf build

include mk/fuzz.mk mk/chaos.mk mk/bench.mk

# Deployment engines (docs/deploy.md). test-swarm: the stack file on a
# single-node Docker Swarm that the test creates and leaves
# (tests/swarm/run.sh; SKIP without a docker engine or when the machine is
# already in a swarm). lint-deploy: the Kubernetes manifests and the stack
# file, which no test here can apply (yamllint, tests/deploy/check_manifests.py
# with Debian's python3, which has python3-yaml: a pyenv python3 on PATH may not),
# and the example alert rules (promtool check rules, when promtool is there).
.PHONY: test-swarm lint-deploy test-slurm
test-swarm:
	@tests/swarm/run.sh

# Worker allocation on a real single-node Slurm (slurmctld, slurmd, munge
# from Debian) that the test starts and stops (tests/slurm/run.sh; SKIP
# when not root or without the packages).
test-slurm:
	@$(MAKE) --no-print-directory all
	@tests/slurm/run.sh $(BUILD)/bin

lint-deploy:
	@yamllint -c tests/deploy/yamllint.yml deploy docker-compose.yml
	@/usr/bin/python3 tests/deploy/check_manifests.py --self-test
	@/usr/bin/python3 tests/deploy/check_manifests.py
	@if command -v promtool >/dev/null; then promtool check rules deploy/prometheus/ztask-alerts.yml; \
	else echo "lint-deploy: promtool not installed (Debian: prometheus): alert rules not checked"; fi

# The dashboard in headless Chromium (tests/browser/test_dashboard.py, Debian's
# chromium + chromium-driver + python3-selenium): live progress, workers, a
# failed task's stderr, live output, a lost worker, the token form, no console
# errors. Screenshots go to $(BUILD)/browser (CI keeps them). Prints one SKIP
# line and passes only when Chromium or its driver is not installed.
.PHONY: test-browser
test-browser:
	@$(MAKE) --no-print-directory all
	@rc=0; $(PYTHON_TEST) tests/browser/test_dashboard.py $(BUILD)/bin $(BUILD)/browser || rc=$$?; \
	if [ $$rc -eq 77 ]; then exit 0; else exit $$rc; fi

# ---- the Python client: clients/python, docs/python.md ----
# `make test-python` runs its pytest suites against this build's daemons
# (ZTASK_BIN_DIR=$(BUILD)/bin) and ends with "python: N passed, N failed".
# Debian's interpreter, with python3-zmq and python3-pytest, on purpose:
# another python3 earlier on PATH (pyenv) may have no pyzmq.
PYTHON_TEST ?= /usr/bin/python3
.PHONY: test-python
test-python:
	@$(PYTHON_TEST) -c 'import zmq, pytest' 2>/dev/null || { echo "make test-python: $(PYTHON_TEST) lacks pyzmq or pytest (Debian: python3-zmq python3-pytest); run scripts/install-deps.sh --ci"; exit 1; }
	@$(MAKE) --no-print-directory all
	@cd clients/python && ZTASK_BIN_DIR=$(CURDIR)/$(BUILD)/bin PYTHONDONTWRITEBYTECODE=1 \
	    $(PYTHON_TEST) -m pytest -p no:cacheprovider -q tests

# Header dependencies of this variant's objects only.
-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
