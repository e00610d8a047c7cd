# Checkpoint manifest tests (runtime/manifest.c) and `tessera ckpt` (app/cmd_ckpt.c).
#
# manifest_unit writes a small checkpoint directory again and again, damages each copy one way
# (flipped bytes, truncation, deleted and stray files, an altered or truncated MANIFEST) and
# checks that verification names the damage (tests/unit/test_manifest.c). It leaves
# DIR/good and DIR/bad (weights.h5 with one byte flipped) for the command-line tests below.
# The weights file `tessera ckpt info` describes comes from the train_np1 run (train.cmake).

tessera_unit_test(test_manifest SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_manifest.c
                  LIBS tessera_runtime)
set(MANIFEST_DIR ${TESSERA_TEST_DATA}/manifest)
set(MANIFEST_EXPECT_ERROR ${CMAKE_SOURCE_DIR}/tests/expect_error.sh)

add_test(NAME manifest_unit COMMAND test_manifest ${MANIFEST_DIR})
set_tests_properties(manifest_unit PROPERTIES LABELS unit TIMEOUT 60
                     FIXTURES_SETUP manifest_dirs)

add_test(NAME ckpt_verify_intact
         COMMAND sh -c [=[
out=$("$1" ckpt verify "$2") || { echo "$out"; echo "exit status $?, want 0"; exit 1; }
echo "$out"
echo "$out" | grep -qx "$2: intact (4 files, 1648633 bytes)" || { echo "unexpected output"; exit 1; }
]=] ckpt_verify_intact ${TESSERA_BIN} ${MANIFEST_DIR}/good)
add_test(NAME ckpt_verify_damaged
         COMMAND ${MANIFEST_EXPECT_ERROR} 1
                 "bad: not intact: weights\\.h5: xxh64 [0-9a-f]{16}, manifest says [0-9a-f]{16}$"
                 -- ${TESSERA_BIN} ckpt verify ${MANIFEST_DIR}/bad)
add_test(NAME ckpt_info_dir
         COMMAND sh -c [=[
out=$("$1" ckpt info "$2") || { echo "$out"; echo "ckpt info failed"; exit 1; }
echo "$out"
echo "$out" | grep -q "MANIFEST lists 4 files, 1648633 bytes" || { echo "no summary"; exit 1; }
echo "$out" | grep -Eq "^ +1548593  [0-9a-f]{16}  weights\.h5$" || { echo "no weights.h5 line"; exit 1; }
]=] ckpt_info_dir ${TESSERA_BIN} ${MANIFEST_DIR}/good)
set_tests_properties(ckpt_verify_intact ckpt_verify_damaged ckpt_info_dir PROPERTIES LABELS unit
                     FIXTURES_REQUIRED manifest_dirs)

add_test(NAME ckpt_verify_missing_path
         COMMAND ${MANIFEST_EXPECT_ERROR} 2
                 "nonexistent: cannot read checkpoint directory: No such file or directory"
                 -- ${TESSERA_BIN} ckpt verify ${MANIFEST_DIR}/nonexistent)
add_test(NAME ckpt_verify_not_a_dir
         COMMAND ${MANIFEST_EXPECT_ERROR} 2 "tiny\\.ini: not a directory"
                 -- ${TESSERA_BIN} ckpt verify ${CMAKE_SOURCE_DIR}/configs/tiny.ini)
add_test(NAME ckpt_usage_error
         COMMAND ${MANIFEST_EXPECT_ERROR} 2 "ckpt: unknown subcommand 'check'"
                 -- ${TESSERA_BIN} ckpt check ${MANIFEST_DIR})
add_test(NAME ckpt_info_missing_path
         COMMAND ${MANIFEST_EXPECT_ERROR} 2 "nonexistent\\.h5: cannot read"
                 -- ${TESSERA_BIN} ckpt info ${MANIFEST_DIR}/nonexistent.h5)
add_test(NAME ckpt_info_not_hdf5
         COMMAND ${MANIFEST_EXPECT_ERROR} 2 "tiny\\.ini: not an HDF5 file"
                 -- ${TESSERA_BIN} ckpt info ${CMAKE_SOURCE_DIR}/configs/tiny.ini)
set_tests_properties(ckpt_verify_missing_path ckpt_verify_not_a_dir ckpt_usage_error
                     ckpt_info_missing_path ckpt_info_not_hdf5 PROPERTIES LABELS unit)

# the weights of the 10-step train_np1 run (configs/tiny.ini: 2 layers, width 32, 28 tensors)
add_test(NAME ckpt_info_weights
         COMMAND sh -c [=[
out=$("$1" ckpt info "$2") || { echo "$out"; echo "ckpt info failed"; exit 1; }
echo "$out"
for want in "model\.h5: tessera weights, step 10$" \
            "^model: layers 2, heads 2, width 32, seq_len 32, vocab 256 \(padded 256\)$" \
            "^tensors: 28, 34688 parameters, 138752 bytes as float32; file [0-9]+ bytes$" \
            "^  wte +\(256, 32\)$" "^  h\.1\.mlp\.fc\.w +\(128, 32\)$" "^  lnf\.b +\(32\)$"; do
  echo "$out" | grep -Eq "$want" || { echo "missing: $want"; exit 1; }
done
]=] ckpt_info_weights ${TESSERA_BIN} ${TESSERA_TEST_DATA}/train/runs/np1/model.h5)
set_tests_properties(ckpt_info_weights PROPERTIES LABELS unit FIXTURES_REQUIRED train_np1)

# `tessera ckpt info` on a checkpoint a real run wrote: the run's attributes, the datasets with
# their compression ratio, the resolved config
set(INFO_CORPUS ${TESSERA_TEST_DATA}/train/corpus)
add_test(NAME ckpt_info_checkpoint
         COMMAND sh -c "${TESSERA_BIN} train ${CMAKE_SOURCE_DIR}/configs/tiny.ini \
'--data.train=${INFO_CORPUS}/train_*.bin' '--data.val=${INFO_CORPUS}/val_*.bin' \
--run.out_dir=${TESSERA_TEST_DATA}/ckpt_info --run.name=info --train.steps=4 \
--run.overwrite=true >/dev/null && \
${TESSERA_BIN} ckpt info ${TESSERA_TEST_DATA}/ckpt_info/info/ckpt/x/step-00000004 > \
${TESSERA_TEST_DATA}/ckpt_info/out.txt && cat ${TESSERA_TEST_DATA}/ckpt_info/out.txt && \
grep -Eq '^  step +4$' ${TESSERA_TEST_DATA}/ckpt_info/out.txt && \
grep -Eq '^identity: lineage [0-9a-f]{16}, seed [0-9]+, config [0-9a-f]{16}$' \
${TESSERA_TEST_DATA}/ckpt_info/out.txt && \
grep -Eq '^  /adam_v +28 datasets, 138752 bytes, stored in [0-9]+ \\(compression [0-9.]+x\\)$' \
${TESSERA_TEST_DATA}/ckpt_info/out.txt && \
grep -q '^name = \"info\"$' ${TESSERA_TEST_DATA}/ckpt_info/out.txt")
set_tests_properties(ckpt_info_checkpoint PROPERTIES LABELS unit FIXTURES_REQUIRED train_corpus
                     FIXTURES_SETUP ckpt_info ENVIRONMENT "TESSERA_HOST=x;OMP_NUM_THREADS=1")

# other tools read a real checkpoint through the zstd plugin: h5dump, and Debian's h5py
add_test(NAME ckpt_state_h5dump
         COMMAND sh -c "HDF5_PLUGIN_PATH=${CMAKE_BINARY_DIR}/hdf5-plugins h5dump -d /params/lnf.w \
-A 0 ${TESSERA_TEST_DATA}/ckpt_info/info/ckpt/x/step-00000004/state.h5 | tee /dev/stderr | \
grep -Eq '^ *\\(0\\): [0-9.-]+, [0-9.-]+'")
set_tests_properties(ckpt_state_h5dump PROPERTIES LABELS unit FIXTURES_REQUIRED ckpt_info)
add_test(NAME ckpt_state_h5py
         COMMAND sh -c "HDF5_PLUGIN_PATH=${CMAKE_BINARY_DIR}/hdf5-plugins /usr/bin/python3 -c \"
import sys
try:
    import h5py
except ImportError:
    sys.exit(77)
f = h5py.File('${TESSERA_TEST_DATA}/ckpt_info/info/ckpt/x/step-00000004/state.h5', 'r')
w = f['params/h.0.attn.qkv.w'][...]
assert w.shape == (96, 32) and abs(w).sum() > 0, w.shape
assert f.attrs['step'] == 4
print('h5py read', w.shape, 'sum of |w|', abs(w).sum())
\"")
set_tests_properties(ckpt_state_h5py PROPERTIES LABELS unit FIXTURES_REQUIRED ckpt_info
                     SKIP_RETURN_CODE 77)
