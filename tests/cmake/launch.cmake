# The launcher (scripts/launch, the package scripts/tessera_launch). Its decisions (classify a
# job's end, the restart policy, host names and choice, launch-id matching, the pid and STOP
# files) are pure functions with table-driven unit tests (tests/launch/test_*.py); then real
# failures: real mpirun, real ranks killed or stopped by real signals, several "hosts" on this
# machine (TESSERA_HOST per rank, a probe the test controls). Every scenario is described in
# tests/launch/scenario.sh. Timing-sensitive: serial.
find_program(TESSERA_PYTHON3 python3)
if(NOT TESSERA_PYTHON3)
  message(WARNING "python3 not found: the launcher tests are left out")
  return()
endif()

foreach(unit classify policy hosts launch_id control output cleanup)
  add_test(NAME launch_unit_${unit}
           COMMAND ${TESSERA_PYTHON3} -m unittest -v test_${unit}
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/tests/launch)
  set_tests_properties(launch_unit_${unit} PROPERTIES LABELS "unit;launch"
                       ENVIRONMENT "PYTHONPATH=${CMAKE_SOURCE_DIR}/scripts;PYTHONDONTWRITEBYTECODE=1")
endforeach()

if(NOT TESSERA_HAVE_MPI)
  return()
endif()
string(REPLACE ";" " " LAUNCH_MPIRUN_STR "${TESSERA_MPIRUN}")
set(LAUNCH_ENV
    "TESSERA=${TESSERA_BIN}" "CORPUS=${TESSERA_TEST_DATA}/train/corpus"
    "RUNS=${TESSERA_TEST_DATA}/launch" "TESSERA_MPIRUN=${LAUNCH_MPIRUN_STR}"
    "WEIGHTS_CLOSE=$<TARGET_FILE:test_weights_close>"
    "CHECK_LINEAGE=${CMAKE_SOURCE_DIR}/tests/ckpt/check_lineage.sh"
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1)

function(launch_test name)
  cmake_parse_arguments(L "" "PROCESSORS" "ARGS;FIXTURES" ${ARGN})
  add_test(NAME ${name} COMMAND ${CMAKE_SOURCE_DIR}/tests/launch/scenario.sh ${L_ARGS})
  set_tests_properties(${name} PROPERTIES LABELS "mpi;launch" ENVIRONMENT "${LAUNCH_ENV}"
                       PROCESSORS ${L_PROCESSORS} RUN_SERIAL TRUE TIMEOUT 300
                       FIXTURES_REQUIRED "train_corpus;${L_FIXTURES}")
endfunction()

launch_test(launch_ref ARGS ref PROCESSORS 2)
set_tests_properties(launch_ref PROPERTIES FIXTURES_SETUP launch_ref)

# a rank SIGKILLed before, inside and after the gradient reduction and while writing a checkpoint:
# one restart, resumed from the newest committed checkpoint, bit-identical to the reference. The
# kill during the save of step 10 runs with one copy (ckpt.replicas = 1, written by rank 0 only):
# the interrupted save must not count, the restart resumes from step 5.
foreach(case "1:12:before:kill;10" "1:12:inside:kill;10" "1:12:after:kill;10"
        "0:10:ckpt:kill;5;--ckpt.replicas=1")
  list(GET case 0 spec)
  list(GET case 1 want)
  set(extra "")
  list(LENGTH case n)
  if(n GREATER 2)
    list(GET case 2 extra)
  endif()
  string(REPLACE ":" "_" tag "${spec}")
  launch_test(launch_crash_${tag} ARGS crash ${spec} ${want} ${extra} PROCESSORS 2
              FIXTURES launch_ref)
endforeach()
launch_test(launch_hung ARGS hung 1:12:inside:stop 10 PROCESSORS 2 FIXTURES launch_ref)
launch_test(launch_host_lost ARGS host_lost PROCESSORS 3)
launch_test(launch_host_back ARGS host_back PROCESSORS 3)
launch_test(launch_stop ARGS stop PROCESSORS 2 FIXTURES launch_ref)
launch_test(launch_interrupt ARGS interrupt PROCESSORS 2)
launch_test(launch_drain ARGS drain PROCESSORS 3)
launch_test(launch_join ARGS join PROCESSORS 3)
launch_test(launch_bad_input ARGS bad_input PROCESSORS 2)
# a bug is never retried: a rank reporting an internal error, and a rank exiting 70 without a
# status file on a host that still answers (an exit path that does not report)
launch_test(launch_not_retried_panic
            ARGS not_retried 1:12:before:panic "a rank hit an internal error" PROCESSORS 2)
launch_test(launch_not_retried_exit70
            ARGS not_retried 1:12:before:exit70
                 "rank 1 exited 70 without a status file on host b, which still answers"
            PROCESSORS 2)
launch_test(launch_stale_pid ARGS stale_pid PROCESSORS 2)
launch_test(launch_stop_dir ARGS stop_dir PROCESSORS 2)
launch_test(launch_remote ARGS remote PROCESSORS 2 FIXTURES launch_ref)
launch_test(launch_node_sigterm ARGS node_sigterm PROCESSORS 2 FIXTURES launch_ref)
launch_test(launch_host_frozen ARGS host_frozen PROCESSORS 2)
set_tests_properties(launch_remote launch_node_sigterm launch_host_frozen PROPERTIES
                     SKIP_RETURN_CODE 77)

# the launcher's own input: one error line naming the file and line, exit 2, nothing started
add_test(NAME launch_bad_hostfile
         COMMAND sh -c "d=${TESSERA_TEST_DATA}/launch/badhosts && mkdir -p $d && \
printf 'a\\nb slots=x\\n' > $d/hosts && \
${CMAKE_SOURCE_DIR}/tests/expect_error.sh 2 'launch: error: .*/hosts:2: \"slots=x\": expected slots=N' -- \
${CMAKE_SOURCE_DIR}/scripts/launch run --local --hostfile $d/hosts -- ${CMAKE_SOURCE_DIR}/configs/tiny.ini")
set_tests_properties(launch_bad_hostfile PROPERTIES LABELS "unit;launch")
add_test(NAME launch_bad_config
         COMMAND sh -c "d=${TESSERA_TEST_DATA}/launch/badconfig && mkdir -p $d && \
printf 'a\\n' > $d/hosts && \
${CMAKE_SOURCE_DIR}/tests/expect_error.sh 2 'train.stepz: unknown key' -- \
${CMAKE_SOURCE_DIR}/scripts/launch run --local --hostfile $d/hosts --tessera ${TESSERA_BIN} -- \
${CMAKE_SOURCE_DIR}/configs/tiny.ini --train.stepz=3 && test ! -e $d/launch")
set_tests_properties(launch_bad_config PROPERTIES LABELS "unit;launch")
# a host name that begins with '-' would reach ssh as an option
add_test(NAME launch_bad_hostname
         COMMAND sh -c "d=${TESSERA_TEST_DATA}/launch/badname && mkdir -p $d && \
printf 'a\\n-G slots=1\\n' > $d/hosts && \
${CMAKE_SOURCE_DIR}/tests/expect_error.sh 2 'launch: error: .*/hosts:2: \"-G\": expected a host name' -- \
${CMAKE_SOURCE_DIR}/scripts/launch run --local --hostfile $d/hosts -- ${CMAKE_SOURCE_DIR}/configs/tiny.ini")
set_tests_properties(launch_bad_hostname PROPERTIES LABELS "unit;launch")
# drain/admit: the host argument is a host name
foreach(case "empty;''" "slash;a/b" "dash;-- -G")
  list(GET case 0 tag)
  list(GET case 1 host)
  add_test(NAME launch_drain_bad_host_${tag}
           COMMAND sh -c "${CMAKE_SOURCE_DIR}/tests/expect_error.sh 2 \
'launch: error: drain: \".*\": expected a host name' -- \
${CMAKE_SOURCE_DIR}/scripts/launch drain ${host} ${TESSERA_TEST_DATA}/launch/none")
  set_tests_properties(launch_drain_bad_host_${tag} PROPERTIES LABELS "unit;launch")
endforeach()
add_test(NAME launch_no_launcher
         COMMAND ${CMAKE_SOURCE_DIR}/tests/expect_error.sh 2 "no launcher runs this run" --
                 ${CMAKE_SOURCE_DIR}/scripts/launch drain b ${TESSERA_TEST_DATA}/launch/none)
set_tests_properties(launch_no_launcher PROPERTIES LABELS "unit;launch")

# tessera config: the check the launcher runs before anything starts
add_test(NAME config_command_resolves
         COMMAND sh -c "${TESSERA_BIN} config ${CMAKE_SOURCE_DIR}/configs/tiny.ini \
--train.steps=7 --world=3 | grep -qx 'steps = 7'")
set_tests_properties(config_command_resolves PROPERTIES LABELS unit)
add_test(NAME config_command_world
         COMMAND ${CMAKE_SOURCE_DIR}/tests/expect_error.sh 2
                 "--train.global_batch=2: expected at least the number of ranks \\(3\\)" --
                 ${TESSERA_BIN} config ${CMAKE_SOURCE_DIR}/configs/tiny.ini
                 --train.global_batch=2 --world=3)
set_tests_properties(config_command_world PROPERTIES LABELS unit)
