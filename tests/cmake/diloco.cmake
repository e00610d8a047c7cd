# Local SGD (runtime/train_outer.c) end to end with real ranks (tests/mpi/diloco.sh):
#   diloco_plain             one inner step, outer lr 1, no momentum, inner SGD, 3 ranks with
#                            uneven shares: the weights of plain data parallelism (within 1e-5);
#                            _uneven: shares 2/5/3 declared (balance.speeds), pseudo-gradients
#                            weighted by the samples each rank trained
#   diloco_resume_*          a rank killed after a checkpoint: the resume gives the uninterrupted
#                            run's weights bit for bit, and the samples' lineage is exact — plain
#                            local SGD, with the int8 codec, streaming, streaming with int8
#   diloco_fragments         checkpoints resumed with another diloco.fragments: from the anchor
#   diloco_world_3_2         3 ranks die, 2 resume: rank 0's inner state for both, lineage exact,
#                            final loss within 3% of the uninterrupted run
# (The config checks of [diloco]: tests/config/bad/diloco_*.ini.)
if(TESSERA_HAVE_MPI)
  set(DILOCO_DIR ${TESSERA_TEST_DATA}/diloco)
  file(MAKE_DIRECTORY ${DILOCO_DIR})
  set(diloco_cases "plain|" "plain_uneven|--balance.speeds=1,3,2" "resume_local|"
      "resume_int8|--comm.codec=int8"
      "resume_streaming|--diloco.fragments=5"
      "resume_streaming_int8|--diloco.fragments=5 --comm.codec=int8" "world_3_2|"
      "fragments|")
  foreach(entry ${diloco_cases})
    string(REPLACE "|" ";" parts "${entry}")
    list(GET parts 0 name)
    list(LENGTH parts n_parts)
    set(extra "")
    if(n_parts GREATER 1)
      list(GET parts 1 extra)
    endif()
    string(REGEX REPLACE "_.*" "" check "${name}")
    if(check STREQUAL "world")
      set(check world)
    endif()
    add_test(NAME diloco_${name}
             COMMAND ${CMAKE_SOURCE_DIR}/tests/mpi/diloco.sh ${check} "${extra}" ${TESSERA_BIN}
                     $<TARGET_FILE:test_weights_close> ${DILOCO_DIR}/${name}
                     ${TESSERA_TEST_DATA}/train/corpus ${TESSERA_MPIRUN})
    set_tests_properties(diloco_${name} PROPERTIES LABELS mpi TIMEOUT 300 PROCESSORS 2
                         FIXTURES_REQUIRED train_corpus ENVIRONMENT OMP_NUM_THREADS=1)
  endforeach()
endif()
