# mk/chaos.mk, included by the Makefile (whose variables it uses).
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
chaos:
	@$(MAKE) --no-print-directory all $(CHAOS_BINS)
	@tests/chaos/run.sh $(BUILD)

soak:
	@$(MAKE) --no-print-directory all $(CHAOS_BINS)
	@tests/chaos/run.sh $(BUILD) soak
