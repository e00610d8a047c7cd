# Hostile input tests: files someone else wrote or changed under a run (runtime/h5attr.c,
# runtime/h5read.c, runtime/h5zstd.c, runtime/sample.c, runtime/data.c, base/fs.c).
#
# hostile_h5_unit (tests/unit/test_hostile_h5.c) writes a good weights file and a good checkpoint
# of the tiny model, then one changed copy per case with the HDF5 C API (attributes as arrays, of
# another type or out of range; external and soft links; external storage; virtual datasets;
# other layouts and filters; zstd chunks that decode to another size) and checks that each is
# refused with one error line, TS_ERR_INPUT. It leaves the files in DIR/weights and DIR/state for
# the command-line tests below, which check the exit code and the one line of the real binary.
set(HOSTILE_DIR ${TESSERA_TEST_DATA}/hostile)
set(HOSTILE_EXPECT_ERROR ${CMAKE_SOURCE_DIR}/tests/expect_error.sh)
set(HOSTILE_TRAIN_ARGS ${CMAKE_SOURCE_DIR}/configs/tiny.ini
    "--data.train=${TESSERA_TEST_DATA}/train/corpus/train_*.bin"
    "--data.val=${TESSERA_TEST_DATA}/train/corpus/val_*.bin" --run.out_dir=${HOSTILE_DIR}/runs)

tessera_unit_test(test_hostile_h5 SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_hostile_h5.c
                  LIBS tessera_runtime)
add_test(NAME hostile_h5_unit
         COMMAND sh -c [=[rm -rf "$1" && mkdir -p "$1" && "$2" "$3" "$1"]=] hostile_h5_unit
                 ${HOSTILE_DIR}/h5 $<TARGET_FILE:test_hostile_h5> ${CMAKE_SOURCE_DIR}/configs/tiny.ini)
set_tests_properties(hostile_h5_unit PROPERTIES LABELS unit TIMEOUT 120
                     FIXTURES_SETUP hostile_h5 ENVIRONMENT OMP_NUM_THREADS=1)

# The command line on hostile HDF5 files: exit 2 and the one line. CASE|COMMAND|REGEX, where
# COMMAND is info-w (ckpt info on DIR/weights/CASE.h5), info-s (ckpt info on the checkpoint
# directory of CASE), sample (sample --model DIR/weights/CASE.h5), resume (train resuming from
# the checkpoint of CASE).
set(HOSTILE_H5 ${HOSTILE_DIR}/h5)
foreach(row
    "format_array|info-w|format_array\\.h5: attribute 'format' holds 64 values \\(an array\\), expected the string \"tessera-weights\"$"
    "layers_array|info-w|layers_array\\.h5: attribute 'layers' holds 64 values \\(an array\\), expected one integer in \\[1, 4096\\]$"
    "ext_link|info-w|ext_link\\.h5: '/params/wte' is an external link \\(to another file\\), expected a dataset stored in this file$"
    "external_storage|info-w|external_storage\\.h5: dataset '/params/wte' keeps its values in 1 external file\\(s\\), expected contiguous storage"
    "config_array|info-s|state\\.h5: attribute 'config' holds 8 values \\(an array\\), expected a fixed-length string"
    "format_array|info-s|state\\.h5: attribute 'format' holds 64 values \\(an array\\)"
    "step_int64|sample|step_int64\\.h5: attribute 'step' is 4294967306, expected one integer in \\[0, 1000000000\\]$"
    "virtual|sample|virtual\\.h5: dataset '/params/wte' is a virtual dataset"
    "world_zero|resume|state\\.h5: attribute 'world_size' is 0, expected one integer in \\[1, 16777216\\]$"
    "next_sample_max|resume|state\\.h5: attribute 'next_sample' is 18446744073709551615, expected one integer"
    "ext_link|resume|state\\.h5: '/adam_m/wte' is an external link"
    "external_storage|resume|state\\.h5: dataset '/params/wte' keeps its values in 1 external file"
    "zstd_big|resume|state\\.h5: reading dataset '/params/wte' failed \\(damaged file, or a chunk that does not decode to its size\\)$"
    "zstd_short_unsized|resume|state\\.h5: reading dataset '/params/wte' failed")
  string(REPLACE "|" ";" parts "${row}")
  list(GET parts 0 case)
  list(GET parts 1 cmd)
  list(GET parts 2 regex)
  set(step_dir ${HOSTILE_H5}/state/${case}/step-00000010)
  if(cmd STREQUAL "info-w")
    set(args ckpt info ${HOSTILE_H5}/weights/${case}.h5)
  elseif(cmd STREQUAL "info-s")
    set(args ckpt info ${step_dir})
  elseif(cmd STREQUAL "sample")
    set(args sample --model ${HOSTILE_H5}/weights/${case}.h5)
  else()
    set(args train ${HOSTILE_TRAIN_ARGS} --run.name=resume_${case} --run.resume=${step_dir})
  endif()
  set(name hostile_${cmd}_${case})
  add_test(NAME ${name} COMMAND ${HOSTILE_EXPECT_ERROR} 2 "${regex}" -- timeout 60 ${TESSERA_BIN}
                                ${args})
  set_tests_properties(${name} PROPERTIES LABELS unit FIXTURES_REQUIRED hostile_h5
                       ENVIRONMENT OMP_NUM_THREADS=1)
  if(cmd STREQUAL "resume")
    set_tests_properties(${name} PROPERTIES FIXTURES_REQUIRED "hostile_h5;train_corpus")
  endif()
endforeach()

# A checkpoint from before the zstd filter recorded its chunk size still resumes
add_test(NAME hostile_resume_legacy_zstd
         COMMAND sh -c [=["$@" > "$0.out" 2>&1; rc=$?; cat "$0.out"; [ $rc -eq 0 ] &&
grep -q 'resumed from step 10' "$0.out"]=] ${HOSTILE_DIR}/legacy ${TESSERA_BIN} train
                 ${HOSTILE_TRAIN_ARGS} --run.name=legacy --train.steps=12
                 --run.resume=${HOSTILE_H5}/state/legacy_zstd/step-00000010)
set_tests_properties(hostile_resume_legacy_zstd PROPERTIES LABELS unit
                     FIXTURES_REQUIRED "hostile_h5;train_corpus" ENVIRONMENT OMP_NUM_THREADS=1)

# FIFOs (and a device) where tessera expects a file (in the regexes "." stands for ";", which
# would split the rows): each command must exit 2 at once with one
# line naming the file, never wait for a writer (timeout turns a hang into a failure). The FIFOs
# are made by the setup test; a checkpoint directory gets a FIFO as its MANIFEST, another the good
# checkpoint's MANIFEST and a FIFO as its state.h5.
set(FIFO_DIR ${HOSTILE_DIR}/fifo)
add_test(NAME hostile_fifo_setup
         COMMAND sh -c [=[set -e; rm -rf "$0"; mkdir -p "$0/shards" "$0/manifest" "$0/state"
mkfifo "$0/config.ini" "$0/shards/train_000.bin" "$0/tokenizer.bin" "$0/model.h5"
mkfifo "$0/manifest/MANIFEST" "$0/state/state.h5" "$0/text.txt"
cp "$1/MANIFEST" "$0/state/MANIFEST"
ln -s /dev/zero "$0/zero.h5"]=] ${FIFO_DIR} ${HOSTILE_H5}/state/good/step-00000010)
set_tests_properties(hostile_fifo_setup PROPERTIES LABELS unit FIXTURES_SETUP hostile_fifo
                     FIXTURES_REQUIRED hostile_h5)

set(FIFO_NOT_REGULAR "is not a regular file \\(a FIFO, device, directory or socket\\)")
foreach(row
    "config|2|config\\.ini: config file ${FIFO_NOT_REGULAR}. expected a regular file$|train;${FIFO_DIR}/config.ini"
    "shard|2|train_000\\.bin: token shard ${FIFO_NOT_REGULAR}. expected a regular file$|train;${HOSTILE_TRAIN_ARGS};--data.train=${FIFO_DIR}/shards/train_*.bin"
    "tokenizer|2|tokenizer\\.bin: tokenizer file ${FIFO_NOT_REGULAR}. expected an llm\\.c tokenizer file|train;${HOSTILE_TRAIN_ARGS};--run.name=fifo_tok;--log.sample_tokens=10;--data.tokenizer=${FIFO_DIR}/tokenizer.bin"
    "sample_model|2|model\\.h5: weights file ${FIFO_NOT_REGULAR}. expected tessera weights|sample;--model;${FIFO_DIR}/model.h5"
    "sample_device|2|zero\\.h5: weights file ${FIFO_NOT_REGULAR}. expected tessera weights|sample;--model;${FIFO_DIR}/zero.h5"
    "info_model|2|model\\.h5: weights file ${FIFO_NOT_REGULAR}|ckpt;info;${FIFO_DIR}/model.h5"
    "info_manifest|2|manifest: MANIFEST: not a regular file \\(a FIFO, device, directory or socket\\)$|ckpt;info;${FIFO_DIR}/manifest"
    "verify_manifest|1|manifest: not intact: MANIFEST: not a regular file|ckpt;verify;${FIFO_DIR}/manifest"
    "resume_manifest|2|resume: .*manifest is not an intact checkpoint: MANIFEST: not a regular file|train;${HOSTILE_TRAIN_ARGS};--run.name=fifo_resume;--run.resume=${FIFO_DIR}/manifest"
    "info_state|2|state\\.h5: checkpoint state file ${FIFO_NOT_REGULAR}|ckpt;info;${FIFO_DIR}/state"
    "prepare_input|2|text\\.txt: not a regular file or directory|prepare;--out;${FIFO_DIR}/prepared;${FIFO_DIR}/text.txt")
  string(REPLACE "|" ";" parts "${row}")
  list(GET parts 0 case)
  list(GET parts 1 code)
  list(GET parts 2 regex)
  list(SUBLIST parts 3 -1 args)
  add_test(NAME hostile_fifo_${case}
           COMMAND ${HOSTILE_EXPECT_ERROR} ${code} "${regex}" -- timeout 20 ${TESSERA_BIN} ${args})
  set_tests_properties(hostile_fifo_${case} PROPERTIES LABELS unit TIMEOUT 60
                       FIXTURES_REQUIRED "hostile_fifo;train_corpus")
endforeach()

# a real run whose shards are truncated while it trains (tests/hostile/truncate_shard.sh)
add_test(NAME hostile_shard_truncated_while_training
         COMMAND sh ${CMAKE_SOURCE_DIR}/tests/hostile/truncate_shard.sh ${TESSERA_BIN}
                 ${CMAKE_SOURCE_DIR}/configs/tiny.ini ${TESSERA_TEST_DATA}/train/corpus
                 ${HOSTILE_DIR}/truncate)
set_tests_properties(hostile_shard_truncated_while_training PROPERTIES LABELS unit TIMEOUT 180
                     FIXTURES_REQUIRED train_corpus ENVIRONMENT OMP_NUM_THREADS=1)

# A tokenizer whose end-of-text token is not in the model's vocabulary (left by sample_tokenizer,
# tests/unit/test_tokenizer.c): refused before training starts (a run of 10^8 steps would time
# out), and by `tessera sample`; it used to crash the end-of-run sample in the embedding.
set(HOSTILE_TOK_REGEX "tok_eot_300\\.bin: offset 12: end-of-text token 300, expected a token of the model's vocabulary \\(< 256\\)$")
add_test(NAME hostile_tokenizer_eot_train
         COMMAND ${HOSTILE_EXPECT_ERROR} 2 "${HOSTILE_TOK_REGEX}" -- timeout 30 ${TESSERA_BIN} train
                 ${HOSTILE_TRAIN_ARGS} --run.name=tok_eot --train.steps=100000000
                 --log.sample_tokens=10 --data.tokenizer=${TESSERA_TEST_DATA}/tok_eot_300.bin)
add_test(NAME hostile_tokenizer_eot_sample
         COMMAND ${HOSTILE_EXPECT_ERROR} 2 "${HOSTILE_TOK_REGEX}" -- timeout 30 ${TESSERA_BIN} sample
                 --model ${HOSTILE_H5}/weights/good.h5 --tokenizer
                 ${TESSERA_TEST_DATA}/tok_eot_300.bin)
set_tests_properties(hostile_tokenizer_eot_train hostile_tokenizer_eot_sample PROPERTIES
                     LABELS unit FIXTURES_REQUIRED "tokenizer_files;train_corpus;hostile_h5")
