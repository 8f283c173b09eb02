# mk/fuzz.mk, included by the Makefile (whose variables it uses).
# Fuzzing (tests/fuzz, docs/fuzzing.md): one libFuzzer target per parser of
# outside input, built with clang under build/fuzz/. Not part of `make test`,
# which replays the seed corpus and every saved crash (test_fuzz_regress).
#   make fuzz      each target FUZZ_SECONDS (300), FUZZ_JOBS at a time
#   make fuzz-ci   replay the corpus, then each target FUZZ_CI_SECONDS (30)
# Both fail on any crash, leak, timeout or broken property and say where the
# input was saved. FUZZ_TARGETS="req spec" picks targets.
FUZZ_CC         ?= clang
FUZZ_SECONDS    ?= 300
FUZZ_CI_SECONDS ?= 30
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
