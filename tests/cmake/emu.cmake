# The tensor-core kernels on the CPU (label unit, emu): kernels/cuda/flash_attention.cuh compiled
# for the host against tests/emu/emu_prims.h, which emulates ldmatrix, mma.sync, shuffles and
# cp.async on one host thread per GPU thread, and checked against a double-precision reference.
# It needs no CUDA toolkit and no GPU, so every build runs it: the kernels' indexing, tiling,
# masking and synchronisation are tested on every commit; the GPU tests (label gpu) check the
# same kernels on the hardware. Built with AddressSanitizer and UBSan: an out-of-bounds global
# access of a kernel fails the test.
include(CheckLanguage)
check_language(CXX)
if(NOT CMAKE_CXX_COMPILER)
  message(FATAL_ERROR "the emulated kernel tests need a C++20 compiler (g++ from build-essential)")
endif()
enable_language(CXX)
find_package(Threads REQUIRED)
# test_flash_emu_dq_mw2: the dQ kernel's variant with 32 rows per warp (FLASH_DQ_MW_64=2), on the
# shapes at head size 64 it changes
foreach(variant "" "_dq_mw2")
  set(t test_flash_emu${variant})
  add_executable(${t} ${CMAKE_CURRENT_SOURCE_DIR}/emu/test_flash_emu.cc)
  set_target_properties(${t} PROPERTIES CXX_STANDARD 20 CXX_STANDARD_REQUIRED ON)
  target_compile_options(${t} PRIVATE -O1 -g -Wall -Wextra -Wno-unknown-pragmas
                         -fsanitize=address,undefined -fno-sanitize-recover=all)
  target_link_options(${t} PRIVATE -fsanitize=address,undefined)
  target_link_libraries(${t} PRIVATE Threads::Threads)
  target_include_directories(${t} PRIVATE ${CMAKE_SOURCE_DIR}) # root-relative kernel includes
endforeach()
target_compile_definitions(test_flash_emu_dq_mw2 PRIVATE FLASH_DQ_MW_64=2)
add_test(NAME flash_emu COMMAND test_flash_emu)
add_test(NAME flash_emu_dq_mw2 COMMAND test_flash_emu_dq_mw2 64:64:2:2 200:64:1:2)
set_tests_properties(flash_emu flash_emu_dq_mw2 PROPERTIES LABELS "unit;emu" TIMEOUT 600)

# The gradient codecs' kernels (kernels/cuda/codec_kernels.cuh) on the same emulation, compared
# bit for bit with the host codecs they must reproduce (tessera_collectives), so the build without
# the collectives (TESSERA_COMPUTE_ONLY) has no such test. No contraction of a product and a sum
# into an fma: the kernels round each operation as the host codecs do (-ffp-contract=off there).
if(TARGET tessera_collectives)
  add_executable(test_codec_emu ${CMAKE_CURRENT_SOURCE_DIR}/emu/test_codec_emu.cc)
  set_target_properties(test_codec_emu PROPERTIES CXX_STANDARD 20 CXX_STANDARD_REQUIRED ON)
  target_compile_options(test_codec_emu PRIVATE -O1 -g -Wall -Wextra -Wno-unknown-pragmas
                         -ffp-contract=off -fsanitize=address,undefined -fno-sanitize-recover=all)
  target_link_options(test_codec_emu PRIVATE -fsanitize=address,undefined)
  target_link_libraries(test_codec_emu PRIVATE tessera_collectives Threads::Threads)
  target_include_directories(test_codec_emu PRIVATE ${CMAKE_SOURCE_DIR})
  add_test(NAME codec_emu COMMAND test_codec_emu)
  set_tests_properties(codec_emu PROPERTIES LABELS "unit;emu" TIMEOUT 300)
endif()
