// h5zstd.c — the zstd HDF5 filter (id 32015): the filter function, its in-process registration
// (h5zstd_register, h5zstd_set) and, when built with H5ZSTD_PLUGIN, the two entry points that
// make the same code a loadable HDF5 plugin (H5PLget_plugin_type, H5PLget_plugin_info).
//
// HDF5 hands the filter one chunk at a time in a buffer it allocated; the filter must return a
// buffer HDF5 can free, so every buffer here comes from H5allocate_memory/H5resize_memory and the
// input buffer is released with H5free_memory once the output replaces it. Returning 0 tells
// HDF5 the filter failed; the reason is pushed on HDF5's error stack (the plugin has no tessera
// logging: it runs inside h5dump or Python).
#include "runtime/h5zstd.h"

#include <stdint.h>
#include <zstd.h>

#ifdef H5ZSTD_PLUGIN
#include <H5PLextern.h>
#endif

// HDF5 1.10 stores a chunk of at most 4 GiB - 1: a frame claiming more is corrupt
#define H5ZSTD_MAX_CHUNK ((unsigned long long)UINT32_MAX)

#define h5zstd_fail(...)                                                                           \
    H5Epush2(H5E_DEFAULT, __FILE__, __func__, __LINE__, H5E_ERR_CLS, H5E_PLINE, H5E_CANTFILTER,    \
             __VA_ARGS__)

// ---------------------------------------------------------------------------------------------
// compress: one zstd frame (which records its content size) per chunk

static size_t h5zstd_compress(int level, size_t nbytes, size_t *buf_size, void **buf) {
    size_t cap = ZSTD_compressBound(nbytes);
    void *out = H5allocate_memory(cap, 0);
    if (!out) {
        h5zstd_fail("zstd: cannot allocate %zu bytes to compress a chunk", cap);
        return 0;
    }
    size_t n = ZSTD_compress(out, cap, *buf, nbytes, level);
    if (ZSTD_isError(n)) {
        h5zstd_fail("zstd: compression failed: %s", ZSTD_getErrorName(n));
        H5free_memory(out);
        return 0;
    }
    H5free_memory(*buf);
    *buf = out;
    *buf_size = cap;
    return n;
}

// ---------------------------------------------------------------------------------------------
// decompress. Frames written by ZSTD_compress carry their content size, so the output is sized
// exactly once; frames from streaming writers may not (or a chunk may hold several frames), and
// those are decoded in a stream into a growing buffer.

// sum of the content sizes of the frames in src; 0 with *known = 0 when some frame does not say;
// -1 when src is not a sequence of zstd frames
static int h5zstd_content_size(const void *src, size_t n, unsigned long long *total, int *known) {
    const char *p = src;
    *total = 0;
    *known = 1;
    while (n > 0) {
        unsigned long long fcs = ZSTD_getFrameContentSize(p, n);
        if (fcs == ZSTD_CONTENTSIZE_ERROR) {
            h5zstd_fail("zstd: chunk is not a zstd frame (corrupt or written by another filter)");
            return -1;
        }
        if (fcs == ZSTD_CONTENTSIZE_UNKNOWN) {
            *known = 0;
            return 0;
        }
        size_t frame = ZSTD_findFrameCompressedSize(p, n);
        if (ZSTD_isError(frame)) {
            h5zstd_fail("zstd: truncated or corrupt frame: %s", ZSTD_getErrorName(frame));
            return -1;
        }
        *total += fcs;
        if (*total > H5ZSTD_MAX_CHUNK) {
            h5zstd_fail("zstd: frames claim %llu bytes, more than a chunk can hold", *total);
            return -1;
        }
        p += frame;
        n -= frame;
    }
    return 0;
}

static void *h5zstd_decompress_sized(const void *src, size_t n, size_t size) {
    void *out = H5allocate_memory(size > 0 ? size : 1, 0);
    if (!out) {
        h5zstd_fail("zstd: cannot allocate %zu bytes to decompress a chunk", size);
        return NULL;
    }
    size_t got = ZSTD_decompress(out, size, src, n);
    if (ZSTD_isError(got) || got != size) {
        h5zstd_fail("zstd: decompression failed: %s",
                    ZSTD_isError(got) ? ZSTD_getErrorName(got) : "size differs from the frame's");
        H5free_memory(out);
        return NULL;
    }
    return out;
}

static void *h5zstd_decompress_stream(const void *src, size_t n, size_t *size) {
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    size_t cap = n < ((size_t)1 << 15) ? ((size_t)1 << 16) : 2 * n;
    void *out = dctx ? H5allocate_memory(cap, 0) : NULL;
    if (!out) {
        h5zstd_fail("zstd: cannot allocate a decompression context or %zu bytes", cap);
        goto fail;
    }
    ZSTD_inBuffer in = {src, n, 0};
    ZSTD_outBuffer dst = {out, cap, 0};
    for (;;) {
        size_t r = ZSTD_decompressStream(dctx, &dst, &in);
        if (ZSTD_isError(r)) {
            h5zstd_fail("zstd: decompression failed: %s", ZSTD_getErrorName(r));
            goto fail;
        }
        if (r == 0 && in.pos == in.size) break; // every frame decoded and flushed
        if (dst.pos < dst.size) {
            if (in.pos == in.size) { // the decoder wants input that is not there
                h5zstd_fail("zstd: chunk ends inside a frame (truncated)");
                goto fail;
            }
            continue;
        }
        if (cap >= H5ZSTD_MAX_CHUNK) {
            h5zstd_fail("zstd: frames decode to more than a chunk can hold");
            goto fail;
        }
        cap = 2 * cap > H5ZSTD_MAX_CHUNK ? (size_t)H5ZSTD_MAX_CHUNK : 2 * cap;
        void *grown = H5resize_memory(out, cap);
        if (!grown) {
            h5zstd_fail("zstd: cannot grow the output to %zu bytes", cap);
            goto fail;
        }
        out = grown;
        dst.dst = out;
        dst.size = cap;
    }
    ZSTD_freeDCtx(dctx);
    *size = dst.pos;
    return out;
fail:
    if (out) H5free_memory(out);
    ZSTD_freeDCtx(dctx);
    return NULL;
}

// Decode a chunk into exactly `expect` bytes (the chunk's size, known from the filter's
// parameters or from the reader): frames that say their size must say exactly that, before
// anything is allocated or decoded; frames that do not are decoded into an expect-byte buffer
// with one spare byte that must stay empty. So a chunk can neither make the reader allocate more
// than one chunk nor come back short (HDF5 would zero-fill the rest).
static void *h5zstd_decompress_exact(const void *src, size_t n, size_t expect) {
    unsigned long long total = 0;
    int known = 0;
    if (h5zstd_content_size(src, n, &total, &known) != 0) return NULL;
    if (known && total != expect) {
        h5zstd_fail("zstd: the chunk's frames say they hold %llu bytes, the chunk is %zu bytes",
                    total, expect);
        return NULL;
    }
    if (known) return h5zstd_decompress_sized(src, n, expect);
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    void *out = dctx ? H5allocate_memory(expect, 0) : NULL;
    if (!out) {
        h5zstd_fail("zstd: cannot allocate a decompression context or %zu bytes", expect);
        goto fail;
    }
    char spare;
    ZSTD_inBuffer in = {src, n, 0};
    ZSTD_outBuffer dst = {out, expect, 0}, extra = {&spare, 1, 0};
    for (;;) {
        ZSTD_outBuffer *o = dst.pos < dst.size ? &dst : &extra;
        size_t r = ZSTD_decompressStream(dctx, o, &in);
        if (ZSTD_isError(r)) {
            h5zstd_fail("zstd: decompression failed: %s", ZSTD_getErrorName(r));
            goto fail;
        }
        if (extra.pos > 0) {
            h5zstd_fail("zstd: the chunk decodes to more than its %zu bytes", expect);
            goto fail;
        }
        if (r == 0 && in.pos == in.size) break;      // every frame decoded and flushed
        if (in.pos == in.size && o->pos < o->size) { // the decoder wants input that is not there
            h5zstd_fail("zstd: chunk ends inside a frame (truncated)");
            goto fail;
        }
    }
    if (dst.pos != expect) {
        h5zstd_fail("zstd: the chunk decodes to %zu bytes, expected %zu", dst.pos, expect);
        goto fail;
    }
    ZSTD_freeDCtx(dctx);
    return out;
fail:
    if (out) H5free_memory(out);
    ZSTD_freeDCtx(dctx);
    return NULL;
}

// the size tessera's reader expects of the chunks it is about to read (0: none given)
static _Thread_local size_t h5zstd_expected;

static size_t h5zstd_decompress(size_t cd_nelmts, const unsigned cd_values[], size_t nbytes,
                                size_t *buf_size, void **buf) {
    if (nbytes == 0) {
        h5zstd_fail("zstd: empty chunk");
        return 0;
    }
    // the chunk's size: cd_values[1] of files written since it is stored there; the reader's
    // expectation (h5zstd_expect_chunk_bytes) for older files; both must agree when both say
    size_t expect = cd_nelmts >= 2 ? (size_t)cd_values[1] : h5zstd_expected;
    if (cd_nelmts >= 2 && (expect == 0 || (h5zstd_expected && h5zstd_expected != expect))) {
        h5zstd_fail("zstd: the filter's parameters give a chunk of %zu bytes, expected %zu", expect,
                    h5zstd_expected);
        return 0;
    }
    void *out;
    size_t size = expect;
    if (expect) {
        out = h5zstd_decompress_exact(*buf, nbytes, expect);
    } else { // an outside reader (h5dump, h5py) of a file that does not say its chunk size
        unsigned long long total = 0;
        int known = 0;
        if (h5zstd_content_size(*buf, nbytes, &total, &known) != 0) return 0;
        size = (size_t)total;
        out = known ? h5zstd_decompress_sized(*buf, nbytes, size)
                    : h5zstd_decompress_stream(*buf, nbytes, &size);
    }
    if (!out) return 0;
    H5free_memory(*buf);
    *buf = out;
    *buf_size = size > 0 ? size : 1;
    return size;
}

// the filter function HDF5 calls per chunk: returns the number of valid bytes now in *buf, or 0
static size_t h5zstd_filter(unsigned flags, size_t cd_nelmts, const unsigned cd_values[],
                            size_t nbytes, size_t *buf_size, void **buf) {
    if (flags & H5Z_FLAG_REVERSE)
        return h5zstd_decompress(cd_nelmts, cd_values, nbytes, buf_size, buf);
    // the level is stored as unsigned; zstd's fast (negative) levels come back through the cast
    int level = cd_nelmts >= 1 ? (int)cd_values[0] : H5ZSTD_LEVEL_DEFAULT;
    return h5zstd_compress(level, nbytes, buf_size, buf);
}

// called by H5Dcreate: record the chunk's uncompressed size as cd_values[1] (after the level), so
// that every reader can refuse a chunk that decodes to any other size
static herr_t h5zstd_set_local(hid_t dcpl, hid_t type, hid_t space) {
    (void)space;
    hsize_t chunk[H5S_MAX_RANK];
    int rank = H5Pget_chunk(dcpl, H5S_MAX_RANK, chunk);
    unsigned long long bytes = H5Tget_size(type);
    for (int i = 0; i < rank && bytes <= H5ZSTD_MAX_CHUNK; i++)
        bytes = chunk[i] > H5ZSTD_MAX_CHUNK ? H5ZSTD_MAX_CHUNK + 1 : bytes * chunk[i];
    if (rank <= 0 || bytes == 0 || bytes > H5ZSTD_MAX_CHUNK) {
        h5zstd_fail("zstd: a chunk of %llu bytes (rank %d): expected 1 to %llu bytes", bytes, rank,
                    H5ZSTD_MAX_CHUNK);
        return -1;
    }
    unsigned flags = 0, cd[H5ZSTD_N_VALUES] = {H5ZSTD_LEVEL_DEFAULT, 0};
    size_t n = H5ZSTD_N_VALUES;
    if (H5Pget_filter_by_id2(dcpl, H5ZSTD_FILTER_ID, &flags, &n, cd, 0, NULL, NULL) < 0) return -1;
    const unsigned values[H5ZSTD_N_VALUES] = {n >= 1 ? cd[0] : H5ZSTD_LEVEL_DEFAULT,
                                              (unsigned)bytes};
    return H5Pmodify_filter(dcpl, H5ZSTD_FILTER_ID, flags, H5ZSTD_N_VALUES, values);
}

static const H5Z_class2_t h5zstd_class = {
    .version = H5Z_CLASS_T_VERS,
    .id = H5ZSTD_FILTER_ID,
    .encoder_present = 1,
    .decoder_present = 1,
    .name = "zstd",
    .can_apply = NULL,
    .set_local = h5zstd_set_local,
    .filter = h5zstd_filter,
};

#ifdef H5ZSTD_PLUGIN

// ---------------------------------------------------------------------------------------------
// plugin entry points, looked up by HDF5 in every library on HDF5_PLUGIN_PATH

H5PL_type_t H5PLget_plugin_type(void) { return H5PL_TYPE_FILTER; }
const void *H5PLget_plugin_info(void) { return &h5zstd_class; }

#else

// ---------------------------------------------------------------------------------------------
// in-process use

ts_status h5zstd_register(void) {
    // registering again replaces the class by itself: calling this every time is harmless, and
    // stays right across H5close/H5open, which forgets registered filters
    if (H5Zregister(&h5zstd_class) < 0) {
        log_error("HDF5: cannot register the zstd filter (id %d)", H5ZSTD_FILTER_ID);
        return TS_ERR_SYSTEM;
    }
    return TS_OK;
}

void h5zstd_expect_chunk_bytes(size_t bytes) { h5zstd_expected = bytes; }

int h5zstd_set(hid_t dcpl, int level) {
    if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel()) {
        log_error("zstd level %d out of range: expected %d..%d", level, ZSTD_minCLevel(),
                  ZSTD_maxCLevel());
        return -1;
    }
    if (h5zstd_register() != TS_OK) return -1;
    const unsigned cd_values[1] = {(unsigned)level};
    if (H5Pset_filter(dcpl, H5ZSTD_FILTER_ID, H5Z_FLAG_MANDATORY, 1, cd_values) < 0) {
        log_error("HDF5: cannot add the zstd filter (id %d) to a dataset property list",
                  H5ZSTD_FILTER_ID);
        return -1;
    }
    return 0;
}

#endif
