# Communicator tests (collectives/comm*.c). One program, tests/mpi/test_comm.c, run in several
# ways: alone (the "self" backend), under mpirun with 1, 2 and 3 ranks (3 oversubscribes a
# 2-core machine), and as a 2-rank deadline test where one rank stalls.

tessera_unit_test(test_comm SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_comm.c LIBS tessera_core)
set(TESSERA_EXPECT_EXIT ${CMAKE_CURRENT_SOURCE_DIR}/mpi/expect_exit.sh)
# a plain run must not look as if mpirun had started it
set(TESSERA_COMM_PLAIN_ENV "OMPI_COMM_WORLD_SIZE=unset:;PMIX_RANK=unset:;TESSERA_COMM=unset:")

add_test(NAME comm_self COMMAND test_comm collectives self 1)
set_tests_properties(comm_self PROPERTIES LABELS unit TIMEOUT 30
                     ENVIRONMENT_MODIFICATION "${TESSERA_COMM_PLAIN_ENV}")

# an unknown TESSERA_COMM is a user error: one line naming the variable, exit 2
add_test(NAME comm_bad_backend
         COMMAND ${TESSERA_EXPECT_EXIT} 2 "error: environment TESSERA_COMM=carrier-pigeon: expected"
                 -- $<TARGET_FILE:test_comm> init)
set_tests_properties(comm_bad_backend PROPERTIES LABELS unit TIMEOUT 30
                     ENVIRONMENT "TESSERA_COMM=carrier-pigeon")

if(TESSERA_HAVE_MPI)
  foreach(np 1 2 3)
    add_test(NAME comm_mpi_np${np}
             COMMAND ${TESSERA_MPIRUN} -np ${np} $<TARGET_FILE:test_comm> collectives mpi ${np})
    set_tests_properties(comm_mpi_np${np} PROPERTIES LABELS mpi TIMEOUT 60
                         ENVIRONMENT_MODIFICATION "TESSERA_COMM=unset:")
  endforeach()

  # TESSERA_COMM=self wins over mpirun: every rank is a world of its own
  add_test(NAME comm_mpi_forced_self
           COMMAND ${TESSERA_MPIRUN} -np 2 -x TESSERA_COMM=self
                   $<TARGET_FILE:test_comm> collectives self 1)
  set_tests_properties(comm_mpi_forced_self PROPERTIES LABELS mpi TIMEOUT 60)

  # rank 1 stalls past a 1 s deadline: rank 0 gives up, names the collective and the deadline,
  # and exits 75, which mpirun passes on
  add_test(NAME comm_mpi_deadline
           COMMAND ${TESSERA_EXPECT_EXIT} 75
                   "tessera\\[0\\]: error: all_reduce_sum_f32 on rank 0 of 2 did not complete"
                   "did not complete within the 1\\.0 s deadline \\(waited 1\\.[0-9] s\\)"
                   "a peer is lost or stalled"
                   -- ${TESSERA_MPIRUN} -np 2 $<TARGET_FILE:test_comm> deadline)
  set_tests_properties(comm_mpi_deadline PROPERTIES LABELS mpi RUN_SERIAL TRUE TIMEOUT 60
                       ENVIRONMENT_MODIFICATION "TESSERA_COMM=unset:")
endif()
