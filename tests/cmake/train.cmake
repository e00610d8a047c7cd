# Training tests: real `tessera train` runs on a small corpus, on 1, 2 and 3 real MPI ranks.
#
# train_corpus (fixture) prepares shards from one fortune file; the np1/np2/np3 runs train the
# tiny config for 10 steps at the same global batch (6: 6 | 3+3 | 2+2+2 with micro-batches of
# 2); their weights must agree within 1e-5 per tensor. Bad shards must be refused with exit 2.
#
# These runs use AdamW eps 1e-6 instead of 1e-8: the key third of each attn.qkv.b has a gradient
# that is exactly zero in exact arithmetic (softmax ignores a constant added to every score), so
# in float it is pure rounding noise of ~1e-9 whose value depends on the summation order (which
# micro-batch and which rank added what). With eps 1e-8 Adam divides that noise by itself and
# moves those biases by ~lr per step in random directions, in any data-parallel trainer; with 1e-6
# the noise stays noise and every tensor with a real gradient is compared at full strictness.
set(TRAIN_DIR ${TESSERA_TEST_DATA}/train)
set(TRAIN_CORPUS ${TRAIN_DIR}/corpus)
# run.overwrite: every ctest run trains into the same run directories again
set(TRAIN_ARGS ${CMAKE_SOURCE_DIR}/configs/tiny.ini "--data.train=${TRAIN_CORPUS}/train_*.bin"
    "--data.val=${TRAIN_CORPUS}/val_*.bin" --run.out_dir=${TRAIN_DIR}/runs --train.eps=1e-6
    --run.overwrite=true)
set(EXPECT_ERROR ${CMAKE_SOURCE_DIR}/tests/expect_error.sh)

add_test(NAME train_corpus
         COMMAND ${TESSERA_BIN} prepare --out ${TRAIN_CORPUS} --min-bytes 0 --shard-tokens 100000
                 /usr/share/games/fortunes/computers)
set_tests_properties(train_corpus PROPERTIES FIXTURES_SETUP train_corpus LABELS unit)

add_test(NAME train_np1 COMMAND ${TESSERA_BIN} train ${TRAIN_ARGS} --run.name=np1)
set_tests_properties(train_np1 PROPERTIES LABELS unit FIXTURES_REQUIRED train_corpus
                     FIXTURES_SETUP train_np1 ENVIRONMENT OMP_NUM_THREADS=1)

# the loss falls, the run directory holds what it should
add_test(NAME train_outputs
         COMMAND sh ${CMAKE_SOURCE_DIR}/tests/unit/check_run_dir.sh ${TRAIN_DIR}/runs/np1 10)
set_tests_properties(train_outputs PROPERTIES LABELS unit FIXTURES_REQUIRED train_np1)

# the resolved config.toml is a complete config: training from it again gives the same weights,
# bit for bit (same world size, same seed)
add_test(NAME train_rerun_from_resolved_config
         COMMAND sh -c "${TESSERA_BIN} train ${TRAIN_DIR}/runs/np1/config.toml --run.name=np1_again \
&& $<TARGET_FILE:test_weights_close> ${TRAIN_DIR}/runs/np1/model.h5 ${TRAIN_DIR}/runs/np1_again/model.h5 0")
set_tests_properties(train_rerun_from_resolved_config PROPERTIES LABELS unit
                     FIXTURES_REQUIRED train_np1 ENVIRONMENT OMP_NUM_THREADS=1)

# sampling from the saved weights: deterministic in the seed
add_test(NAME train_sample_deterministic
         COMMAND sh -c "a=$(${TESSERA_BIN} sample --model ${TRAIN_DIR}/runs/np1/model.h5 --length 40 --seed 9) && \
b=$(${TESSERA_BIN} sample --model ${TRAIN_DIR}/runs/np1/model.h5 --length 40 --seed 9) && \
[ -n \"$a\" ] && [ \"$a\" = \"$b\" ]")
set_tests_properties(train_sample_deterministic PROPERTIES LABELS unit FIXTURES_REQUIRED train_np1)

add_test(NAME sample_missing_model
         COMMAND ${EXPECT_ERROR} 2 "nonexistent\\.h5: cannot read weights file"
                 -- ${TESSERA_BIN} sample --model ${TRAIN_DIR}/nonexistent.h5)
set_tests_properties(sample_missing_model PROPERTIES LABELS unit)
add_test(NAME sample_not_hdf5
         COMMAND ${EXPECT_ERROR} 2 "tiny\\.ini: not an HDF5 file"
                 -- ${TESSERA_BIN} sample --model ${CMAKE_SOURCE_DIR}/configs/tiny.ini)
set_tests_properties(sample_not_hdf5 PROPERTIES LABELS unit)

# bad shards given to `tessera train`: one line naming the file and offset, exit 2
add_test(NAME train_bad_shards_setup
         COMMAND sh -c "mkdir -p ${TRAIN_DIR}/bad && head -c 4096 /dev/zero > ${TRAIN_DIR}/bad/zero_000.bin")
set_tests_properties(train_bad_shards_setup PROPERTIES FIXTURES_SETUP train_bad LABELS unit)
add_test(NAME train_bad_shard_magic
         COMMAND ${EXPECT_ERROR} 2 "zero_000\\.bin.*magic"
                 -- ${TESSERA_BIN} train ${TRAIN_ARGS} "--data.train=${TRAIN_DIR}/bad/zero_*.bin")
add_test(NAME train_bad_token_range
         COMMAND ${EXPECT_ERROR} 2 "train_000\\.bin.*offset [0-9]+.*100"
                 -- ${TESSERA_BIN} train ${TRAIN_ARGS} --model.vocab=100)
add_test(NAME train_no_shards
         COMMAND ${EXPECT_ERROR} 2 "nothing_\\*\\.bin"
                 -- ${TESSERA_BIN} train ${TRAIN_ARGS} "--data.val=${TRAIN_DIR}/nothing_*.bin")
add_test(NAME train_cuda_unavailable
         COMMAND ${EXPECT_ERROR} 2 "backend.*cuda"
                 -- ${TESSERA_BIN} train ${TRAIN_ARGS} --run.backend=cuda)
set_tests_properties(train_bad_shard_magic train_bad_token_range train_no_shards
                     train_cuda_unavailable PROPERTIES LABELS unit
                     FIXTURES_REQUIRED "train_corpus;train_bad")

if(TESSERA_HAVE_MPI)
  foreach(np 2 3)
    add_test(NAME train_np${np}
             COMMAND ${TESSERA_MPIRUN} -np ${np} ${TESSERA_BIN} train ${TRAIN_ARGS} --run.name=np${np})
    set_tests_properties(train_np${np} PROPERTIES LABELS mpi FIXTURES_REQUIRED train_corpus
                         FIXTURES_SETUP train_np${np} PROCESSORS ${np})
    add_test(NAME train_ranks_agree_np${np}
             COMMAND test_weights_close ${TRAIN_DIR}/runs/np1/model.h5
                     ${TRAIN_DIR}/runs/np${np}/model.h5 1e-5)
    set_tests_properties(train_ranks_agree_np${np} PROPERTIES LABELS mpi
                         FIXTURES_REQUIRED "train_np1;train_np${np}")
  endforeach()
  # a bad shard under mpirun: every rank exits 2
  add_test(NAME train_bad_shard_magic_mpi
           COMMAND ${EXPECT_ERROR} 2 "zero_000\\.bin.*magic"
                   -- ${TESSERA_MPIRUN} -np 2 ${TESSERA_BIN} train ${TRAIN_ARGS}
                      "--data.train=${TRAIN_DIR}/bad/zero_*.bin")
  set_tests_properties(train_bad_shard_magic_mpi PROPERTIES LABELS mpi
                       FIXTURES_REQUIRED "train_corpus;train_bad" PROCESSORS 2)
endif()

# inputs found unusable before any training: tokenizer, run directory
add_test(NAME train_bad_tokenizer
         COMMAND ${EXPECT_ERROR} 2 "nonexistent_tokenizer\\.bin: cannot open tokenizer file"
                 -- ${TESSERA_BIN} train ${TRAIN_ARGS} --log.sample_tokens=10
                    --data.tokenizer=${TRAIN_DIR}/nonexistent_tokenizer.bin)
add_test(NAME train_bad_out_dir
         COMMAND ${EXPECT_ERROR} 2 "\\[run\\] out_dir: cannot create directory"
                 -- ${TESSERA_BIN} train ${TRAIN_ARGS} --run.out_dir=/proc/nonexistent/runs)
set_tests_properties(train_bad_tokenizer train_bad_out_dir PROPERTIES LABELS unit
                     FIXTURES_REQUIRED train_corpus)

# `tessera sample` command-line errors: one line, exit 2
set(SAMPLE_MODEL ${TRAIN_DIR}/runs/np1/model.h5)
foreach(case "length_not_integer|--length: expected an integer|--length;2.5"
             "prompt_ids_trailing_comma|--prompt-ids: expected comma-separated|--prompt-ids;1,"
             "prompt_ids_out_of_range|--prompt-ids: expected comma-separated|--prompt-ids;256"
             "both_prompts|--prompt or --prompt-ids, not both|--prompt;a;--prompt-ids;1"
             "unknown_option|unknown option --frobnicate|--frobnicate;1"
             "temperature_zero|--temperature: expected a number|--temperature;0")
  string(REPLACE "|" ";" parts "${case}")
  list(GET parts 0 name)
  list(GET parts 1 regex)
  list(SUBLIST parts 2 -1 args)
  add_test(NAME sample_error_${name}
           COMMAND ${EXPECT_ERROR} 2 "${regex}" -- ${TESSERA_BIN} sample --model ${SAMPLE_MODEL} ${args})
  set_tests_properties(sample_error_${name} PROPERTIES LABELS unit FIXTURES_REQUIRED train_np1)
endforeach()
# continuing given token ids works for any tokenizer
add_test(NAME sample_prompt_ids
         COMMAND sh -c "${TESSERA_BIN} sample --model ${SAMPLE_MODEL} --prompt-ids 72,101 --length 5 | grep -q '^He'")
set_tests_properties(sample_prompt_ids PROPERTIES LABELS unit FIXTURES_REQUIRED train_np1)

# shards asked for in a directory that does not exist (the first run before `tessera prepare`):
# the line says so and what to do
add_test(NAME train_no_shard_directory
         COMMAND ${EXPECT_ERROR} 2 "no_such_dir/train_\\*\\.bin: no file matches this pattern: directory .*no_such_dir does not exist.*tessera prepare"
                 -- ${TESSERA_BIN} train ${TRAIN_ARGS} "--data.train=${TRAIN_DIR}/no_such_dir/train_*.bin")
set_tests_properties(train_no_shard_directory PROPERTIES LABELS unit FIXTURES_REQUIRED train_corpus)

# a STOP that is not a regular file (here a directory, which cannot be served by removing it)
# is no stop request: the run trains every step, warns once, and leaves the directory alone
add_test(NAME train_stop_not_a_file
         COMMAND sh -c "d=${TRAIN_DIR}/runs/stopdir && rm -rf $d && mkdir -p $d/STOP && \
${TESSERA_BIN} train ${CMAKE_SOURCE_DIR}/configs/tiny.ini '--data.train=${TRAIN_CORPUS}/train_*.bin' \
'--data.val=${TRAIN_CORPUS}/val_*.bin' --run.out_dir=${TRAIN_DIR}/runs --run.name=stopdir --train.steps=3 --log.sample_tokens=0 \
> $d.out 2>&1 && grep -q 'STOP: not a regular file, ignored' $d.out && \
grep -q '\"step\": 3' $d/metrics.jsonl && test -d $d/STOP || { cat $d.out; exit 1; }")
set_tests_properties(train_stop_not_a_file PROPERTIES LABELS unit FIXTURES_REQUIRED train_corpus
                     ENVIRONMENT OMP_NUM_THREADS=1)
