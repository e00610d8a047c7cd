# Gradient codec tests (collectives/codec*.c, runtime/ckpt_codec.c).
#
# test_codec (tests/mpi/test_codec.c), alone and under mpirun with 1 to 3 ranks: the registry,
# `none` against the plain float collectives bit for bit, the two other wires and the reducer
# through test codecs, small tensors sent dense (comm.dense_below), zstd and damaged payloads, the
# compressing codecs (bf16, int8, int4, int2, topk against a simulation of every rank) and
# powersgd, the state hooks (pack, unpack, gathered for a checkpoint, restored on resume).
# test_ckpt_codec: the state in a checkpoint's /codec group, and the group as it has
# always been without state. (The unknown-codec config errors: tests/config/bad/codec_*.ini; the
# explicit `none` run against the default one: dp.cmake.)

tessera_unit_test(test_codec SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/mpi/test_codec.c
                  LIBS tessera_runtime)
add_test(NAME codec_self COMMAND test_codec self 1)
set_tests_properties(codec_self PROPERTIES LABELS unit TIMEOUT 30
                     ENVIRONMENT_MODIFICATION
                     "OMPI_COMM_WORLD_SIZE=unset:;PMIX_RANK=unset:;TESSERA_COMM=unset:")

if(TESSERA_HAVE_MPI)
  foreach(np 1 2 3)
    add_test(NAME codec_mpi_np${np}
             COMMAND ${TESSERA_MPIRUN} -np ${np} $<TARGET_FILE:test_codec> mpi ${np})
    set_tests_properties(codec_mpi_np${np} PROPERTIES LABELS mpi TIMEOUT 60
                         ENVIRONMENT_MODIFICATION "TESSERA_COMM=unset:")
  endforeach()
endif()

tessera_unit_test(test_ckpt_codec SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_ckpt_codec.c
                  LIBS tessera_runtime)
set(CODEC_CKPT_DIR ${TESSERA_TEST_DATA}/codec)
file(MAKE_DIRECTORY ${CODEC_CKPT_DIR})
add_test(NAME codec_ckpt_unit COMMAND test_ckpt_codec ${CODEC_CKPT_DIR})
set_tests_properties(codec_ckpt_unit PROPERTIES LABELS unit TIMEOUT 30)

# stateful codecs end to end (tests/mpi/codec_resume.sh): 2 ranks train with the codec (the loss
# falls), and a run whose rank 1 is killed after the checkpoint of step 10 resumes, the codec's
# error feedback (powersgd: and its warm-started Q) restored per rank, to the uninterrupted run's
# weights bit for bit. topk sends a fifth of each bucket: with its default of 1%, or 5%, the loss
# falls but ends more than 5% above the run without a codec after 20 steps of the tiny model.
set(CODEC_RESUME_OPTS_topk --comm.topk_fraction=0.2)
if(TESSERA_HAVE_MPI)
  foreach(codec bf16 int8 int2 topk powersgd)
    add_test(NAME codec_resume_${codec}
             COMMAND ${CMAKE_SOURCE_DIR}/tests/mpi/codec_resume.sh ${CODEC_RESUME_OPTS_${codec}}
                     ${codec} ${TESSERA_BIN}
                     $<TARGET_FILE:test_weights_close> ${CODEC_CKPT_DIR}
                     ${TESSERA_TEST_DATA}/train/corpus ${TESSERA_MPIRUN})
    set_tests_properties(codec_resume_${codec} PROPERTIES LABELS mpi TIMEOUT 300 PROCESSORS 2
                         FIXTURES_REQUIRED train_corpus ENVIRONMENT OMP_NUM_THREADS=1)
  endforeach()
endif()
