# Cross-check of the GPT-2 model against an independent float64 PyTorch implementation.
# The fixture is committed (tests/reference/gpt2_tiny.fixture); regenerate it by hand with
# tests/reference/gen_gpt2_fixture.py (see tests/reference/README.md). The same test source is
# built once per precision, each against its own compute library.

set(TESSERA_GPT2_FIXTURE ${CMAKE_SOURCE_DIR}/tests/reference/gpt2_tiny.fixture)

foreach(prec f32 f64)
  tessera_unit_test(test_reference_${prec}
                    SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_reference.c
                    LIBS tessera_compute_${prec})
  add_test(NAME reference_gpt2_${prec}
           COMMAND test_reference_${prec} ${TESSERA_GPT2_FIXTURE})
  set_tests_properties(reference_gpt2_${prec} PROPERTIES LABELS unit
                       ENVIRONMENT OMP_NUM_THREADS=1 TIMEOUT 60)
endforeach()
