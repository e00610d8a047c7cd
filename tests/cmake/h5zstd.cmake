# zstd HDF5 filter tests (runtime/h5zstd.c, filter id 32015; the plugin target h5zstd).
#
# h5zstd_unit writes DIR/h5zstd.h5 and checks it in-process (tests/unit/test_h5zstd.c). The other
# tests read that file with outside readers through the plugin in <build>/hdf5-plugins: h5dump
# must print known values with HDF5_PLUGIN_PATH pointing there and must fail to read the data
# with HDF5_PLUGIN_PATH pointing to an empty folder (so the plugin, not a filter installed on the
# system, is what makes the data readable); Debian's python3 with h5py must read every value
# exactly. The expected values follow the formulas in test_h5zstd.c: smooth[i] = 0.25*(i%64) +
# i/4096, random = xorshift32 from seed 2463534242.

tessera_unit_test(test_h5zstd SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_h5zstd.c
                  LIBS tessera_runtime)
set(H5ZSTD_DIR ${TESSERA_TEST_DATA}/h5zstd)
set(H5ZSTD_FILE ${H5ZSTD_DIR}/h5zstd.h5)
set(H5ZSTD_PLUGINS ${CMAKE_BINARY_DIR}/hdf5-plugins)
set(H5ZSTD_NO_PLUGINS ${TESSERA_TEST_DATA}/h5zstd-no-plugins)
file(MAKE_DIRECTORY ${H5ZSTD_NO_PLUGINS})
find_program(H5ZSTD_H5DUMP h5dump)
if(NOT H5ZSTD_H5DUMP)
  set(H5ZSTD_H5DUMP h5dump) # not installed: the tests below skip
endif()

add_test(NAME h5zstd_unit COMMAND test_h5zstd ${H5ZSTD_DIR})
set_tests_properties(h5zstd_unit PROPERTIES LABELS unit TIMEOUT 60 FIXTURES_SETUP h5zstd_file)

# $1 h5dump, $2 file, $3 plugin folder. Elements 70000.. of /smooth lie in the fifth chunk;
# /random element 49999 is the last one, in the partial last chunk.
add_test(NAME h5zstd_h5dump
         COMMAND sh -c [=[
command -v "$1" >/dev/null || { echo "h5dump not installed (hdf5-tools)"; exit 77; }
export HDF5_PLUGIN_PATH="$3"
out=$("$1" -d /smooth -s 70000 -c 8 "$2" 2>&1) || { echo "$out"; echo "h5dump failed"; exit 1; }
echo "$out" | grep -qF "(70000): 29, 29.25, 29.5, 29.75, 30, 30.25, 30.5, 30.75" ||
  { echo "$out"; echo "/smooth: expected values not printed"; exit 1; }
out=$("$1" -d /random -s 49999 -c 1 "$2" 2>&1) || { echo "$out"; echo "h5dump failed"; exit 1; }
echo "$out" | grep -qF "(49999): 3936722372" ||
  { echo "$out"; echo "/random: expected value not printed"; exit 1; }
out=$("$1" -p -H -d /smooth "$2" 2>&1)
echo "$out" | grep -qF "FILTER_ID 32015" || { echo "$out"; echo "filter 32015 not listed"; exit 1; }
echo "h5dump read /smooth and /random through the plugin"
]=] h5zstd_h5dump ${H5ZSTD_H5DUMP} ${H5ZSTD_FILE} ${H5ZSTD_PLUGINS})
set_tests_properties(h5zstd_h5dump PROPERTIES LABELS unit TIMEOUT 60 SKIP_RETURN_CODE 77
                     FIXTURES_REQUIRED h5zstd_file)

# negative control: same file, no plugin on the path: the header prints (the file is fine) but
# the data cannot be read and h5dump exits non-zero. The whole dataset is dumped: h5dump 1.10
# prints an empty DATA block and exits 0 when a subset (-s/-c) cannot be read.
add_test(NAME h5zstd_h5dump_no_plugin
         COMMAND sh -c [=[
command -v "$1" >/dev/null || { echo "h5dump not installed (hdf5-tools)"; exit 77; }
export HDF5_PLUGIN_PATH="$3"
out=$("$1" -d /smooth "$2" 2>&1) && { echo "$out"; echo "h5dump read the data"; exit 1; }
echo "$out"
echo "$out" | grep -qF 'DATASET "/smooth"' || { echo "h5dump did not open the file"; exit 1; }
echo "$out" | grep -qF "29.25" && { echo "values printed without the plugin"; exit 1; }
echo "h5dump failed to read /smooth without the plugin, as it must"
]=] h5zstd_h5dump_no_plugin ${H5ZSTD_H5DUMP} ${H5ZSTD_FILE} ${H5ZSTD_NO_PLUGINS})
set_tests_properties(h5zstd_h5dump_no_plugin PROPERTIES LABELS unit TIMEOUT 60
                     SKIP_RETURN_CODE 77 FIXTURES_REQUIRED h5zstd_file)

# Debian's python3 (the first python3 on PATH may lack h5py); the script exits 77 without h5py
set(H5ZSTD_PYTHON /usr/bin/python3)
if(NOT EXISTS ${H5ZSTD_PYTHON})
  set(H5ZSTD_PYTHON python3)
endif()
add_test(NAME h5zstd_h5py
         COMMAND ${CMAKE_COMMAND} -E env HDF5_PLUGIN_PATH=${H5ZSTD_PLUGINS} ${H5ZSTD_PYTHON}
                 ${CMAKE_CURRENT_SOURCE_DIR}/unit/h5zstd_h5py.py ${H5ZSTD_FILE})
set_tests_properties(h5zstd_h5py PROPERTIES LABELS unit TIMEOUT 120 SKIP_RETURN_CODE 77
                     FIXTURES_REQUIRED h5zstd_file)
