# Model tests: whole-model finite differences (double), overfitting one batch.
tessera_unit_test(test_model_grad SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_model_grad.c
                  LIBS tessera_compute_f64)
add_test(NAME model_grad_fd COMMAND test_model_grad)
set_tests_properties(model_grad_fd PROPERTIES LABELS unit)

tessera_unit_test(test_overfit SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_overfit.c
                  LIBS tessera_runtime)
add_test(NAME model_overfit_one_batch COMMAND test_overfit)
set_tests_properties(model_overfit_one_batch PROPERTIES LABELS unit ENVIRONMENT OMP_NUM_THREADS=1)

tessera_unit_test(test_weights_close SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_weights_close.c
                  LIBS tessera_runtime)

tessera_unit_test(test_tokenizer SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_tokenizer.c
                  LIBS tessera_runtime)
add_test(NAME sample_tokenizer COMMAND test_tokenizer ${TESSERA_TEST_DATA})
set_tests_properties(sample_tokenizer PROPERTIES LABELS unit FIXTURES_SETUP tokenizer_files)

# A second architecture (a toy, registered by the test) chosen by model.arch and handled by the
# runtime's optimizer, weights file and checkpoint code without any change outside models/.
tessera_unit_test(test_model_arch SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_model_arch.c
                  LIBS tessera_runtime)
add_test(NAME model_arch_toy COMMAND test_model_arch)
set_tests_properties(model_arch_toy PROPERTIES LABELS unit ENVIRONMENT OMP_NUM_THREADS=1)
