# ztask: one non-recursive GNU Makefile (variants re-enter it with VARIANT=).
#
#   make              build build/release/bin/{ztask-master,ztask-worker,ztask}
#   make test         unit + end-to-end suites (prints "N passed, N failed"),
#                     and as root the multi-host test (make test-netns)
#   make asan|tsan    the same suite on sanitizer builds under build/<variant>/
#   make demo         a local cluster: master + 2 workers, a 1,000-task job
#   make install      PREFIX=/usr/local DESTDIR=

VARIANT ?= release
BUILD   := build/$(VARIANT)
PREFIX  ?= /usr/local
CC      ?= cc

PKGS    := libzmq libcjson sqlite3
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   := $(shell pkg-config --libs check 2>/dev/null)

WARN    := -Wall -Wextra -Wformat=2 -Werror
CFLAGS_release := -O2
CFLAGS_asan    := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
CFLAGS_tsan    := -O1 -fsanitize=thread
# fuzz: clang only (make fuzz sets CC); UB must abort, or libFuzzer never sees it.
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

# The version every program prints (common/version.c): `git describe` of
# this git tree, else VERSION (a tarball has no .git). Only version.o sees
# it; the stamp is rewritten, and version.o rebuilt, when it changes.
VERSION := 0.1.0
ZTASK_VERSION := $(shell test -e .git && git describe --tags --always --dirty 2>/dev/null \
                   || echo $(VERSION))
$(BUILD)/version.stamp: FORCE
	@mkdir -p $(dir $@)
	@echo '$(ZTASK_VERSION)' | cmp -s - $@ || echo '$(ZTASK_VERSION)' >$@
$(call obj,common/version.c): $(BUILD)/version.stamp
$(call obj,common/version.c): ALL_CFLAGS += -DZTASK_VERSION='"$(ZTASK_VERSION)"'
.PHONY: FORCE
FORCE:

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

.PHONY: all test unit e2e asan tsan memcheck demo install clean deps format bench
.DEFAULT_GOAL := all

all: $(BINS) $(PLUGIN)

# Installs the Debian packages we need when any is missing (fresh machine).
deps:
	@pkg-config --exists $(PKGS) check 2>/dev/null || scripts/install-deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/obj/examples/plugin/%.o: examples/plugin/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fPIC -c $< -o $@

$(COMMON_LIB): $(call obj,$(COMMON_SRC))
$(MASTER_LIB): $(call obj,$(MASTER_SRC))
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

# As root, `make test` also runs the multi-host test (tests/netns, ~1 min);
# it prints SKIP and passes when not root or when namespaces are not allowed.
test: deps
	@$(MAKE) --no-print-directory all $(UNIT_BINS) $(E2E_BINS)
	@tests/run.sh $(BUILD) all
	@tests/netns/run.sh $(BUILD)

asan:
	@$(MAKE) --no-print-directory VARIANT=asan test

tsan:
	@$(MAKE) --no-print-directory VARIANT=tsan test

# Every unit suite under valgrind memcheck (release build, which keeps -g).
memcheck: deps
	@$(MAKE) --no-print-directory all $(UNIT_BINS)
	@tests/memcheck.sh $(BUILD)

demo: deps
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh $(BUILD)/bin

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/ztask
	install -m 0755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 include/ztask_plugin.h $(DESTDIR)$(PREFIX)/include/
	install -m 0755 $(PLUGIN) $(DESTDIR)$(PREFIX)/lib/ztask/

clean:
	rm -rf build

format:
	clang-format -i $(wildcard */*.c */*.h tests/*/*.c tests/*/*.h)

-include $(shell find build -name '*.d' 2>/dev/null)

# Master, two workers and a client on four network namespaces over a
# private bridge, all with CURVE keys: a 5,000-task job, a link cut, a
# kill -9, intruders (tests/netns/run.sh; root only, SKIP otherwise).
.PHONY: test-netns
test-netns: deps
	@$(MAKE) --no-print-directory all
	@tests/netns/run.sh $(BUILD)

# The docker compose cluster, tested for real (needs a docker engine; builds
# debian:bookworm-slim locally when missing). See docs/docker.md.
.PHONY: test-compose
test-compose:
	@tests/compose/run.sh

# Fuzzing (tests/fuzz, docs/fuzzing.md): one libFuzzer target per parser of
# outside input, built with clang under build/fuzz/. Not part of `make test`,
# which replays the seed corpus and every saved crash (test_fuzz_regress).
#   make fuzz      each target FUZZ_SECONDS (300), FUZZ_JOBS at a time
#   make fuzz-ci   replay the corpus, then each target FUZZ_CI_SECONDS (60)
# Both fail on any crash, leak, timeout or broken property and say where the
# input was saved. FUZZ_TARGETS="req spec" picks targets.
FUZZ_CC         ?= clang
FUZZ_SECONDS    ?= 300
FUZZ_CI_SECONDS ?= 60
FUZZ_JOBS       ?= $(shell nproc 2>/dev/null || echo 1)
FUZZ_TARGETS    ?= req reply pipe report spec result range jsonl each keys config util
FUZZ_CHECK_SRC  := $(filter-out tests/fuzz/entry.c,$(wildcard tests/fuzz/*.c))

# The corpus replay of `make test` links the same checks (objects before libraries).
$(BUILD)/tests/test_fuzz_regress: $(call obj,tests/unit/test_fuzz_regress.c $(FUZZ_CHECK_SRC)) $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(LIBS)

.PRECIOUS: $(BUILD)/obj/tests/fuzz/entry_%.o
$(BUILD)/obj/tests/fuzz/entry_%.o: tests/fuzz/entry.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DFUZZ_TARGET=$* -c $< -o $@

$(BUILD)/bin/fuzz_%: $(BUILD)/obj/tests/fuzz/entry_%.o $(call obj,$(FUZZ_CHECK_SRC)) $(CLI_LIB) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(LIBS)

.PHONY: fuzz fuzz-ci fuzz-build
fuzz-build: $(patsubst %,$(BUILD)/bin/fuzz_%,$(FUZZ_TARGETS))

fuzz fuzz-ci:
	@tests/fuzz/run.sh check-cc $(FUZZ_CC)
	@$(MAKE) --no-print-directory VARIANT=fuzz CC=$(FUZZ_CC) FUZZ_TARGETS="$(FUZZ_TARGETS)" fuzz-build
	@tests/fuzz/run.sh $(if $(filter fuzz-ci,$@),--replay) build/fuzz \
	    $(if $(filter fuzz-ci,$@),$(FUZZ_CI_SECONDS),$(FUZZ_SECONDS)) $(FUZZ_JOBS) $(FUZZ_TARGETS)

# Fault storms with a checker (tests/chaos, docs/chaos.md). `make chaos`
# runs every scenario at CI size (CHAOS_SCALE=10 for the full size);
# `make soak` runs the 1,000,000-task soak. Neither is part of `make test`.
CHAOS_BINS := $(BUILD)/chaos/chaos-check $(BUILD)/chaos/chaos-storm $(BUILD)/chaos/libchaos.so

$(BUILD)/obj/tests/chaos/chaos_plugin.o: tests/chaos/chaos_plugin.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fPIC -c $< -o $@

$(BUILD)/chaos/libchaos.so: $(call obj,tests/chaos/chaos_plugin.c)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -shared -o $@ $^ $(PKG_LIBS)

$(BUILD)/chaos/chaos-check: $(call obj,tests/chaos/chaos_check.c) $(COMMON_LIB)
$(BUILD)/chaos/chaos-storm: $(call obj,tests/chaos/chaos_storm.c tests/chaos/storm_gen.c \
                              tests/chaos/storm_master.c tests/chaos/storm_worker.c) $(COMMON_LIB)
$(BUILD)/chaos/chaos-check $(BUILD)/chaos/chaos-storm:
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

.PHONY: chaos soak
chaos: deps
	@$(MAKE) --no-print-directory all $(CHAOS_BINS)
	@tests/chaos/run.sh $(BUILD)

soak: deps
	@$(MAKE) --no-print-directory all $(CHAOS_BINS)
	@tests/chaos/run.sh $(BUILD) soak

# ---- benchmarks: bench/, docs/performance.md. Not part of `make test`. ----
#   make bench         ztask scenarios on loopback, a table (BENCH_SCALE, BENCH_RUNS, ...: bench/run.py)
#   make bench-peers   installs gearmand, beanstalkd, redis+celery, parallel from Debian and
#                      runs the same work on each, with ztask's ratio to each (bench/peers.py)
# Always measured on a release build, whatever VARIANT says.
.PHONY: bench-peers bench-progs bench-peer-progs

BENCH_PROGS := $(BUILD)/bench/zt-load $(BUILD)/bench/ceiling $(BUILD)/bench/spawn-loop
PEER_PROGS  := $(BUILD)/bench/gearman-load $(BUILD)/bench/beanstalk-load
# Recursively expanded: libgearman may be installed by bench-peers after this file is read.
GEARMAN_CFLAGS = $(shell pkg-config --cflags gearmand 2>/dev/null)
GEARMAN_LIBS   = $(shell pkg-config --libs gearmand 2>/dev/null || echo -lgearman)

$(BUILD)/bench/zt-load: $(call obj,bench/zt_load.c) $(COMMON_LIB)
$(BUILD)/bench/ceiling: $(call obj,bench/ceiling.c)
$(BUILD)/bench/spawn-loop: $(call obj,bench/spawn_loop.c)
$(BUILD)/bench/beanstalk-load: $(call obj,bench/beanstalk_load.c)
$(BENCH_PROGS) $(BUILD)/bench/beanstalk-load:
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(call obj,bench/gearman_load.c): ALL_CFLAGS += $(GEARMAN_CFLAGS)
$(BUILD)/bench/gearman-load: $(call obj,bench/gearman_load.c)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(GEARMAN_LIBS) $(LIBS)

bench-progs: $(BENCH_PROGS)
bench-peer-progs: $(PEER_PROGS)

bench:
	@$(MAKE) --no-print-directory VARIANT=release all bench-progs
	@python3 bench/run.py --build build/release

bench-peers:
	@bench/install-peers.sh
	@$(MAKE) --no-print-directory VARIANT=release all bench-progs bench-peer-progs
	@python3 bench/peers.py --build build/release

# Deployment engines (docs/deploy.md). test-swarm: the stack file on a
# single-node Docker Swarm that the test creates and leaves
# (tests/swarm/run.sh; SKIP without a docker engine or when the machine is
# already in a swarm). lint-deploy: the Kubernetes manifests and the stack
# file, which no test here can apply (yamllint, tests/deploy/check_manifests.py
# with Debian's python3, which has python3-yaml: a pyenv python3 on PATH may not).
.PHONY: test-swarm lint-deploy
test-swarm:
	@tests/swarm/run.sh

lint-deploy:
	@yamllint -c tests/deploy/yamllint.yml deploy docker-compose.yml
	@/usr/bin/python3 tests/deploy/check_manifests.py --self-test
	@/usr/bin/python3 tests/deploy/check_manifests.py

# ---- the Python client: clients/python, docs/python.md ----
# `make test-python` runs its pytest suites against this build's daemons
# (ZTASK_BIN_DIR=$(BUILD)/bin) and ends with "python: N passed, N failed".
# Debian's interpreter, with python3-zmq and python3-pytest, on purpose:
# another python3 earlier on PATH (pyenv) may have no pyzmq.
PYTHON_TEST ?= /usr/bin/python3
.PHONY: test-python
test-python: deps
	@$(PYTHON_TEST) -c 'import zmq, pytest' 2>/dev/null || scripts/install-deps.sh --ci
	@$(MAKE) --no-print-directory all
	@cd clients/python && ZTASK_BIN_DIR=$(CURDIR)/$(BUILD)/bin PYTHONDONTWRITEBYTECODE=1 \
	    $(PYTHON_TEST) -m pytest -p no:cacheprovider -q tests
