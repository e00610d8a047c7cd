# Checkpoint tests: real `tessera train` runs that save <run_dir>/ckpt/step-N and resume from it.
#
# Each scenario first trains 40 steps with a checkpoint every 20 (the uninterrupted run: its
# metrics.jsonl and model.h5 are copied aside), then drops the step-40 checkpoint (as if the run
# had died after step 20) and resumes with run.resume=auto: the final weights must equal the
# uninterrupted run's bit for bit (tolerance 0) and so must the losses of steps 21..40 (design
# invariant 3). The schedule keeps its cosine decay over train.steps = 40 in both runs. Then: a
# corrupted newest checkpoint is skipped for the previous one; a different model shape is refused
# with exit 2; old checkpoints are pruned to ckpt.keep. A tiny run takes well under a second.
set(CKPT_DIR ${TESSERA_TEST_DATA}/ckpt)
# the shards of the train_corpus fixture (train.cmake, which is included after this file)
set(CKPT_CORPUS ${TESSERA_TEST_DATA}/train/corpus)
set(CKPT_EXPECT_ERROR ${CMAKE_SOURCE_DIR}/tests/expect_error.sh)
set(CKPT_ARGS ${CMAKE_SOURCE_DIR}/configs/tiny.ini "--data.train=${CKPT_CORPUS}/train_*.bin"
    "--data.val=${CKPT_CORPUS}/val_*.bin" --run.out_dir=${CKPT_DIR}/runs --train.eps=1e-6
    --train.steps=40 --ckpt.every=20 --log.every=1)

# same_losses.sh A B FROM TO: metrics files A and B hold the same loss (as printed) for each step
# FROM..TO, one line per step
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/ckpt_same_losses.sh [=[
#!/bin/sh
set -u
pick() {
    awk -v from="$2" -v to="$3" '{
        s = $0; sub(/.*"step": /, "", s); sub(/[,}].*/, "", s)
        l = $0; sub(/.*"loss": /, "", l); sub(/[,}].*/, "", l)
        if (s + 0 >= from + 0 && s + 0 <= to + 0) print s, l
    }' "$1"
}
a=$(pick "$1" "$3" "$4") b=$(pick "$2" "$3" "$4")
n=$(printf '%s\n' "$a" | grep -c .)
if [ "$n" -ne $(($4 - $3 + 1)) ]; then
    echo "same_losses: $1 has $n loss lines for steps $3..$4" >&2
    exit 1
fi
if [ "$a" != "$b" ]; then
    echo "same_losses: the losses of steps $3..$4 differ:" >&2
    printf '%s\n' "$a" > "$1.cmp"
    printf '%s\n' "$b" | diff "$1.cmp" - >&2
    exit 1
fi
echo "same_losses: steps $3..$4 identical ($n lines)"
]=])
# flip_byte.sh FILE OFFSET: replace the byte at OFFSET by its complement
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/ckpt_flip_byte.sh [=[
#!/bin/sh
set -eu
b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
printf "\\$(printf %o $((255 - b)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
]=])
# (strings, not lists: they go into `sh -c` command lines)
set(CKPT_SAME_LOSSES "sh ${CMAKE_CURRENT_BINARY_DIR}/ckpt_same_losses.sh")
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
[ -f ${run_dir}/ckpt/step-00000020/state.h5 ] && [ -f ${run_dir}/ckpt/step-00000040/MANIFEST ] && \
cp ${run_dir}/metrics.jsonl ${straight}.jsonl && cp ${run_dir}/model.h5 ${straight}.h5")
  # the run died after step 20: resume, continue to 40, same weights and losses
  add_test(NAME ckpt_${name}_resume
           COMMAND sh -c "rm -rf ${run_dir}/ckpt/step-00000040 && \
${train} --run.resume=auto > ${run_dir}.out 2>&1; rc=$?; cat ${run_dir}.out; [ $rc -eq 0 ] && \
grep -q 'resumed from step 20 (.*step-00000020)' ${run_dir}.out && \
$<TARGET_FILE:test_weights_close> ${straight}.h5 ${run_dir}/model.h5 0 && \
${CKPT_SAME_LOSSES} ${straight}.jsonl ${run_dir}/metrics.jsonl 21 40")
  # the newest checkpoint is damaged: skipped, the previous one resumes (to the same end)
  add_test(NAME ckpt_${name}_corrupt_newest
           COMMAND sh -c "${CKPT_FLIP_BYTE} ${run_dir}/ckpt/step-00000040/state.h5 5000 && \
${train} --run.resume=auto > ${run_dir}.out 2>&1; rc=$?; cat ${run_dir}.out; [ $rc -eq 0 ] && \
grep -q 'skipping step-00000040: .*state.h5' ${run_dir}.out && \
grep -q 'resumed from step 20 (.*step-00000020)' ${run_dir}.out && \
$<TARGET_FILE:test_weights_close> ${straight}.h5 ${run_dir}/model.h5 0 && \
${CKPT_SAME_LOSSES} ${straight}.jsonl ${run_dir}/metrics.jsonl 21 40")
  set_tests_properties(ckpt_${name}_straight ckpt_${name}_resume ckpt_${name}_corrupt_newest
                       PROPERTIES LABELS "${label}" PROCESSORS ${procs}
                       ENVIRONMENT OMP_NUM_THREADS=1)
  set_tests_properties(ckpt_${name}_straight PROPERTIES FIXTURES_REQUIRED train_corpus
                       FIXTURES_SETUP ckpt_${name}_a)
  set_tests_properties(ckpt_${name}_resume PROPERTIES FIXTURES_REQUIRED "train_corpus;ckpt_${name}_a"
                       FIXTURES_SETUP ckpt_${name}_b)
  set_tests_properties(ckpt_${name}_corrupt_newest PROPERTIES
                       FIXTURES_REQUIRED "train_corpus;ckpt_${name}_a;ckpt_${name}_b"
                       FIXTURES_SETUP ckpt_${name}_c)
endforeach()

# resuming with another model shape: one line naming the checkpoint and both shapes, exit 2
add_test(NAME ckpt_resume_other_width
         COMMAND ${CKPT_EXPECT_ERROR} 2 "state\\.h5: the checkpoint's model .*width 32.* differs from the config's .*width 64"
                 -- ${TESSERA_BIN} train ${CKPT_ARGS} --run.name=np1 --model.width=64
                    --run.resume=auto)
set_tests_properties(ckpt_resume_other_width PROPERTIES LABELS unit
                     FIXTURES_REQUIRED "train_corpus;ckpt_np1_a;ckpt_np1_b;ckpt_np1_c")
# an explicit resume path that is not an intact checkpoint: exit 2
add_test(NAME ckpt_resume_bad_path
         COMMAND ${CKPT_EXPECT_ERROR} 2 "resume: .*nonexistent is not an intact checkpoint"
                 -- ${TESSERA_BIN} train ${CKPT_ARGS} --run.name=bad_path
                    --run.resume=${CKPT_DIR}/nonexistent)
set_tests_properties(ckpt_resume_bad_path PROPERTIES LABELS unit FIXTURES_REQUIRED train_corpus)

# ckpt.keep: a checkpoint every 2 steps of 10, keep 3: steps 6, 8, 10 remain, nothing else
add_test(NAME ckpt_keep_prunes
         COMMAND sh -c "rm -rf ${CKPT_DIR}/runs/keep && ${TESSERA_BIN} train ${CKPT_ARGS_SH} \
--run.name=keep --train.steps=10 --ckpt.every=2 --ckpt.keep=3 && \
[ \"$(ls ${CKPT_DIR}/runs/keep/ckpt | tr '\\n' ' ')\" = 'step-00000006 step-00000008 step-00000010 ' ]")
set_tests_properties(ckpt_keep_prunes PROPERTIES LABELS unit FIXTURES_REQUIRED train_corpus
                     ENVIRONMENT OMP_NUM_THREADS=1)

# run.resume=auto without any checkpoint: a warning, then a fresh run
add_test(NAME ckpt_auto_without_checkpoint
         COMMAND sh -c "rm -rf ${CKPT_DIR}/runs/none && ${TESSERA_BIN} train ${CKPT_ARGS_SH} \
--run.name=none --train.steps=2 --run.resume=auto > ${CKPT_DIR}/none.out 2>&1 && \
grep -q 'no intact checkpoint.*starting fresh' ${CKPT_DIR}/none.out")
set_tests_properties(ckpt_auto_without_checkpoint PROPERTIES LABELS unit
                     FIXTURES_REQUIRED train_corpus ENVIRONMENT OMP_NUM_THREADS=1)
