# base/ tests (tests/unit/test_base.c): the durable write (a failed write leaves the old file),
# directory commits, mkdir -p, link-safe deletion, FIFOs refused, the knob table, and the status
# file left by every way of dying (ts_fatal, ts_panic, out of memory, ts_exit).
tessera_unit_test(test_base SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_base.c LIBS tessera_base)
add_test(NAME base_unit COMMAND test_base ${TESSERA_TEST_DATA}/base)
set_tests_properties(base_unit PROPERTIES LABELS unit TIMEOUT 60)
