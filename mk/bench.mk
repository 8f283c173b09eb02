# mk/bench.mk, included by the Makefile (whose variables it uses).
# Benchmarks: bench/, docs/performance.md. Not part of `make test`.
#   make bench         ztask scenarios on loopback, a table (BENCH_SCALE, BENCH_RUNS, ...: bench/run.py)
#   make bench-peers   installs gearmand, beanstalkd, redis+celery, parallel from Debian and
#                      runs the same work on each, with ztask's ratio to each (bench/peers.py)
# Always measured on a release build, whatever VARIANT says.
# bench is phony: a directory of that name exists, so make would call it up to date.
.PHONY: bench bench-peers bench-progs bench-peer-progs

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

# exit0: no C library, no loader, so none of the build's flags (a sanitizer's
# runtime could not link); on an architecture it does not know, no program.
EXIT0_ARCH := $(filter x86_64 aarch64,$(shell $(CC) -dumpmachine | cut -d- -f1))
$(BUILD)/bench/exit0: bench/exit0.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -Wall -Wextra -Werror -static -nostdlib -fno-stack-protector -o $@ $<
BENCH_PROGS += $(if $(EXIT0_ARCH),$(BUILD)/bench/exit0)

bench-progs: $(BENCH_PROGS)
bench-peer-progs: $(PEER_PROGS)

bench:
	@$(MAKE) --no-print-directory VARIANT=release all bench-progs
	@python3 bench/run.py --build build/release

bench-peers:
	@bench/install-peers.sh
	@$(MAKE) --no-print-directory VARIANT=release all bench-progs bench-peer-progs
	@python3 bench/peers.py --build build/release
