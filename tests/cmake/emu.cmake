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
add_executable(test_flash_emu ${CMAKE_CURRENT_SOURCE_DIR}/emu/test_flash_emu.cc)
set_target_properties(test_flash_emu PROPERTIES CXX_STANDARD 20 CXX_STANDARD_REQUIRED ON)
target_compile_options(test_flash_emu PRIVATE -O1 -g -Wall -Wextra -Wno-unknown-pragmas
                       -fsanitize=address,undefined -fno-sanitize-recover=all)
target_link_options(test_flash_emu PRIVATE -fsanitize=address,undefined)
target_link_libraries(test_flash_emu PRIVATE Threads::Threads)
add_test(NAME flash_emu COMMAND test_flash_emu)
set_tests_properties(flash_emu PROPERTIES LABELS "unit;emu" TIMEOUT 600)
