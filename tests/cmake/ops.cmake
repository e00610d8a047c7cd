# Backend op tests: one program, test_backend_ops (tests/ops/), runs every op of a backend of the
# registry. The CPU backend against direct references, finite-difference gradients in double,
# float vs double and determinism (label unit); every other backend against the CPU, op by op,
# in each of its modes (label gpu for CUDA: exit 77, shown as skipped, without a device). The CPU
# checks in ops_ref.c are compiled once per precision.

add_library(test_ops_ref_f32 OBJECT ${CMAKE_CURRENT_SOURCE_DIR}/ops/ops_ref.c)
target_link_libraries(test_ops_ref_f32 PRIVATE tessera_compute_f32)
add_library(test_ops_ref_f64 OBJECT ${CMAKE_CURRENT_SOURCE_DIR}/ops/ops_ref.c
            ${CMAKE_CURRENT_SOURCE_DIR}/ops/ops_grad.c)
target_link_libraries(test_ops_ref_f64 PRIVATE tessera_compute_f64) # brings TESSERA_F64
foreach(lib test_ops_ref_f32 test_ops_ref_f64)
  target_include_directories(${lib} PRIVATE ${CMAKE_SOURCE_DIR})
endforeach()

# the harness every backend test shares (tests/ops/harness.h)
add_library(test_harness STATIC ${CMAKE_CURRENT_SOURCE_DIR}/ops/harness.c)
target_include_directories(test_harness PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(test_harness PUBLIC tessera_backends m)

tessera_unit_test(test_backend_ops
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/ops/test_backend_ops.c
          ${CMAKE_CURRENT_SOURCE_DIR}/ops/ops_compare.c $<TARGET_OBJECTS:test_ops_ref_f32>
          $<TARGET_OBJECTS:test_ops_ref_f64>
  LIBS test_harness tessera_compute_f32 $<LINK_ONLY:tessera_compute_f64> OpenMP::OpenMP_C m)
# (LINK_ONLY: the double build's objects without its TESSERA_F64, so test_backend_ops.c and
# ops_compare.c see the float build's types)
add_test(NAME ops COMMAND test_backend_ops cpu)
set_tests_properties(ops PROPERTIES LABELS unit TIMEOUT 60)

# the registry itself: names, choices, auto, and every entry of a usable backend filled
tessera_unit_test(test_registry SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_registry.c
                  LIBS tessera_backends)
add_test(NAME registry COMMAND test_registry)
set_tests_properties(registry PROPERTIES LABELS unit TIMEOUT 30)

if(TESSERA_HAVE_CUDA)
  # one GPU: the gpu tests take turns (timings and memcheck runs stay readable)
  foreach(mode f32 bf16)
    add_test(NAME gpu_cuda_ops_${mode} COMMAND test_backend_ops cuda ${mode})
    set_tests_properties(gpu_cuda_ops_${mode} PROPERTIES LABELS gpu SKIP_RETURN_CODE 77
                         TIMEOUT 300 RESOURCE_LOCK gpu)
  endforeach()
endif()
