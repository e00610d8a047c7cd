// codec.c — the codec registry, creating codecs, and codec state as bytes (see codec.h; a
// bucket's trip through codec and communicator is codec_bucket.c).
#include "collectives/codec.h"

#include <stdlib.h>
#include <string.h>

extern const codec_ops codec_none_ops;                                 // codec_none.c
extern const codec_ops codec_bf16_ops;                                 // codec_bf16.c
extern const codec_ops codec_int8_ops, codec_int4_ops, codec_int2_ops; // codec_blockq.c
extern const codec_ops codec_topk_ops;                                 // codec_topk.c
extern const codec_ops codec_powersgd_ops;                             // codec_powersgd.c
void codec_zstd_free(codec *cx);                                       // codec_bucket.c

// ---------------------------------------------------------------------------------------------
// the registry: `none` first; a new codec adds its row here and its name to CODEC_CHOICES

static const codec_ops *const codec_registry[] = {
    &codec_none_ops, &codec_bf16_ops, &codec_int8_ops,     &codec_int4_ops,
    &codec_int2_ops, &codec_topk_ops, &codec_powersgd_ops,
};
#define CODEC_N ((int)(sizeof codec_registry / sizeof codec_registry[0]))

int codec_count(void) { return CODEC_N; }

const codec_ops *codec_at(int i) { return i >= 0 && i < CODEC_N ? codec_registry[i] : NULL; }

const codec_ops *codec_find(const char *name) {
    for (int i = 0; i < CODEC_N; i++)
        if (strcmp(codec_registry[i]->name, name) == 0) return codec_registry[i];
    return NULL;
}

void codec_names(char *buf, size_t len) {
    size_t used = 0;
    if (len) buf[0] = '\0';
    for (int i = 0; i < CODEC_N && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
                                 codec_registry[i]->name);
}

void codec_params_default(codec_params *p) {
    memset(p, 0, sizeof *p);
    p->dense_below = 4096;
    p->topk_fraction = 0.01;
    p->topk_value_bits = 32;
    p->powersgd_rank = 4;
    p->zstd = 1;
}

ts_status codec_create(codec **out, const char *name, int rank, int size, size_t n) {
    return codec_create_params(out, name, rank, size, n, NULL);
}

ts_status codec_create_params(codec **out, const char *name, int rank, int size, size_t n,
                              const codec_params *p) {
    *out = NULL;
    const codec_ops *ops = codec_find(name);
    if (!ops) {
        char known[256];
        codec_names(known, sizeof known);
        log_error("[comm] codec: unknown codec \"%s\" (known: %s)", name, known);
        return TS_ERR_INPUT;
    }
    return codec_create_with_params(out, ops, rank, size, n, p);
}

ts_status codec_create_with(codec **out, const codec_ops *ops, int rank, int size, size_t n) {
    return codec_create_with_params(out, ops, rank, size, n, NULL);
}

ts_status codec_create_with_params(codec **out, const codec_ops *ops, int rank, int size, size_t n,
                                   const codec_params *p) {
    *out = NULL;
    if (ops->wire == CODEC_WIRE_ROUNDS && (ops->rounds < 1 || ops->rounds > CODEC_MAX_ROUNDS)) {
        log_error("codec %s: %d rounds (1 to %d)", ops->name, ops->rounds, CODEC_MAX_ROUNDS);
        return TS_ERR_INTERNAL;
    }
    codec *cx = ts_calloc(1, sizeof *cx, "codec");
    cx->ops = ops;
    cx->rank = rank;
    cx->size = size;
    cx->n = n;
    if (p)
        cx->params = *p;
    else
        codec_params_default(&cx->params);
    codec_tensor *own = NULL;
    if (cx->params.tensors && cx->params.n_tensors > 0) {
        own = ts_calloc((size_t)cx->params.n_tensors, sizeof *own, "codec tensor table");
        memcpy(own, cx->params.tensors, (size_t)cx->params.n_tensors * sizeof *own);
    } else {
        cx->params.n_tensors = 0;
    }
    cx->params.tensors = own;
    // the table as codec.h describes it: in order, apart, within the buffer
    size_t end = 0;
    for (int i = 0; i < cx->params.n_tensors; i++) {
        const codec_tensor *t = &own[i];
        if (t->offset < end || t->offset > n || t->rows * t->cols > n - t->offset) {
            log_error("codec %s: tensor %d (offset %zu, %zu x %zu) overlaps the one before it "
                      "or ends past the %zu values of the buffer",
                      ops->name, i, t->offset, t->rows, t->cols, n);
            free(own);
            free(cx);
            return TS_ERR_INTERNAL;
        }
        end = t->offset + t->rows * t->cols;
    }
    ts_status st = ops->init ? ops->init(cx) : TS_OK;
    if (st != TS_OK) {
        free(own);
        free(cx);
        return st;
    }
    *out = cx;
    return TS_OK;
}

void codec_destroy(codec *cx) {
    if (!cx) return;
    if (cx->ops->destroy) cx->ops->destroy(cx);
    codec_zstd_free(cx);
    free((void *)cx->params.tensors);
    free(cx);
}

int codec_has_state(const codec *cx) { return cx && cx->ops->save != NULL; }

int codec_tensor_dense(const codec *cx, const codec_tensor *t) {
    return t->rows * t->cols < cx->params.dense_below || (cx->ops->dense && cx->ops->dense(cx, t));
}

const codec_tensor *codec_tensor_at(const codec *cx, size_t first) {
    int lo = 0, hi = cx->params.n_tensors; // the table is in increasing offsets
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (cx->params.tensors[mid].offset < first)
            lo = mid + 1;
        else
            hi = mid;
    }
    const codec_tensor *t = cx->params.tensors;
    while (lo < cx->params.n_tensors && t[lo].offset == first && t[lo].rows * t[lo].cols == 0)
        lo++; // an empty tensor starts where the next one does
    return lo < cx->params.n_tensors && t[lo].offset == first ? &t[lo] : NULL;
}

// ---------------------------------------------------------------------------------------------
// state as bytes: u16 name length, name, u64 byte count, bytes (little-endian), per array

typedef struct {
    unsigned char *buf;
    size_t len, cap;
} codec_blob;

static void blob_add(codec_blob *b, const void *data, size_t bytes) {
    if (b->len + bytes > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + bytes)
            cap *= 2;
        unsigned char *grown = realloc(b->buf, cap);
        if (!grown) ts_fatal(TS_ERR_SYSTEM, "out of memory packing codec state (%zu bytes)", cap);
        b->buf = grown;
        b->cap = cap;
    }
    if (bytes) memcpy(b->buf + b->len, data, bytes);
    b->len += bytes;
}

static void blob_add_le(codec_blob *b, uint64_t v, int bytes) {
    unsigned char le[8];
    for (int i = 0; i < bytes; i++)
        le[i] = (unsigned char)(v >> (8 * i));
    blob_add(b, le, (size_t)bytes);
}

static uint64_t blob_get_le(const unsigned char *p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int codec_state_name_ok(const char *name, size_t len) {
    if (len == 0 || len > CODEC_STATE_NAME_MAX) return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_'))
            return 0;
    }
    return 1;
}

static ts_status codec_blob_put(codec_blob *b, const char *name, const void *data, size_t bytes,
                                ts_status bad_name) {
    size_t nl = strlen(name);
    if (!codec_state_name_ok(name, nl)) {
        log_error("codec state array \"%.80s\": expected a name of 1 to %d characters from "
                  "[A-Za-z0-9_]",
                  name, CODEC_STATE_NAME_MAX);
        return bad_name;
    }
    blob_add_le(b, nl, 2);
    blob_add(b, name, nl);
    blob_add_le(b, bytes, 8);
    blob_add(b, data, bytes);
    return TS_OK;
}

// a codec's save hook naming an array badly is a bug in the codec
static ts_status codec_pack_put(codec_state_io *io, const char *name, const void *data,
                                size_t bytes) {
    return codec_blob_put(io->ctx, name, data, bytes, TS_ERR_INTERNAL);
}

// a stored array named badly is a damaged checkpoint
ts_status codec_state_append(unsigned char **blob, size_t *len, const char *name, const void *data,
                             size_t bytes) {
    codec_blob b = {*blob, *len, *len};
    ts_status st = codec_blob_put(&b, name, data, bytes, TS_ERR_INPUT);
    *blob = b.buf;
    *len = b.len;
    return st;
}

ts_status codec_state_pack(const codec *cx, unsigned char **blob, size_t *len) {
    *blob = NULL;
    *len = 0;
    if (!codec_has_state(cx)) return TS_OK;
    codec_blob b = {NULL, 0, 0};
    codec_state_io io = {codec_pack_put, NULL, &b};
    ts_status st = cx->ops->save(cx, &io);
    if (st != TS_OK) {
        free(b.buf);
        return st;
    }
    *blob = b.buf;
    *len = b.len;
    return TS_OK;
}

int codec_state_next(const unsigned char *blob, size_t len, size_t *pos,
                     char name[CODEC_STATE_NAME_MAX + 1], const unsigned char **data, size_t *bytes,
                     const char *what) {
    size_t at = *pos;
    if (at == len) return 0;
    size_t nl = len - at >= 2 ? (size_t)blob_get_le(blob + at, 2) : 0;
    if (len - at < 2 + nl + 8 || !codec_state_name_ok((const char *)blob + at + 2, nl)) {
        log_error("%s: codec state damaged at byte %zu of %zu", what, at, len);
        return -1;
    }
    uint64_t n = blob_get_le(blob + at + 2 + nl, 8);
    if (n > len - at - 2 - nl - 8) {
        log_error("%s: codec state damaged at byte %zu of %zu (an array runs past the end)", what,
                  at, len);
        return -1;
    }
    memcpy(name, blob + at + 2, nl);
    name[nl] = '\0';
    *data = blob + at + 2 + nl + 8;
    *bytes = (size_t)n;
    *pos = at + 2 + nl + 8 + (size_t)n;
    return 1;
}

typedef struct {
    const unsigned char *blob;
    size_t len;
    const char *what;
} codec_unpack_ctx;

static ts_status codec_unpack_get(codec_state_io *io, const char *name, void *data, size_t bytes) {
    const codec_unpack_ctx *u = io->ctx;
    size_t pos = 0, got;
    char at[CODEC_STATE_NAME_MAX + 1];
    const unsigned char *src;
    int k;
    while ((k = codec_state_next(u->blob, u->len, &pos, at, &src, &got, u->what)) == 1) {
        if (strcmp(at, name) != 0) continue;
        if (got != bytes) {
            log_error("%s: codec state array '%s' holds %zu bytes, expected %zu", u->what, name,
                      got, bytes);
            return TS_ERR_INPUT;
        }
        if (bytes) memcpy(data, src, bytes);
        return TS_OK;
    }
    if (k == 0) log_error("%s: codec state array '%s' is missing", u->what, name);
    return TS_ERR_INPUT;
}

ts_status codec_state_unpack(codec *cx, const unsigned char *blob, size_t len, const char *what) {
    if (!codec_has_state(cx)) return TS_OK;
    codec_unpack_ctx u = {blob, len, what};
    codec_state_io io = {NULL, codec_unpack_get, &u};
    return cx->ops->load(cx, &io);
}

// ---------------------------------------------------------------------------------------------
// state between ranks

ts_status codec_blob_gather(comm *c, const unsigned char *mine, size_t len, unsigned char **all,
                            size_t *lens) {
    *all = NULL;
    memset(lens, 0, (size_t)c->size * sizeof *lens);
    // every length first (exact in a double up to 2^53 bytes), so that all ranks pass the same
    // room to the all-gather
    double *table = ts_calloc((size_t)c->size, sizeof(double), "state lengths");
    table[c->rank] = (double)len;
    ts_status st = c->all_reduce_sum_f64(c, table, (size_t)c->size);
    size_t total = 0;
    for (int r = 0; r < c->size; r++)
        total += (size_t)table[r];
    free(table);
    if (st == TS_OK) {
        *all = ts_malloc(total ? total : 1, "state of every rank");
        st = c->all_gather_v(c, mine, len, *all, total, lens);
    }
    if (st != TS_OK) {
        free(*all);
        *all = NULL;
    }
    return st;
}

ts_status codec_state_gather(const codec *cx, comm *c, unsigned char **all, size_t *lens) {
    *all = NULL;
    memset(lens, 0, (size_t)c->size * sizeof *lens);
    if (!codec_has_state(cx)) return TS_OK;
    unsigned char *mine = NULL;
    size_t len = 0;
    TS_CHECK(codec_state_pack(cx, &mine, &len));
    ts_status st = codec_blob_gather(c, mine, len, all, lens);
    free(mine);
    return st;
}

ts_status codec_state_restore(codec *cx, comm *c, int holder, const char *saved_name,
                              int saved_world, const unsigned char *all, const size_t *lens,
                              const char *what) {
    if (!codec_has_state(cx)) {
        if (c->rank == holder && saved_name && saved_name[0])
            log_warn("%s: holds state of codec %s, which codec %s does not use: ignored", what,
                     saved_name, cx->ops->name);
        return TS_OK;
    }
    // the holder's verdict and the bytes to come, for everyone
    int64_t head[2] = {0, 0};
    if (c->rank == holder) {
        int same = saved_name && strcmp(saved_name, cx->ops->name) == 0;
        if (!saved_name || !saved_name[0])
            log_warn("%s: holds no codec state: codec %s starts afresh (zero error feedback)", what,
                     cx->ops->name);
        else if (!same)
            log_warn("%s: holds state of codec %s, not %s: codec %s starts afresh", what,
                     saved_name, cx->ops->name, cx->ops->name);
        else if (saved_world != c->size)
            log_warn("%s: codec state of %d ranks, this run has %d: codec %s starts afresh", what,
                     saved_world, c->size, cx->ops->name);
        head[0] = same && saved_world == c->size;
        for (int r = 0; head[0] && r < c->size; r++)
            head[1] += (int64_t)lens[r];
    }
    TS_CHECK(c->broadcast(c, head, sizeof head, holder));
    if (!head[0]) return TS_OK;
    uint64_t *len = ts_calloc((size_t)c->size, sizeof(uint64_t), "codec state lengths");
    unsigned char *buf = c->rank == holder ? NULL : ts_malloc(head[1] ? head[1] : 1, "codec state");
    if (c->rank == holder)
        for (int r = 0; r < c->size; r++)
            len[r] = lens[r];
    ts_status st = c->broadcast(c, len, (size_t)c->size * sizeof(uint64_t), holder);
    if (st == TS_OK)
        st = c->broadcast(c, c->rank == holder ? (void *)all : buf, (size_t)head[1], holder);
    if (st == TS_OK) {
        size_t at = 0;
        for (int r = 0; r < c->rank; r++)
            at += (size_t)len[r];
        st = codec_state_unpack(cx, (c->rank == holder ? all : buf) + at, (size_t)len[c->rank],
                                what);
    }
    free(len);
    free(buf);
    return st;
}
