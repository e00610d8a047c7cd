# Data-parallel tests: the reducer (buckets overlapped with backward) and ZeRO-1, on 1-4 real MPI
# ranks. Every configuration reaches the weights of the 1-rank run after 20 steps within 1e-5 per
# tensor (AdamW eps 1e-6 for the reason given in train.cmake); a fixed world size is
# bit-reproducible; the trace shows buckets starting before backward ends.
if(NOT TESSERA_HAVE_MPI)
  return()
endif()
set(DP_DIR ${TESSERA_TEST_DATA}/dp)
set(DP_CORPUS ${TESSERA_TEST_DATA}/train/corpus) # prepared by train_corpus (train.cmake)
set(DP_ARGS ${CMAKE_SOURCE_DIR}/configs/tiny.ini "--data.train=${DP_CORPUS}/train_*.bin"
    "--data.val=${DP_CORPUS}/val_*.bin" --run.out_dir=${DP_DIR}/runs --train.eps=1e-6
    --train.steps=20 --train.global_batch=12 --train.micro_batch=2 --comm.bucket_mb=0.02
    --log.every=5 --eval.every=0 --run.overwrite=true # every ctest run trains there again
    --balance.on=false) # the reducer's sums bit for bit: shares that follow timing would not be

string(REPLACE ";" " " DP_ARGS_STR "${DP_ARGS}")
string(REPLACE "*" "\\*" DP_ARGS_STR "${DP_ARGS_STR}")
string(REPLACE ";" " " TESSERA_MPIRUN_STR "${TESSERA_MPIRUN}")

set(DP_MODES plain zero nooverlap zero_nooverlap)
set(DP_FLAGS_plain --comm.zero_stage=0 --comm.overlap=true)
set(DP_FLAGS_zero --comm.zero_stage=1 --comm.overlap=true)
set(DP_FLAGS_nooverlap --comm.zero_stage=0 --comm.overlap=false)
set(DP_FLAGS_zero_nooverlap --comm.zero_stage=1 --comm.overlap=false)
foreach(mode plain zero nooverlap zero_nooverlap)
  string(REPLACE ";" " " DP_FLAGS_${mode}_STR "${DP_FLAGS_${mode}}")
endforeach()

foreach(mode ${DP_MODES})
  foreach(np 1 2 3 4)
    set(name dp_${mode}_np${np})
    add_test(NAME ${name}
             COMMAND ${TESSERA_MPIRUN} -np ${np} ${TESSERA_BIN} train ${DP_ARGS} ${DP_FLAGS_${mode}}
                     --run.name=${mode}_np${np})
    set_tests_properties(${name} PROPERTIES LABELS mpi FIXTURES_REQUIRED train_corpus
                         FIXTURES_SETUP ${name} PROCESSORS ${np})
    if(NOT (mode STREQUAL "plain" AND np EQUAL 1))
      add_test(NAME ${name}_agrees
               COMMAND test_weights_close ${DP_DIR}/runs/plain_np1/model.h5
                       ${DP_DIR}/runs/${mode}_np${np}/model.h5 1e-5)
      set_tests_properties(${name}_agrees PROPERTIES LABELS mpi
                           FIXTURES_REQUIRED "dp_plain_np1;${name}")
    endif()
  endforeach()
endforeach()

# a fixed world size is bit-reproducible, with and without ZeRO-1
foreach(case "plain;2" "zero;3")
  list(GET case 0 mode)
  list(GET case 1 np)
  set(name dp_${mode}_np${np}_again)
  add_test(NAME ${name}
           COMMAND sh -c "${TESSERA_MPIRUN_STR} -np ${np} ${TESSERA_BIN} train ${DP_ARGS_STR} \
${DP_FLAGS_${mode}_STR} --run.name=${mode}_np${np}_again && \
$<TARGET_FILE:test_weights_close> ${DP_DIR}/runs/${mode}_np${np}/model.h5 \
${DP_DIR}/runs/${mode}_np${np}_again/model.h5 0")
  set_tests_properties(${name} PROPERTIES LABELS mpi FIXTURES_REQUIRED dp_${mode}_np${np}
                       PROCESSORS ${np})
endforeach()

# shares of the global batch: split by measured speed (the default, balance.on) or uneven by
# declared speeds, the weights agree with the 1-rank run's within 1e-5 — the gradient is the sum
# over the step's sequences divided by the global batch, whoever computed which
foreach(case "balanced;3;--balance.on=true" "balanced;4;--balance.on=true"
        "uneven;3;--balance.speeds=6,3,1" "uneven;4;--balance.speeds=1,4,1,2")
  list(GET case 0 mode)
  list(GET case 1 np)
  list(GET case 2 flag)
  set(name dp_${mode}_np${np})
  add_test(NAME ${name}
           COMMAND sh -c "${TESSERA_MPIRUN_STR} -np ${np} ${TESSERA_BIN} train ${DP_ARGS_STR} ${flag} --run.name=${mode}_np${np} > ${DP_DIR}/runs/${mode}_np${np}.out 2>&1 && $<TARGET_FILE:test_weights_close> ${DP_DIR}/runs/plain_np1/model.h5 ${DP_DIR}/runs/${mode}_np${np}/model.h5 1e-5")
  set_tests_properties(${name} PROPERTIES LABELS mpi FIXTURES_REQUIRED dp_plain_np1
                       PROCESSORS ${np})
endforeach()
# the declared split is the one used: 12 sequences at speeds 6:3:1 are 8 + 3 + 1 (each sequence
# to the rank that would finish it first; ties to the lower rank)
add_test(NAME dp_uneven_np3_shares
         COMMAND sh -c "grep -q '\"shares\": \\[8, 3, 1\\]' ${DP_DIR}/runs/uneven_np3/metrics.jsonl")
set_tests_properties(dp_uneven_np3_shares PROPERTIES LABELS mpi FIXTURES_REQUIRED dp_uneven_np3)
set_tests_properties(dp_uneven_np3 PROPERTIES FIXTURES_SETUP dp_uneven_np3)

# the gradient codec `none` set explicitly is the default path bit for bit (the same bytes, the
# same sums), with and without ZeRO-1
foreach(case "plain;2" "zero;3")
  list(GET case 0 mode)
  list(GET case 1 np)
  set(name dp_${mode}_np${np}_codec_none)
  add_test(NAME ${name}
           COMMAND sh -c "${TESSERA_MPIRUN_STR} -np ${np} ${TESSERA_BIN} train ${DP_ARGS_STR} \
${DP_FLAGS_${mode}_STR} --comm.codec=none --run.name=${mode}_np${np}_codec_none && \
grep -qx 'codec = \"none\"' ${DP_DIR}/runs/${mode}_np${np}_codec_none/config.toml && \
$<TARGET_FILE:test_weights_close> ${DP_DIR}/runs/${mode}_np${np}/model.h5 \
${DP_DIR}/runs/${mode}_np${np}_codec_none/model.h5 0")
  set_tests_properties(${name} PROPERTIES LABELS mpi FIXTURES_REQUIRED dp_${mode}_np${np}
                       PROCESSORS ${np})
endforeach()

# overlap, from recorded timestamps: with overlap some bucket starts before backward ends; without
# it none does (the negative control shows the check can fail)
foreach(case "on;true;some" "off;false;none")
  list(GET case 0 tag)
  list(GET case 1 flag)
  list(GET case 2 want)
  add_test(NAME dp_overlap_${tag}
           COMMAND sh -c "${TESSERA_MPIRUN_STR} -np 2 ${TESSERA_BIN} train ${DP_ARGS_STR} \
--comm.overlap=${flag} --comm.trace=true --run.name=trace_${tag} >/dev/null && \
sh ${CMAKE_SOURCE_DIR}/tests/mpi/check_overlap.sh ${DP_DIR}/runs/trace_${tag}/comm_trace.jsonl ${want}")
  set_tests_properties(dp_overlap_${tag} PROPERTIES LABELS mpi FIXTURES_REQUIRED train_corpus
                       PROCESSORS 2 RUN_SERIAL TRUE)
endforeach()

# a hung node: rank 2 of 3 is stopped with SIGSTOP mid-run; the others exit 75 within the
# deadline + 5 s, naming the collective and the peer, and leave status files
add_test(NAME dp_peer_stopped
         COMMAND ${CMAKE_SOURCE_DIR}/tests/mpi/train_stalled.sh ${TESSERA_BIN} ${DP_DIR}/runs
                 ${DP_CORPUS} ${TESSERA_MPIRUN})
set_tests_properties(dp_peer_stopped PROPERTIES LABELS mpi FIXTURES_REQUIRED train_corpus
                     PROCESSORS 3 RUN_SERIAL TRUE TIMEOUT 120)

# planned stops: SIGUSR1 to mpirun (forwarded to the ranks) or a STOP file: every rank finishes
# the step, checkpoints, exits 0; --resume auto continues from that step
foreach(mode signal file)
  add_test(NAME dp_planned_stop_${mode}
           COMMAND ${CMAKE_SOURCE_DIR}/tests/mpi/train_stop.sh ${mode} ${TESSERA_BIN} ${DP_DIR}/runs
                   ${DP_CORPUS} ${TESSERA_MPIRUN})
  set_tests_properties(dp_planned_stop_${mode} PROPERTIES LABELS mpi FIXTURES_REQUIRED train_corpus
                       PROCESSORS 2 RUN_SERIAL TRUE TIMEOUT 120 ENVIRONMENT TESSERA_HOST=h)
endforeach()

# (a rank that dies for real at each moment and the restart: tests/cmake/launch.cmake)
add_test(NAME dp_fault_knob_malformed
         COMMAND ${CMAKE_SOURCE_DIR}/tests/expect_error.sh 2
                 "TESSERA_FAULT=\"1:x:inside:kill\": expected RANK:STEP:MOMENT:ACTION"
                 -- ${TESSERA_BIN} train ${CMAKE_SOURCE_DIR}/configs/tiny.ini)
set_tests_properties(dp_fault_knob_malformed PROPERTIES LABELS unit
                     ENVIRONMENT "TESSERA_FAULT=1:x:inside:kill")
