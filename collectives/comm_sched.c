// comm_sched.c — the collectives' point-to-point schedules and the element-wise reductions
// (see comm_sched.h for the algorithms).
#include "collectives/comm_sched.h"

#include <stdint.h>
#include <string.h>

static int comm_mod(long a, int p) { return (int)(((a % p) + p) % p); }

static int comm_ceil_log2(int p) {
    int l = 0;
    while ((1L << l) < p)
        l++;
    return l;
}

const char *comm_algo_name(comm_algo algo) {
    switch (algo) {
    case COMM_ALGO_NONE: return "none";
    case COMM_ALGO_RING: return "ring";
    case COMM_ALGO_RECURSIVE_DOUBLING: return "recursive doubling";
    case COMM_ALGO_BINOMIAL: return "binomial tree";
    case COMM_ALGO_CHAIN: return "chain";
    case COMM_ALGO_DISSEMINATION: return "dissemination";
    case COMM_ALGO_RING_BLOCKS: return "ring of blocks";
    }
    return "unknown";
}

// Cut `longest` elements (a round's longest chunk or block) into segments of at most
// cut->segment bytes, of equal length but the last; window: the cut's, at most one per segment
// (a step's send reads the segment finished `segments` steps earlier, which must be added in
// by then).
static void comm_sched_cut(comm_sched *s, size_t longest, const comm_ring_cut *cut) {
    comm_ring_cut c = cut ? *cut : COMM_CUT_LOCAL;
    size_t per_seg = c.segment / s->esize;
    if (per_seg == 0) per_seg = 1;
    s->segments = (int)((longest + per_seg - 1) / per_seg);
    s->seg_elems = (longest + (size_t)s->segments - 1) / (size_t)s->segments;
    int w = c.window < 1 ? 1 : c.window > COMM_MAX_WINDOW ? COMM_MAX_WINDOW : c.window;
    s->window = w < s->segments ? w : s->segments;
}

// ring over `phases` (1: reduce-scatter or all-gather, 2: both), each chunk cut into segments
static void comm_sched_ring(comm_sched *s, int phases, const comm_ring_cut *cut) {
    size_t longest = (s->n + (size_t)s->size - 1) / (size_t)s->size; // elements
    s->algo = COMM_ALGO_RING;
    comm_sched_cut(s, longest, cut);
    s->steps = phases * (s->size - 1) * s->segments;
}

void comm_sched_init(comm_sched *s, comm_op op, size_t n, size_t esize, int size, int rank,
                     int root, const comm_ring_cut *cut) {
    memset(s, 0, sizeof *s);
    s->op = op;
    s->n = n;
    s->esize = esize;
    s->size = size;
    s->rank = rank;
    s->root = root;
    s->window = 1;
    size_t bytes = n * esize;
    int p = size;
    if (p == 1 || (op != COMM_BARRIER && n == 0)) {
        s->algo = COMM_ALGO_NONE;
        s->steps = 0;
        return;
    }
    switch (op) {
    case COMM_ALL_REDUCE_SUM:
    case COMM_ALL_REDUCE_MAX:
    case COMM_ALL_REDUCE_COMBINE:
        if (bytes < COMM_SMALL_BYTES || n < (size_t)p) {
            s->algo = COMM_ALGO_RECURSIVE_DOUBLING;
            int l = 0;
            while ((2L << l) <= p)
                l++;
            s->steps = l + 2; // hand-in, l exchanges, hand-back
        } else {
            comm_sched_ring(s, 2, cut);
        }
        break;
    case COMM_REDUCE_SCATTER_SUM:
    case COMM_REDUCE_SCATTER_COMBINE:
    case COMM_ALL_GATHER: comm_sched_ring(s, 1, cut); break;
    case COMM_BROADCAST:
        if (bytes < COMM_SMALL_BYTES) {
            s->algo = COMM_ALGO_BINOMIAL;
            s->steps = comm_ceil_log2(p) + 1; // receive, then one send per round
        } else {
            s->algo = COMM_ALGO_CHAIN;
            s->steps = (int)((bytes + COMM_CHAIN_SEGMENT - 1) / COMM_CHAIN_SEGMENT) + 1;
        }
        break;
    case COMM_BARRIER:
        s->algo = COMM_ALGO_DISSEMINATION;
        s->steps = comm_ceil_log2(p);
        break;
    case COMM_ALL_GATHER_V: // the lengths are not known here: comm_sched_init_blocks
        s->algo = COMM_ALGO_NONE;
        s->steps = 0;
        break;
    }
}

void comm_sched_init_blocks(comm_sched *s, int size, int rank, const uint64_t *len,
                            const uint64_t *off, const comm_ring_cut *cut) {
    memset(s, 0, sizeof *s);
    s->op = COMM_ALL_GATHER_V;
    s->esize = 1;
    s->size = size;
    s->rank = rank;
    s->window = 1;
    s->blk_len = len;
    s->blk_off = off;
    uint64_t longest = 0;
    for (int r = 0; r < size; r++) {
        s->n += len[r];
        if (len[r] > longest) longest = len[r];
    }
    if (size == 1 || longest == 0) {
        s->algo = COMM_ALGO_NONE;
        return;
    }
    s->algo = COMM_ALGO_RING_BLOCKS;
    comm_sched_cut(s, (size_t)longest, cut); // esize 1: segments of bytes
    s->steps = (size - 1) * s->segments;
}

size_t comm_sched_scratch_bytes(const comm_sched *s) {
    if (s->algo == COMM_ALGO_RECURSIVE_DOUBLING) return s->n * s->esize;
    if (s->algo == COMM_ALGO_RING && s->op != COMM_ALL_GATHER && s->op != COMM_ALL_GATHER_V)
        return (size_t)s->window * s->seg_elems * s->esize; // one segment per step in flight
    return 0;
}

// ---------------------------------------------------------------------------------------------
// one step of each algorithm

// segment `seg` of chunk `chunk` (empty when the chunk is one element shorter than the longest)
static void comm_msg_segment(const comm_sched *s, comm_msg *m, int peer, int chunk, int seg,
                             int to_scratch) {
    size_t first, count;
    comm_chunk(s->n, s->size, chunk, &first, &count);
    size_t lo = (size_t)seg * s->seg_elems, hi = lo + s->seg_elems;
    if (lo > count) lo = count;
    if (hi > count) hi = count;
    m->peer = hi > lo ? peer : -1;
    m->to_scratch = to_scratch;
    m->off = (first + lo) * s->esize;
    m->bytes = (hi - lo) * s->esize;
}

static void comm_step_ring(const comm_sched *s, int step, int scratch_slot, comm_step *out) {
    int p = s->size, r = s->rank;
    int left = comm_mod(r - 1, p), right = comm_mod(r + 1, p);
    int per_phase = (p - 1) * s->segments;
    // all-reduce runs the reduce-scatter steps, then the all-gather ones
    int gather = s->op == COMM_ALL_GATHER || step >= per_phase;
    int t = step >= per_phase ? step - per_phase : step;
    int k = t / s->segments, seg = t % s->segments;
    if (!gather) {
        comm_msg_segment(s, &out->send, right, comm_mod((long)r - k - 1, p), seg, 0);
        comm_msg_segment(s, &out->recv, left, comm_mod((long)r - k - 2, p), seg, 1);
        out->recv.scratch_off = (size_t)scratch_slot * s->seg_elems * s->esize;
        out->reduce = out->recv.peer >= 0;
        out->scratch_first = 1; // the partial sum of the ranks before this one comes first
        out->red_off = out->recv.off;
    } else {
        comm_msg_segment(s, &out->send, right, comm_mod((long)r - k, p), seg, 0);
        comm_msg_segment(s, &out->recv, left, comm_mod((long)r - k - 1, p), seg, 0);
    }
}

// segment `seg` of block `blk` (no message when the block is shorter)
static void comm_msg_block(const comm_sched *s, comm_msg *m, int peer, int blk, int seg) {
    uint64_t len = s->blk_len[blk], lo = (uint64_t)seg * s->seg_elems, hi = lo + s->seg_elems;
    if (lo > len) lo = len;
    if (hi > len) hi = len;
    m->peer = hi > lo ? peer : -1;
    m->off = (size_t)(s->blk_off[blk] + lo);
    m->bytes = (size_t)(hi - lo);
}

static void comm_step_ring_blocks(const comm_sched *s, int step, comm_step *out) {
    int p = s->size, r = s->rank;
    int k = step / s->segments, seg = step % s->segments;
    comm_msg_block(s, &out->send, comm_mod(r + 1, p), comm_mod((long)r - k, p), seg);
    comm_msg_block(s, &out->recv, comm_mod(r - 1, p), comm_mod((long)r - k - 1, p), seg);
}

static void comm_step_recursive_doubling(const comm_sched *s, int step, comm_step *out) {
    int p = s->size, r = s->rank;
    int q = 1;
    while (2 * q <= p)
        q *= 2;
    int extra = p - q;
    size_t bytes = s->n * s->esize;
    if (step == 0 || step == s->steps - 1) { // hand-in and hand-back between 2i and 2i+1
        if (r >= 2 * extra) return;
        int odd = r % 2;
        int hand_in = step == 0;
        comm_msg *m = (odd == hand_in) ? &out->recv : &out->send;
        m->peer = odd ? r - 1 : r + 1;
        m->bytes = bytes;
        if (odd && hand_in) { // 2i+1 adds 2i's vector, 2i's first
            m->to_scratch = 1;
            out->reduce = 1;
            out->scratch_first = 1;
        }
        return;
    }
    if (r < 2 * extra && r % 2 == 0) return; // handed its vector in; waits for the result
    int v = r < 2 * extra ? r / 2 : r - extra;
    int vp = v ^ (1 << (step - 1));
    int partner = vp < extra ? 2 * vp + 1 : vp + extra;
    out->send.peer = partner;
    out->send.bytes = bytes;
    out->recv.peer = partner;
    out->recv.bytes = bytes;
    out->recv.to_scratch = 1;
    out->reduce = 1;
    out->scratch_first = partner < r;
}

static void comm_step_binomial(const comm_sched *s, int step, comm_step *out) {
    int p = s->size;
    int vr = comm_mod((long)s->rank - s->root, p);
    size_t bytes = s->n * s->esize;
    if (step == 0) {
        if (vr == 0) return;
        int parent = vr & (vr - 1); // vr without its lowest set bit
        out->recv.peer = comm_mod((long)parent + s->root, p);
        out->recv.bytes = bytes;
        return;
    }
    int mask = 1 << (s->steps - 1 - step); // children at distance 2^(L-1), ..., 2, 1
    if (vr % (2 * mask) == 0 && vr + mask < p) {
        out->send.peer = comm_mod((long)vr + mask + s->root, p);
        out->send.bytes = bytes;
    }
}

static void comm_step_chain(const comm_sched *s, int step, comm_step *out) {
    int p = s->size;
    int vr = comm_mod((long)s->rank - s->root, p);
    size_t bytes = s->n * s->esize;
    size_t segs = (size_t)s->steps - 1;
    size_t i = (size_t)step;
    if (vr > 0 && i < segs) { // receive segment i from the rank before
        out->recv.peer = comm_mod((long)s->rank - 1, p);
        out->recv.off = i * COMM_CHAIN_SEGMENT;
        out->recv.bytes =
            bytes - out->recv.off < COMM_CHAIN_SEGMENT ? bytes - out->recv.off : COMM_CHAIN_SEGMENT;
    }
    if (vr < p - 1 && i >= 1) { // forward segment i-1 to the rank after
        out->send.peer = comm_mod((long)s->rank + 1, p);
        out->send.off = (i - 1) * COMM_CHAIN_SEGMENT;
        out->send.bytes =
            bytes - out->send.off < COMM_CHAIN_SEGMENT ? bytes - out->send.off : COMM_CHAIN_SEGMENT;
    }
}

void comm_sched_step(const comm_sched *s, int step, comm_step *out) {
    int scratch_slot = step % s->window;
    memset(out, 0, sizeof *out);
    out->send.peer = -1;
    out->recv.peer = -1;
    switch (s->algo) {
    case COMM_ALGO_NONE: break;
    case COMM_ALGO_RING: comm_step_ring(s, step, scratch_slot, out); break;
    case COMM_ALGO_RECURSIVE_DOUBLING: comm_step_recursive_doubling(s, step, out); break;
    case COMM_ALGO_BINOMIAL: comm_step_binomial(s, step, out); break;
    case COMM_ALGO_CHAIN: comm_step_chain(s, step, out); break;
    case COMM_ALGO_RING_BLOCKS: comm_step_ring_blocks(s, step, out); break;
    case COMM_ALGO_DISSEMINATION:
        out->send.peer = comm_mod((long)s->rank + (1L << step), s->size);
        out->recv.peer = comm_mod((long)s->rank - (1L << step), s->size);
        break;
    }
}

// ---------------------------------------------------------------------------------------------
// reductions: one loop per (dtype, op, order). -O2 does not vectorize loops of unknown length,
// and a scalar loop would make the reduction, not the network, the bottleneck of a ring step:
// `omp simd` asks for vector code (element-wise, so the result is the same bits either way).

#define COMM_REDUCE_LOOP(T, EXPR)                                                                  \
    do {                                                                                           \
        T *restrict d = dst;                                                                       \
        const T *restrict s = src;                                                                 \
        if (src_first) {                                                                           \
            _Pragma("omp simd") for (size_t i = 0; i < n; i++) {                                   \
                T a = s[i], b = d[i];                                                              \
                d[i] = EXPR;                                                                       \
            }                                                                                      \
        } else {                                                                                   \
            _Pragma("omp simd") for (size_t i = 0; i < n; i++) {                                   \
                T a = d[i], b = s[i];                                                              \
                d[i] = EXPR;                                                                       \
            }                                                                                      \
        }                                                                                          \
    } while (0)

void comm_reduce(void *dst, const void *src, size_t n, comm_dtype dt, int max, int src_first) {
    switch (dt) {
    case COMM_F32:
        if (max)
            COMM_REDUCE_LOOP(float, a >= b ? a : b);
        else
            COMM_REDUCE_LOOP(float, a + b);
        break;
    case COMM_F64:
        if (max)
            COMM_REDUCE_LOOP(double, a >= b ? a : b);
        else
            COMM_REDUCE_LOOP(double, a + b);
        break;
    case COMM_I32:
        // integer sums wrap (two's complement) instead of being undefined on overflow
        if (max)
            COMM_REDUCE_LOOP(int32_t, a >= b ? a : b);
        else
            COMM_REDUCE_LOOP(int32_t, (int32_t)((uint32_t)a + (uint32_t)b));
        break;
    }
}

void comm_step_reduce(const comm_step *cs, unsigned char *buf, const unsigned char *scratch,
                      size_t esize, comm_dtype dt, int max, const comm_combine *cb) {
    unsigned char *dst = buf + cs->red_off;
    const unsigned char *src = scratch + cs->recv.scratch_off;
    size_t n = cs->recv.bytes / esize;
    if (cb && cb->fn)
        cb->fn(dst, src, n, cs->scratch_first, cb->ctx);
    else
        comm_reduce(dst, src, n, dt, max, cs->scratch_first);
}
