# CPU backend op tests (kernels/cpu/): references, finite-difference gradients in double,
# float vs double, determinism. The op bodies in test_ops_run.c are compiled once per precision.

add_library(test_ops_run_f32 OBJECT ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_ops_run.c)
target_link_libraries(test_ops_run_f32 PRIVATE tessera_compute_f32)
add_library(test_ops_run_f64 OBJECT ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_ops_run.c
            ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_ops_grad.c)
target_link_libraries(test_ops_run_f64 PRIVATE tessera_compute_f64) # brings TESSERA_F64

tessera_unit_test(test_ops
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_ops.c $<TARGET_OBJECTS:test_ops_run_f32>
          $<TARGET_OBJECTS:test_ops_run_f64>
  LIBS tessera_compute_f32 tessera_compute_f64 OpenMP::OpenMP_C m)
add_test(NAME ops COMMAND test_ops)
set_tests_properties(ops PROPERTIES LABELS unit TIMEOUT 60)
