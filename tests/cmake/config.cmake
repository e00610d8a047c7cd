# Config tests (runtime/config*.c, runtime/balance.c).
#
# config_unit: the key table, parser, overrides, round trip, cross-key checks (and the origin
# each of their errors names: file line, override or default) and batch split, plus every case
# file of tests/config/bad and every shipped config in configs/.
#
# config_bad_<case>: the command line's answer to each tests/config/bad/<case>.ini — exit 2 and
# one error line matching the case's "# expect:" regex. A case file may also hold
#   # args: ARG ...     overrides passed after the file
#   # ranks: 1 2        run as one process (1) and/or under mpirun -np 2 (2); default 1
# Under mpirun only rank 0 reports and every rank exits 2, so the line still appears once.

set(TESSERA_CONFIG_DIR ${CMAKE_SOURCE_DIR}/tests/config)
set(TESSERA_EXPECT_ERROR ${CMAKE_SOURCE_DIR}/tests/expect_error.sh)

# built from its sources so that the config layer tests alone, whatever the other layers' state
tessera_unit_test(test_config
                  SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_config.c
                          ${CMAKE_SOURCE_DIR}/runtime/config.c ${CMAKE_SOURCE_DIR}/runtime/config_file.c
                          ${CMAKE_SOURCE_DIR}/runtime/config_value.c
                          ${CMAKE_SOURCE_DIR}/runtime/config_check.c ${CMAKE_SOURCE_DIR}/runtime/balance.c
                  LIBS tessera_base tessera_backends tessera_models_f32 PkgConfig::INIH PkgConfig::XXHASH m)
add_test(NAME config_unit COMMAND test_config ${TESSERA_CONFIG_DIR}/bad ${CMAKE_SOURCE_DIR}/configs)
set_tests_properties(config_unit PROPERTIES LABELS unit TIMEOUT 30)

file(GLOB TESSERA_CONFIG_CASES CONFIGURE_DEPENDS ${TESSERA_CONFIG_DIR}/bad/*.ini)
foreach(case_file ${TESSERA_CONFIG_CASES})
  get_filename_component(case ${case_file} NAME_WE)
  # the header lines are read here: editing them must configure again
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${case_file})
  file(STRINGS ${case_file} header REGEX "^# (expect|args|ranks): ")
  set(expect "")
  set(args "")
  set(ranks 1)
  foreach(line ${header})
    if(line MATCHES "^# expect: (.*)$")
      set(expect "${CMAKE_MATCH_1}")
    elseif(line MATCHES "^# args: (.*)$")
      separate_arguments(args UNIX_COMMAND "${CMAKE_MATCH_1}")
    elseif(line MATCHES "^# ranks: (.*)$")
      separate_arguments(ranks UNIX_COMMAND "${CMAKE_MATCH_1}")
    endif()
  endforeach()
  if(expect STREQUAL "")
    message(FATAL_ERROR "${case_file}: no \"# expect: REGEX\" line")
  endif()

  if(1 IN_LIST ranks)
    add_test(NAME config_bad_${case}
             COMMAND ${TESSERA_EXPECT_ERROR} 2 "${expect}"
                     -- ${TESSERA_BIN} train ${case_file} ${args})
    set_tests_properties(config_bad_${case} PROPERTIES LABELS unit TIMEOUT 30)
  endif()
  if(2 IN_LIST ranks)
    if(TESSERA_HAVE_MPI)
      add_test(NAME config_bad_${case}_mpi
               COMMAND ${TESSERA_EXPECT_ERROR} 2 "${expect}"
                       -- ${TESSERA_MPIRUN} -np 2 ${TESSERA_BIN} train ${case_file} ${args})
      set_tests_properties(config_bad_${case}_mpi PROPERTIES LABELS mpi TIMEOUT 60)
    else()
      add_test(NAME config_bad_${case}_mpi COMMAND sh -c "exit 77")
      set_tests_properties(config_bad_${case}_mpi PROPERTIES LABELS mpi SKIP_RETURN_CODE 77)
    endif()
  endif()
endforeach()

# a config file that does not exist
add_test(NAME config_bad_missing_file
         COMMAND ${TESSERA_EXPECT_ERROR} 2
                 "no_such_config\\.ini: cannot open config file: No such file or directory$"
                 -- ${TESSERA_BIN} train ${TESSERA_CONFIG_DIR}/no_such_config.ini)
set_tests_properties(config_bad_missing_file PROPERTIES LABELS unit TIMEOUT 30)

# the balancing state a resume reads from /balance: a good one back, every damaged kind refused
tessera_unit_test(test_balance_state SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_balance_state.c
                  LIBS tessera_runtime)
add_test(NAME balance_state_unit COMMAND test_balance_state)
set_tests_properties(balance_state_unit PROPERTIES LABELS unit TIMEOUT 30)
