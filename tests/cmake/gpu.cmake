# GPU tests (label gpu): the CUDA backend against the CPU reference on a whole training run, in
# each of its modes (f32, bf16), and its flash kernels at long sequences; the op-by-op tests are
# test_backend_ops's (ops.cmake). Also the gradient codecs' kernels against the host codecs.
# Built only with the CUDA backend; on a machine without a GPU they exit 77 and ctest reports
# them as skipped, never as passed. They link the compute libraries and the test harness only
# (not tessera_runtime), so a TESSERA_COMPUTE_ONLY build has them too, but for the codecs' test,
# which needs the host codecs (tessera_collectives).
#
# Also the GPU benchmarks (bench/gpu_bench.c, the training step; bench/gpu_attn_bench.c, the
# attention op): targets, not tests; scripts/gpu-check runs them.
if(TESSERA_HAVE_CUDA)
  set(GPU_TEST_DIR ${CMAKE_CURRENT_SOURCE_DIR}/gpu)
  tessera_unit_test(test_cuda_train SOURCES ${GPU_TEST_DIR}/test_cuda_train.c
                    LIBS test_harness tessera_compute_f32 m)
  foreach(mode f32 bf16)
    add_test(NAME gpu_cuda_train_${mode} COMMAND test_cuda_train ${mode})
    # one GPU: the tests take turns (timings and memcheck runs stay readable)
    set_tests_properties(gpu_cuda_train_${mode} PROPERTIES LABELS gpu SKIP_RETURN_CODE 77
                         TIMEOUT 300 RESOURCE_LOCK gpu)
  endforeach()

  # the training checks again at head size 64 (the flash kernels in bf16), plus flash against
  # the simple attention path
  tessera_unit_test(test_cuda_train_flash SOURCES ${GPU_TEST_DIR}/test_cuda_train.c
                    LIBS test_harness tessera_compute_f32 m)
  target_compile_definitions(test_cuda_train_flash PRIVATE TRAIN_FLASH_SHAPE)
  # the flash kernels op by op: shapes, tolerances, determinism (bf16 only: flash is bf16)
  tessera_unit_test(test_cuda_flash SOURCES ${GPU_TEST_DIR}/test_cuda_flash.c
                    LIBS test_harness tessera_compute_f32 m)
  foreach(t cuda_train_flash cuda_flash)
    add_test(NAME gpu_${t}_bf16 COMMAND test_${t} bf16)
    set_tests_properties(gpu_${t}_bf16 PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 300
                         RESOURCE_LOCK gpu)
  endforeach()

  # the gradient codecs' kernels against the host codecs, bit for bit (tests/emu/codec_cases.h,
  # also run under emulation by codec_emu); needs the collectives
  if(TARGET tessera_collectives)
    tessera_unit_test(test_cuda_codec SOURCES ${GPU_TEST_DIR}/test_cuda_codec.c
                      LIBS tessera_cuda tessera_collectives m)
    add_test(NAME gpu_cuda_codec COMMAND test_cuda_codec)
    set_tests_properties(gpu_cuda_codec PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 300
                         RESOURCE_LOCK gpu)
  endif()

  add_executable(gpu_bench ${CMAKE_SOURCE_DIR}/bench/gpu_bench.c ${CMAKE_SOURCE_DIR}/bench/op_timer.c)
  target_link_libraries(gpu_bench PRIVATE tessera_compute_f32 tessera_cuda m)
  add_executable(gpu_attn_bench ${CMAKE_SOURCE_DIR}/bench/gpu_attn_bench.c)
  target_link_libraries(gpu_attn_bench PRIVATE tessera_compute_f32 tessera_cuda m)
endif()
