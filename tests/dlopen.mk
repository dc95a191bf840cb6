# tests/dlopen.mk -- the shared library loaded and unloaded with dlopen, as FFI
# hosts and plugin systems do (tests/dlopen_test.c).
.PHONY: test-dlopen
$(BUILD)/dlopen_test: tests/dlopen_test.c include/wmanifold.h | $(BUILD)/tests
	$(CC) $(ALL_CFLAGS) -o $@ $< -ldl -lpthread $(LDFLAGS_SAN)

test-dlopen: lib $(BUILD)/dlopen_test
	@$(BUILD)/dlopen_test $(abspath $(SHLIB))
TEST_EXTRA += test-dlopen
