# Work that follows measured speed (runtime/balance.c) with real ranks whose speeds are set by real
# CPU limits (cgroup v1 cpu quotas; tests/mpi/balance.sh): shares converge to the speeds, a rank
# slowed mid-run is re-balanced within 10 steps, balance.policy = drop never loses or repeats a
# sample, and a resume keeps the balancing state (same world size) or measures again. Timing
# decides these runs: serial, never beside another test. Skipped (77) without a writable cgroup v1
# cpu controller. (The split itself, uneven shares equal to even ones: dp_uneven_* in dp.cmake;
# the config checks of [balance]: tests/config/bad/balance_*.ini.)
if(TESSERA_HAVE_MPI)
  set(BALANCE_DIR ${TESSERA_TEST_DATA}/balance)
  foreach(check converge slowed drop drop_diloco resume)
    add_test(NAME balance_${check}
             COMMAND ${CMAKE_SOURCE_DIR}/tests/mpi/balance.sh ${check} ${TESSERA_BIN}
                     ${BALANCE_DIR}/${check} ${TESSERA_TEST_DATA}/train/corpus ${TESSERA_MPIRUN})
    set_tests_properties(balance_${check} PROPERTIES LABELS mpi TIMEOUT 300 RUN_SERIAL TRUE
                         SKIP_RETURN_CODE 77 FIXTURES_REQUIRED train_corpus
                         ENVIRONMENT OMP_NUM_THREADS=1)
  endforeach()
endif()
