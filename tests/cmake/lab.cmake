# The lab (scripts/lab, the package scripts/tessera_lab): real hosts as network namespaces on one
# machine, shaped links, CPU limits, faults, and a short chaos run of the launcher across 4 of
# them (tests/lab/chaos.sh, tests/lab/cpu.sh). Needs root and network namespaces (lab_cpu also
# the cgroup v1 cpu controller): skipped (77), not passed, where they cannot be made.
find_program(TESSERA_PYTHON3 python3)
if(NOT TESSERA_PYTHON3)
  return()
endif()
# its pure parts (the fault schedule, the report's parsing and pairing): no root needed
add_test(NAME lab_unit COMMAND ${TESSERA_PYTHON3} -m unittest -v test_lab
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/tests/lab)
set_tests_properties(lab_unit PROPERTIES LABELS "unit;lab"
                     ENVIRONMENT "PYTHONPATH=${CMAKE_SOURCE_DIR}/scripts;PYTHONDONTWRITEBYTECODE=1")
# CPU limits: the speeds of 4 hosts capped at 0.4/0.4/0.2/0.1 cores, slow, down (no MPI needed)
add_test(NAME lab_cpu COMMAND ${CMAKE_SOURCE_DIR}/tests/lab/cpu.sh)
set_tests_properties(lab_cpu PROPERTIES LABELS lab RUN_SERIAL TRUE TIMEOUT 120
                     SKIP_RETURN_CODE 77 PROCESSORS 2)
if(NOT TESSERA_HAVE_MPI)
  return()
endif()
foreach(mode check chaos)
  add_test(NAME lab_${mode} COMMAND ${CMAKE_SOURCE_DIR}/tests/lab/chaos.sh ${mode})
  set_tests_properties(lab_${mode} PROPERTIES LABELS lab RUN_SERIAL TRUE TIMEOUT 600
                       SKIP_RETURN_CODE 77 FIXTURES_REQUIRED train_corpus PROCESSORS 2
                       ENVIRONMENT "CORPUS=${TESSERA_TEST_DATA}/train/corpus;RUNS=${TESSERA_TEST_DATA}/lab")
endforeach()
