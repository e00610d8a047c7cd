# Checkpoint tests: real `tessera train` runs that save <run_dir>/ckpt/<host>/step-N and resume
# from it. TESSERA_HOST names the host (h, unless a test plays several hosts).
#
# Each scenario first trains 40 steps with a checkpoint every 20 (the uninterrupted run: its
# metrics.jsonl and model.h5 are copied aside), then drops the step-40 checkpoint (as if the run
# had died after step 20) and resumes with run.resume=auto: the final weights must equal the
# uninterrupted run's bit for bit (tolerance 0) and so must the losses of steps 21..40 (design
# invariant 3). The schedule keeps its cosine decay over train.steps = 40 in both runs. Then: a
# corrupted newest checkpoint is skipped for the previous one; a different model shape is refused
# with exit 2; old checkpoints are pruned to ckpt.keep. A tiny run takes well under a second.
# Further down: elastic resume (4 -> 3 -> 2 ranks) and replicas on two played hosts.
set(CKPT_DIR ${TESSERA_TEST_DATA}/ckpt)

# ckpt_dir_unit: the checkpoint root's logic with plain files, no HDF5 (tests/unit/test_ckpt_dir.c):
# names, the run identity, keep-K of the own lineage, links, half-deleted .del directories, the
# choice of the checkpoint to resume, a fresh start's check and run.overwrite
tessera_unit_test(test_ckpt_dir SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_ckpt_dir.c
                  LIBS tessera_runtime)
add_test(NAME ckpt_dir_unit COMMAND test_ckpt_dir ${CKPT_DIR}/unit)
set_tests_properties(ckpt_dir_unit PROPERTIES LABELS unit TIMEOUT 60)
# the shards of the train_corpus fixture (train.cmake, which is included after this file)
set(CKPT_CORPUS ${TESSERA_TEST_DATA}/train/corpus)
set(CKPT_EXPECT_ERROR ${CMAKE_SOURCE_DIR}/tests/expect_error.sh)
set(CKPT_ARGS ${CMAKE_SOURCE_DIR}/configs/tiny.ini "--data.train=${CKPT_CORPUS}/train_*.bin"
    "--data.val=${CKPT_CORPUS}/val_*.bin" --run.out_dir=${CKPT_DIR}/runs --train.eps=1e-6
    --train.steps=40 --ckpt.every=20 --log.every=1
    --balance.on=false) # resumes bit for bit: shares that follow timing would not be

# flip_byte.sh FILE OFFSET: replace the byte at OFFSET by its complement
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/ckpt_flip_byte.sh [=[
#!/bin/sh
set -eu
b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
printf "\\$(printf %o $((255 - b)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
]=])
# (strings, not lists: they go into `sh -c` command lines)
set(CKPT_SAME_LOSSES "sh ${CMAKE_SOURCE_DIR}/tests/ckpt/losses.sh") # A B FROM TO
set(CKPT_CLOSE_LOSSES "sh ${CMAKE_SOURCE_DIR}/tests/ckpt/losses.sh") # A B FROM TO TOL
set(CKPT_FLIP_BYTE "sh ${CMAKE_CURRENT_BINARY_DIR}/ckpt_flip_byte.sh")
string(REPLACE ";" " " CKPT_ARGS_SH "${CKPT_ARGS}")

set(CKPT_SCENARIOS np1)
if(TESSERA_HAVE_MPI)
  list(APPEND CKPT_SCENARIOS np2_zero1) # 2 ranks, moments sharded (gathered to save)
endif()

foreach(name ${CKPT_SCENARIOS})
  if(name STREQUAL "np1")
    set(launcher "${TESSERA_BIN}")
    set(extra "")
    set(procs 1)
    set(label unit)
  else()
    string(REPLACE ";" " " launcher "${TESSERA_MPIRUN} -np 2 ${TESSERA_BIN}")
    set(extra --comm.zero_stage=1)
    set(procs 2)
    set(label mpi)
  endif()
  set(run_dir ${CKPT_DIR}/runs/${name})
  set(train "${launcher} train ${CKPT_ARGS} --run.name=${name} ${extra}")
  string(REPLACE ";" " " train "${train}")
  set(straight ${CKPT_DIR}/${name}_straight)

  # the uninterrupted run, with checkpoints at steps 20 and 40
  add_test(NAME ckpt_${name}_straight
           COMMAND sh -c "rm -rf ${run_dir} && ${train} && \
[ -f ${run_dir}/ckpt/h/step-00000020/state.h5 ] && [ -f ${run_dir}/ckpt/h/step-00000040/MANIFEST ] && \
cp ${run_dir}/metrics.jsonl ${straight}.jsonl && cp ${run_dir}/model.h5 ${straight}.h5")
  # the run died after step 20: resume, continue to 40, same weights and losses
  add_test(NAME ckpt_${name}_resume
           COMMAND sh -c "rm -rf ${run_dir}/ckpt/h/step-00000040 && \
${train} --resume auto > ${run_dir}.out 2>&1; rc=$?; cat ${run_dir}.out; [ $rc -eq 0 ] && \
grep -q 'resumed from step 20 (.*step-00000020)' ${run_dir}.out && \
$<TARGET_FILE:test_weights_close> ${straight}.h5 ${run_dir}/model.h5 0 && \
${CKPT_SAME_LOSSES} ${straight}.jsonl ${run_dir}/metrics.jsonl 21 40")
  # the newest checkpoint is damaged: skipped, the previous one resumes (to the same end)
  add_test(NAME ckpt_${name}_corrupt_newest
           COMMAND sh -c "${CKPT_FLIP_BYTE} ${run_dir}/ckpt/h/step-00000040/state.h5 5000 && \
${train} --run.resume=auto > ${run_dir}.out 2>&1; rc=$?; cat ${run_dir}.out; [ $rc -eq 0 ] && \
grep -q 'skipping step-00000040: .*state.h5' ${run_dir}.out && \
grep -q 'resumed from step 20 (.*step-00000020)' ${run_dir}.out && \
$<TARGET_FILE:test_weights_close> ${straight}.h5 ${run_dir}/model.h5 0 && \
${CKPT_SAME_LOSSES} ${straight}.jsonl ${run_dir}/metrics.jsonl 21 40")
  set_tests_properties(ckpt_${name}_straight ckpt_${name}_resume ckpt_${name}_corrupt_newest
                       PROPERTIES LABELS "${label}" PROCESSORS ${procs}
                       ENVIRONMENT "OMP_NUM_THREADS=1;TESSERA_HOST=h")
  set_tests_properties(ckpt_${name}_straight PROPERTIES FIXTURES_REQUIRED train_corpus
                       FIXTURES_SETUP ckpt_${name}_a)
  set_tests_properties(ckpt_${name}_resume PROPERTIES FIXTURES_REQUIRED "train_corpus;ckpt_${name}_a"
                       FIXTURES_SETUP ckpt_${name}_b)
  set_tests_properties(ckpt_${name}_corrupt_newest PROPERTIES
                       FIXTURES_REQUIRED "train_corpus;ckpt_${name}_a;ckpt_${name}_b"
                       FIXTURES_SETUP ckpt_${name}_c)
endforeach()

# resuming with another model shape: one line naming the checkpoint and both shapes, exit 2 (by
# its path); --resume auto sees a checkpoint of another run and names the key that differs
add_test(NAME ckpt_resume_other_width
         COMMAND ${CKPT_EXPECT_ERROR} 2 "state\\.h5: the checkpoint's model .*width 32.* differs from the config's .*width 64"
                 -- ${TESSERA_BIN} train ${CKPT_ARGS} --run.name=np1 --model.width=64
                    --run.resume=${CKPT_DIR}/runs/np1/ckpt/h/step-00000040)
add_test(NAME ckpt_resume_other_width_auto
         COMMAND ${CKPT_EXPECT_ERROR} 2 "step-00000040: written by another run \\(\\[model\\] width = 32 in the checkpoint, 64 here\\); --resume auto continues only checkpoints of this run .*: a resume needs the same \\[model\\], or start a new run under another run.name$"
                 -- ${TESSERA_BIN} train ${CKPT_ARGS} --run.name=np1 --model.width=64
                    --run.resume=auto)
set_tests_properties(ckpt_resume_other_width ckpt_resume_other_width_auto PROPERTIES LABELS unit
                     ENVIRONMENT TESSERA_HOST=h
                     FIXTURES_REQUIRED "train_corpus;ckpt_np1_a;ckpt_np1_b;ckpt_np1_c")
# an explicit resume path that is not an intact checkpoint: exit 2
add_test(NAME ckpt_resume_bad_path
         COMMAND ${CKPT_EXPECT_ERROR} 2 "resume: .*nonexistent is not an intact checkpoint"
                 -- ${TESSERA_BIN} train ${CKPT_ARGS} --run.name=bad_path
                    --run.resume=${CKPT_DIR}/nonexistent)
set_tests_properties(ckpt_resume_bad_path PROPERTIES LABELS unit FIXTURES_REQUIRED train_corpus
                     ENVIRONMENT TESSERA_HOST=h)

# ckpt.keep: a checkpoint every 2 steps of 10, keep 3: steps 6, 8, 10 remain, nothing else
add_test(NAME ckpt_keep_prunes
         COMMAND sh -c "rm -rf ${CKPT_DIR}/runs/keep && ${TESSERA_BIN} train ${CKPT_ARGS_SH} \
--run.name=keep --train.steps=10 --ckpt.every=2 --ckpt.keep=3 && \
[ \"$(ls ${CKPT_DIR}/runs/keep/ckpt/h | tr '\\n' ' ')\" = 'step-00000006 step-00000008 step-00000010 ' ]")
set_tests_properties(ckpt_keep_prunes PROPERTIES LABELS unit FIXTURES_REQUIRED train_corpus
                     ENVIRONMENT "OMP_NUM_THREADS=1;TESSERA_HOST=h")

# run.resume=auto without any checkpoint: a warning, then a fresh run
add_test(NAME ckpt_auto_without_checkpoint
         COMMAND sh -c "rm -rf ${CKPT_DIR}/runs/none && ${TESSERA_BIN} train ${CKPT_ARGS_SH} \
--run.name=none --train.steps=2 --run.resume=auto > ${CKPT_DIR}/none.out 2>&1 && \
grep -q 'no intact checkpoint.*starting fresh' ${CKPT_DIR}/none.out")
set_tests_properties(ckpt_auto_without_checkpoint PROPERTIES LABELS unit
                     FIXTURES_REQUIRED train_corpus ENVIRONMENT OMP_NUM_THREADS=1)

if(TESSERA_HAVE_MPI)
  string(REPLACE ";" " " CKPT_MPIRUN "${TESSERA_MPIRUN}")

  # Elastic resume: 4 ranks train 40 steps (ZeRO-1, a checkpoint every 10); the run "died" after
  # step 20 (steps 30 and 40 dropped) and resumes on 3 ranks; that run "died" after step 30 and
  # resumes on 2 ranks. Other world sizes sum in another order, so the comparison with the straight
  # 1-rank run (ckpt_np1_straight) has tolerances: 1e-5 relative per tensor for the final weights,
  # 1e-4 absolute for the losses of steps 21..40 (AdamW eps 1e-6, see train.cmake).
  set(el_dir ${CKPT_DIR}/runs/elastic)
  set(el_train "${TESSERA_BIN} train ${CKPT_ARGS_SH} --run.name=elastic --ckpt.every=10 \
--ckpt.keep=4 --comm.zero_stage=1 --data.log_samples=true")
  add_test(NAME ckpt_elastic_4_3_2
           COMMAND sh -c "rm -rf ${el_dir} && ${CKPT_MPIRUN} -np 4 ${el_train} && \
rm -rf ${el_dir}/ckpt/h/step-00000030 ${el_dir}/ckpt/h/step-00000040 && \
${CKPT_MPIRUN} -np 3 ${el_train} --run.resume=auto > ${el_dir}.out3 2>&1; rc=$?; \
cat ${el_dir}.out3; [ $rc -eq 0 ] && grep -q 'resumed from step 20 (held by rank 0 on host h' ${el_dir}.out3 && \
${CKPT_CLOSE_LOSSES} ${CKPT_DIR}/np1_straight.jsonl ${el_dir}/metrics.jsonl 21 40 1e-4 && \
rm -rf ${el_dir}/ckpt/h/step-00000040 && \
${CKPT_MPIRUN} -np 2 ${el_train} --run.resume=auto > ${el_dir}.out2 2>&1; rc=$?; \
cat ${el_dir}.out2; [ $rc -eq 0 ] && grep -q 'resumed from step 30 (held by rank 0 on host h' ${el_dir}.out2 && \
${CKPT_CLOSE_LOSSES} ${CKPT_DIR}/np1_straight.jsonl ${el_dir}/metrics.jsonl 31 40 1e-4 && \
$<TARGET_FILE:test_weights_close> ${CKPT_DIR}/np1_straight.h5 ${el_dir}/model.h5 1e-5 && \
${CMAKE_SOURCE_DIR}/tests/ckpt/check_lineage.sh ${el_dir} 40 6")
  set_tests_properties(ckpt_elastic_4_3_2 PROPERTIES LABELS mpi PROCESSORS 2
                       FIXTURES_REQUIRED "train_corpus;ckpt_np1_a"
                       ENVIRONMENT "OMP_NUM_THREADS=1;TESSERA_HOST=h")

  # Replicas without a shared disk: two ranks play hosts a and b (mpirun's MPMD syntax gives each
  # its own TESSERA_HOST); with ckpt.replicas = 2 both write a full copy (ZeRO-1: the moments are
  # gathered to both). 20 steps, checkpoints at 10 and 20; the untouched tree is kept aside.
  # Then a's root is lost (and b's step 20, as if the run died after step 10): the resume reads
  # b's copy on rank 1 and ends bit-identical to the uninterrupted run; the same with b lost.
  set(rep_dir ${CKPT_DIR}/runs/replicas)
  set(rep_one "${TESSERA_BIN} train ${CKPT_ARGS_SH} --run.name=replicas --train.steps=20 \
--ckpt.every=10 --ckpt.replicas=2 --comm.zero_stage=1")
  set(rep_train "${CKPT_MPIRUN} -np 1 -x TESSERA_HOST=a ${rep_one} : -np 1 -x TESSERA_HOST=b ${rep_one}")
  set(rep_resume "${CKPT_MPIRUN} -np 1 -x TESSERA_HOST=a ${rep_one} --run.resume=auto : \
-np 1 -x TESSERA_HOST=b ${rep_one} --run.resume=auto")
  add_test(NAME ckpt_replicas_straight
           COMMAND sh -c "rm -rf ${rep_dir} ${rep_dir}.orig && ${rep_train} && \
[ -f ${rep_dir}/ckpt/a/step-00000010/MANIFEST ] && [ -f ${rep_dir}/ckpt/b/step-00000010/MANIFEST ] && \
[ -f ${rep_dir}/ckpt/a/step-00000020/MANIFEST ] && [ -f ${rep_dir}/ckpt/b/step-00000020/MANIFEST ] && \
cmp ${rep_dir}/ckpt/a/step-00000010/state.h5 ${rep_dir}/ckpt/b/step-00000010/state.h5 && \
cp -r ${rep_dir}/ckpt ${rep_dir}.orig && \
cp ${rep_dir}/metrics.jsonl ${rep_dir}_straight.jsonl && cp ${rep_dir}/model.h5 ${rep_dir}_straight.h5")
  foreach(lost a b)
    if(lost STREQUAL "a")
      set(kept b)
      set(holder 1)
    else()
      set(kept a)
      set(holder 0)
    endif()
    add_test(NAME ckpt_replicas_lose_${lost}
             COMMAND sh -c "rm -rf ${rep_dir}/ckpt && cp -r ${rep_dir}.orig ${rep_dir}/ckpt && \
rm -rf ${rep_dir}/ckpt/${lost} ${rep_dir}/ckpt/${kept}/step-00000020 && \
${rep_resume} > ${rep_dir}.out 2>&1; rc=$?; cat ${rep_dir}.out; [ $rc -eq 0 ] && \
grep -q 'resumed from step 10 (held by rank ${holder} on host ${kept}: .*ckpt/${kept}/step-00000010)' ${rep_dir}.out && \
$<TARGET_FILE:test_weights_close> ${rep_dir}_straight.h5 ${rep_dir}/model.h5 0 && \
${CKPT_SAME_LOSSES} ${rep_dir}_straight.jsonl ${rep_dir}/metrics.jsonl 11 20")
    set_tests_properties(ckpt_replicas_lose_${lost} PROPERTIES
                         FIXTURES_REQUIRED "train_corpus;ckpt_replicas"
                         RESOURCE_LOCK ckpt_replicas)
  endforeach()
  set_tests_properties(ckpt_replicas_straight PROPERTIES FIXTURES_REQUIRED train_corpus
                       FIXTURES_SETUP ckpt_replicas)
  set_tests_properties(ckpt_replicas_straight ckpt_replicas_lose_a ckpt_replicas_lose_b PROPERTIES
                       LABELS mpi PROCESSORS 2 ENVIRONMENT OMP_NUM_THREADS=1)

  # A fresh start over checkpoints that only rank 1's host (b) holds: refused by that rank, one
  # error line for the job, exit 2 on every rank, nothing written
  set(fr_dir ${CKPT_DIR}/runs/fresh_mpi)
  set(fr_one "${TESSERA_BIN} train ${CKPT_ARGS_SH} --run.name=fresh_mpi --train.steps=2 \
--ckpt.every=2")
  add_test(NAME ckpt_fresh_refused_mpi
           COMMAND sh -c "rm -rf ${fr_dir} && TESSERA_HOST=b ${fr_one} > /dev/null && \
rm ${fr_dir}/model.h5 ${fr_dir}/metrics.jsonl ${fr_dir}/train.log ${fr_dir}/config.toml && \
${CKPT_EXPECT_ERROR} 2 'ckpt/b: holds checkpoints of an earlier run \\(step-00000002\\)' -- \
${CKPT_MPIRUN} -np 1 -x TESSERA_HOST=a ${fr_one} : -np 1 -x TESSERA_HOST=b ${fr_one} && \
[ ! -e ${fr_dir}/metrics.jsonl ] && [ ! -e ${fr_dir}/ckpt/a ] && \
[ \"$(ls ${fr_dir}/ckpt/b)\" = step-00000002 ]")
  set_tests_properties(ckpt_fresh_refused_mpi PROPERTIES LABELS mpi PROCESSORS 2
                       FIXTURES_REQUIRED train_corpus ENVIRONMENT OMP_NUM_THREADS=1)
endif()

# Fault tests of the background writer (scripts in tests/ckpt/, real processes and files).
# A newest checkpoint whose state.h5 is truncated, or whose MANIFEST is deleted, is skipped for
# the previous one (a flipped byte: ckpt_*_corrupt_newest above). 10 steps, saves at 5 and 10.
foreach(damage truncated no_manifest)
  set(dmg_dir ${CKPT_DIR}/runs/dmg_${damage})
  if(damage STREQUAL "truncated")
    set(do_damage "truncate -s 100000 ${dmg_dir}/ckpt/h/step-00000010/state.h5")
    set(why "state.h5")
  else()
    set(do_damage "rm ${dmg_dir}/ckpt/h/step-00000010/MANIFEST")
    set(why "MANIFEST")
  endif()
  add_test(NAME ckpt_newest_${damage}
           COMMAND sh -c "rm -rf ${dmg_dir} && ${TESSERA_BIN} train ${CKPT_ARGS_SH} \
--run.name=dmg_${damage} --train.steps=10 --ckpt.every=5 > ${dmg_dir}.out1 2>&1 && \
${do_damage} && ${TESSERA_BIN} train ${CKPT_ARGS_SH} --run.name=dmg_${damage} --train.steps=10 \
--ckpt.every=5 --run.resume=auto > ${dmg_dir}.out 2>&1; rc=$?; cat ${dmg_dir}.out; [ $rc -eq 0 ] && \
grep -q 'skipping step-00000010: .*${why}' ${dmg_dir}.out && \
grep -q 'resumed from step 5 (.*step-00000005)' ${dmg_dir}.out")
  set_tests_properties(ckpt_newest_${damage} PROPERTIES LABELS unit FIXTURES_REQUIRED train_corpus
                       ENVIRONMENT "OMP_NUM_THREADS=1;TESSERA_HOST=h")
endforeach()

# A process SIGKILLed while its writer is in the middle of a save (a save after every step keeps
# the writer busy nearly all the time), at three delays: the resume uses the newest step directory
# whose manifest verifies, and the interrupted save's .tmp directory is removed.
set(kill_delays 0.05 0.13 0.29)
foreach(i 1 2 3)
  math(EXPR idx "${i} - 1")
  list(GET kill_delays ${idx} delay)
  add_test(NAME ckpt_kill_writer_${i}
           COMMAND sh ${CMAKE_SOURCE_DIR}/tests/ckpt/kill_resume.sh ${TESSERA_BIN}
                   ${CKPT_DIR}/runs kill_${i} ${delay} ${CMAKE_SOURCE_DIR}/configs/tiny.ini
                   "--data.train=${CKPT_CORPUS}/train_*.bin" "--data.val=${CKPT_CORPUS}/val_*.bin")
  set_tests_properties(ckpt_kill_writer_${i} PROPERTIES LABELS unit FIXTURES_REQUIRED train_corpus
                       ENVIRONMENT "OMP_NUM_THREADS=1;TESSERA_HOST=h" TIMEOUT 60)
endforeach()

# Checkpoints that cannot be written (a file-size limit stands in for a full disk): the failures
# are logged and training goes on; ckpt.max_failures consecutive ones stop the run (exit 1, one
# error line); with a high limit the run finishes (exit 0); the previous checkpoint stays intact.
add_test(NAME ckpt_disk_full
         COMMAND sh ${CMAKE_SOURCE_DIR}/tests/ckpt/disk_full.sh ${TESSERA_BIN} ${CKPT_DIR}/runs
                 disk_full ${CMAKE_SOURCE_DIR}/configs/tiny.ini
                 "--data.train=${CKPT_CORPUS}/train_*.bin" "--data.val=${CKPT_CORPUS}/val_*.bin")
set_tests_properties(ckpt_disk_full PROPERTIES LABELS unit FIXTURES_REQUIRED train_corpus
                     ENVIRONMENT "OMP_NUM_THREADS=1;TESSERA_HOST=h")

# What a start may do to a run directory (tests/ckpt/run_dir.sh): a failed start leaves a finished
# run byte-identical; a fresh start over another run's checkpoints or results is refused unless
# run.overwrite; stray, foreign, linked and half-deleted step directories; keep-K counts only
# the run's own lineage; checkpoints written before run identities; --resume PATH with a change.
foreach(scenario failed_start fresh_over_ckpt stray keep_lineage symlink half_deleted overwrite
                 legacy by_path)
  add_test(NAME ckpt_run_dir_${scenario}
           COMMAND sh ${CMAKE_SOURCE_DIR}/tests/ckpt/run_dir.sh ${scenario} ${TESSERA_BIN}
                   $<TARGET_FILE:test_ckpt_dir> ${CKPT_EXPECT_ERROR} ${CKPT_DIR}/run_dir
                   ${CMAKE_SOURCE_DIR}/configs/tiny.ini "--data.train=${CKPT_CORPUS}/train_*.bin"
                   "--data.val=${CKPT_CORPUS}/val_*.bin")
  set_tests_properties(ckpt_run_dir_${scenario} PROPERTIES LABELS unit TIMEOUT 120
                       FIXTURES_REQUIRED train_corpus)
endforeach()
