# Communicator tests (collectives/comm*.c). One program, tests/mpi/test_comm.c, run in several
# ways: alone (the "self" backend), under mpirun with 1 to 4 ranks (3 and 4 oversubscribe a
# 2-core machine), and as jobs in which a rank stops answering (deadline, start-up and shut-down
# watchdogs). Also the all-reduce benchmark (bench/comm_bench.c), built here but run by hand.

tessera_unit_test(test_comm SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_comm.c LIBS tessera_runtime)
set(TESSERA_EXPECT_EXIT ${CMAKE_CURRENT_SOURCE_DIR}/mpi/expect_exit.sh)
set(TESSERA_RUN_STALLED ${CMAKE_CURRENT_SOURCE_DIR}/mpi/run_stalled.sh)
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
  foreach(np 1 2 3 4)
    add_test(NAME comm_mpi_np${np}
             COMMAND ${TESSERA_MPIRUN} -np ${np} $<TARGET_FILE:test_comm> collectives mpi ${np})
    set_tests_properties(comm_mpi_np${np} PROPERTIES LABELS mpi TIMEOUT 60
                         ENVIRONMENT_MODIFICATION "TESSERA_COMM=unset:")
  endforeach()

  # the ring cut ranks on several hosts get (64512-byte segments, 8 in flight), and a deep
  # window over small segments (4 KiB, 32 in flight): the same results and byte counts
  foreach(cut "network;64512;8" "deep;4096;32")
    list(GET cut 0 name)
    list(GET cut 1 segment)
    list(GET cut 2 window)
    foreach(np 2 3)
      add_test(NAME comm_mpi_cut_${name}_np${np}
               COMMAND ${TESSERA_MPIRUN} -np ${np} -x TESSERA_COMM_SEGMENT=${segment}
                       -x TESSERA_COMM_WINDOW=${window}
                       $<TARGET_FILE:test_comm> collectives mpi ${np})
      set_tests_properties(comm_mpi_cut_${name}_np${np} PROPERTIES LABELS mpi TIMEOUT 60
                           ENVIRONMENT_MODIFICATION "TESSERA_COMM=unset:")
    endforeach()
  endforeach()

  # a window the ring cannot keep: one line naming the variable, exit 2, before MPI starts
  add_test(NAME comm_mpi_bad_window
           COMMAND ${TESSERA_EXPECT_EXIT} 2
                   "error: environment TESSERA_COMM_WINDOW=33: expected steps from 1 to 32"
                   -- $<TARGET_FILE:test_comm> init)
  set_tests_properties(comm_mpi_bad_window PROPERTIES LABELS mpi TIMEOUT 30
                       ENVIRONMENT "TESSERA_COMM=mpi;TESSERA_COMM_WINDOW=33")

  # TESSERA_COMM=self wins over mpirun: every rank is a world of its own
  add_test(NAME comm_mpi_forced_self
           COMMAND ${TESSERA_MPIRUN} -np 2 -x TESSERA_COMM=self
                   $<TARGET_FILE:test_comm> collectives self 1)
  set_tests_properties(comm_mpi_forced_self PROPERTIES LABELS mpi TIMEOUT 60)

  # rank 2 of 3 stops (SIGSTOP) at step 7; ranks 0 and 1 give up on their all-reduce after the
  # 2 s deadline, each naming the collective and the peer it waited for (rank 0 waits on its
  # left neighbour, rank 2; rank 1 on rank 0, which is itself stuck, or on rank 2), leave status
  # files and exit 75, which mpirun passes on
  add_test(NAME comm_mpi_deadline
           COMMAND ${TESSERA_RUN_STALLED} --exit 75 --within 20
                   --match "tessera\\[0\\]: error: all-reduce \\(sum\\) at step 7: waited 2\\.[0-9] s for rank 2, which did not answer: peer lost"
                   --match "tessera\\[1\\]: error: all-reduce \\(sum\\) at step 7: waited 2\\.[0-9] s for rank [02], which did not answer: peer lost"
                   --status "rank-0.status=^reason peer_lost\\|step 7\\|collective all-reduce \\(sum\\)\\|peer 2\\|exit_code 75\\|host [^|]+\\|pid [0-9]+$"
                   --status "rank-1.status=^reason peer_lost\\|step 7\\|collective all-reduce \\(sum\\)\\|peer [02]\\|exit_code 75\\|host [^|]+\\|pid [0-9]+$"
                   --no-status rank-2.status
                   -- ${TESSERA_MPIRUN} -np 3 $<TARGET_FILE:test_comm> deadline @DIR@)
  set_tests_properties(comm_mpi_deadline PROPERTIES LABELS mpi RUN_SERIAL TRUE TIMEOUT 60
                       ENVIRONMENT_MODIFICATION "TESSERA_COMM=unset:")

  # the same for what codecs use: an all-reduce with a combine, an all-gather of variable
  # blocks (stuck in its first phase, the lengths)
  foreach(case "combine;all-reduce \\(combine\\)" "gather-v;all-gather \\(variable blocks\\)")
    list(GET case 0 which)
    list(GET case 1 re)
    add_test(NAME comm_mpi_deadline_${which}
             COMMAND ${TESSERA_RUN_STALLED} --exit 75 --within 20
                     --match "tessera\\[0\\]: error: ${re} at step 7: waited 2\\.[0-9] s for rank 2, which did not answer: peer lost"
                     --match "tessera\\[1\\]: error: ${re} at step 7: waited 2\\.[0-9] s for rank [02], which did not answer: peer lost"
                     --status "rank-0.status=^reason peer_lost\\|step 7\\|collective ${re}\\|peer 2\\|exit_code 75\\|host [^|]+\\|pid [0-9]+$"
                     --status "rank-1.status=^reason peer_lost\\|step 7\\|collective ${re}\\|peer [02]\\|exit_code 75\\|host [^|]+\\|pid [0-9]+$"
                     --no-status rank-2.status
                     -- ${TESSERA_MPIRUN} -np 3 $<TARGET_FILE:test_comm> deadline @DIR@ ${which})
    set_tests_properties(comm_mpi_deadline_${which} PROPERTIES LABELS mpi RUN_SERIAL TRUE
                         TIMEOUT 60 ENVIRONMENT_MODIFICATION "TESSERA_COMM=unset:")
  endforeach()

  # MPI_Init_thread under a 1 ms watchdog: every rank is ended with 75 and a status file
  # MPI_Init_thread under a 1 ms watchdog: the watchdog ends the process with 75 and a status
  # file. Run as a singleton (MPI_Init without mpirun): when ranks of an mpirun job die inside
  # MPI_Init, Open MPI 4.1's mpirun itself may hang on the half-started job, which would test
  # mpirun rather than the watchdog.
  add_test(NAME comm_mpi_init_watchdog
           COMMAND sh -c "d=$(mktemp -d) && $<TARGET_FILE:test_comm> init-watchdog $d 2>$d/err; \
rc=$?; cat $d/err; grep -q 'MPI_Init_thread did not return within 0.001 s' $d/err && \
grep -q '^reason peer_lost' $d/pid-*.status; st=$?; rm -rf $d; \
echo \"exit $rc (want 75), message and status file: $st (want 0)\"; [ $rc -eq 75 ] && [ $st -eq 0 ]")
  set_tests_properties(comm_mpi_init_watchdog PROPERTIES LABELS mpi TIMEOUT 60
                       ENVIRONMENT "TESSERA_COMM=mpi;OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")

  # MPI_Finalize waits for a stopped rank: the watchdog ends it after timeout_s (1 s)
  add_test(NAME comm_mpi_finalize_watchdog
           COMMAND ${TESSERA_RUN_STALLED} --exit 75 --within 15
                   --match "tessera\\[0\\]: error: MPI_Finalize did not return within 1 s: a host"
                   --status "rank-0.status=^reason peer_lost\\|step -1\\|collective MPI_Finalize\\|peer -1\\|exit_code 75\\|host [^|]+\\|pid [0-9]+$"
                   -- ${TESSERA_MPIRUN} -np 2 $<TARGET_FILE:test_comm> finalize-watchdog @DIR@)
  set_tests_properties(comm_mpi_finalize_watchdog PROPERTIES LABELS mpi RUN_SERIAL TRUE
                       TIMEOUT 60 ENVIRONMENT_MODIFICATION "TESSERA_COMM=unset:")

  # all-reduce bus bandwidth, ours beside MPI_Allreduce (run by hand; see docs/benchmarks.md)
  add_executable(comm_bench ${CMAKE_SOURCE_DIR}/bench/comm_bench.c)
  target_link_libraries(comm_bench PRIVATE tessera_runtime)
  # back-to-back all-reduces of one size, for the lab's link counters (bench/lab_ring.sh)
  add_executable(ring_bench ${CMAKE_SOURCE_DIR}/bench/ring_bench.c)
  target_link_libraries(ring_bench PRIVATE tessera_runtime)
endif()

# the schedules alone, for 1 to 9 ranks on a simulated network (no MPI needed)
tessera_unit_test(test_comm_sched SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_comm_sched.c
                  LIBS tessera_runtime)
add_test(NAME comm_sched COMMAND test_comm_sched)
set_tests_properties(comm_sched PROPERTIES LABELS unit TIMEOUT 60)
