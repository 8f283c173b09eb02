# ztask: one non-recursive GNU Makefile (variants re-enter it with VARIANT=).
#
#   make              build build/release/bin/{ztask-master,ztask-worker,ztask}
#   make test         unit + end-to-end suites (prints "N passed, N failed")
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
CFLAGS_fuzz    := -O1 -fsanitize=fuzzer-no-link,address,undefined
LDFLAGS_asan   := -fsanitize=address,undefined
LDFLAGS_tsan   := -fsanitize=thread
LDFLAGS_fuzz   := -fsanitize=address,undefined

ALL_CFLAGS := -std=c11 -D_GNU_SOURCE -g -MMD -MP $(WARN) $(CFLAGS_$(VARIANT)) \
              -Iinclude $(PKG_CFLAGS) $(CFLAGS)
ALL_LDFLAGS := $(LDFLAGS_$(VARIANT)) $(LDFLAGS)
LIBS := $(PKG_LIBS) -lpthread -ldl -lm

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

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

.PHONY: all test unit e2e asan tsan demo install clean deps format bench
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

test: deps
	@$(MAKE) --no-print-directory all $(UNIT_BINS) $(E2E_BINS)
	@tests/run.sh $(BUILD) all

asan:
	@$(MAKE) --no-print-directory VARIANT=asan test

tsan:
	@$(MAKE) --no-print-directory VARIANT=tsan test

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

# The docker compose cluster, tested for real (needs a docker engine; builds
# debian:bookworm-slim locally when missing). See docs/docker.md.
.PHONY: test-compose
test-compose:
	@tests/compose/run.sh

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
$(BUILD)/chaos/chaos-storm: $(call obj,tests/chaos/chaos_storm.c) $(COMMON_LIB)
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
