// test_comm_sched.c — the collectives' schedules (collectives/comm_sched.c) run for worlds of 1
// to 9 ranks inside one process, on a simulated network, without MPI.
//
// mpirun on a small machine reaches 4 ranks; this reaches the shapes it cannot (5, 6, 7: not a
// power of two, with several ranks handing in their vectors; 8; 9) and checks what a real
// network would hide:
//   - every send meets a receive of the same length, in order, and no rank waits forever
//     (messages complete only when the receiver takes them, like MPI's rendezvous protocol);
//   - a send's data does not change between posting and delivery, delivered as late as a legal
//     MPI execution allows (a ring window of up to COMM_MAX_WINDOW steps is safe);
//   - the results: exact sums, maxima, chunks, broadcasts, and random float sums bit for bit in
//     the documented order;
//   - the bytes each rank sends and receives, against the formulas of test_comm.c;
//   - what codecs use: the combine collectives (results in the documented order, with a combine
//     that is neither commutative nor associative) and the all-gather of variable blocks.
// The simulated engine follows comm_mpi.c's: fill the window, complete the oldest step, reduce.
// Every check runs under several ring cuts (comm_ring_cut): the two comm_mpi.c picks from, the
// widest window, and odd segment sizes, down to one element per step.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "collectives/comm_sched.h"
#include "tests/mpi/comm_values.h"
#include "tests/unit/expect.h"

#define MAX_P    9
#define MAX_MSGS (2 * COMM_MAX_WINDOW) // messages in flight between two ranks

static int mod(long a, int p) { return (int)(((a % p) + p) % p); }

// ---------------------------------------------------------------------------------------------
// the simulated world

typedef struct {
    comm_step cs;
    int recv_done, send_done;
} flight;

typedef struct {
    comm_sched s;
    unsigned char *buf, *scratch;
    int next_step, inflight;
    flight fl[COMM_MAX_WINDOW];
    uint64_t sent, recv;
    int done;
} rank_state;

typedef struct { // a posted message: which rank, which flight entry, and for sends a snapshot
    int rank, entry_step;
    unsigned char *ptr;
    size_t bytes;
    unsigned char *snapshot;
} posted;

typedef struct {
    posted sends[MAX_MSGS], recvs[MAX_MSGS];
    int n_sends, n_recvs;
} channel_queue;

static rank_state g_ranks[MAX_P];
static channel_queue *g_chan; // [src * MAX_P + dst]
static comm_op g_op;
static comm_dtype g_dt;
static const comm_combine *g_combine; // the *_COMBINE collectives' reduction, else NULL
static const uint64_t *g_blk_len;     // blocks of an all-gather-v phase, else NULL
static comm_ring_cut g_cut;           // the ring's cut in this pass
static uint64_t g_blk_off[MAX_P];

// deliver the oldest send from src to dst into the oldest receive posted for it, if both exist
static int match(int src, int dst) {
    channel_queue *q = &g_chan[src * MAX_P + dst];
    if (q->n_sends == 0 || q->n_recvs == 0) return 0;
    {
        posted s = q->sends[0], r = q->recvs[0];
        memmove(q->sends, q->sends + 1, (size_t)--q->n_sends * sizeof(posted));
        memmove(q->recvs, q->recvs + 1, (size_t)--q->n_recvs * sizeof(posted));
        EXPECT(s.bytes == r.bytes, "rank %d sends %zu bytes, rank %d expects %zu", src, s.bytes,
               dst, r.bytes);
        EXPECT(s.bytes == 0 || memcmp(s.snapshot, s.ptr, s.bytes) == 0,
               "rank %d's send buffer changed while the send was in flight", src);
        if (s.bytes > 0 && r.bytes > 0)
            memcpy(r.ptr, s.snapshot, s.bytes < r.bytes ? s.bytes : r.bytes);
        free(s.snapshot);
        // mark the flight entries done: the entries are found by their step number
        rank_state *a = &g_ranks[src], *b = &g_ranks[dst];
        for (int f = 0; f < a->inflight; f++)
            if (a->fl[f].send_done == -1 - s.entry_step) a->fl[f].send_done = 1;
        for (int f = 0; f < b->inflight; f++)
            if (b->fl[f].recv_done == -1 - r.entry_step) b->fl[f].recv_done = 1;
        a->sent += s.bytes;
        b->recv += r.bytes;
    }
    return 1;
}

static void post(int r, int step) {
    rank_state *rs = &g_ranks[r];
    comm_step cs;
    comm_sched_step(&rs->s, step, &cs);
    // a step without messages is skipped when nothing is in flight, else it holds its place in
    // the window and completes at once (comm_mpi_fill)
    if (cs.recv.peer < 0 && cs.send.peer < 0 && rs->inflight == 0) return;
    flight *f = &rs->fl[rs->inflight++];
    f->cs = cs;
    // pending entries hold -1 - step, so that a match can find them
    f->recv_done = cs.recv.peer >= 0 ? -1 - step : 1;
    f->send_done = cs.send.peer >= 0 ? -1 - step : 1;
    if (cs.recv.peer >= 0) {
        EXPECT(cs.recv.peer != r && cs.recv.peer < rs->s.size, "rank %d receives from %d", r,
               cs.recv.peer);
        channel_queue *q = &g_chan[cs.recv.peer * MAX_P + r];
        unsigned char *ptr = !cs.recv.bytes       ? NULL
                             : cs.recv.to_scratch ? rs->scratch + cs.recv.scratch_off
                                                  : rs->buf + cs.recv.off;
        EXPECT(q->n_recvs < MAX_MSGS, "receive queue full");
        q->recvs[q->n_recvs++] = (posted){r, step, ptr, cs.recv.bytes, NULL};
    }
    if (cs.send.peer >= 0) {
        EXPECT(cs.send.peer != r && cs.send.peer < rs->s.size, "rank %d sends to %d", r,
               cs.send.peer);
        channel_queue *q = &g_chan[r * MAX_P + cs.send.peer];
        unsigned char *ptr = cs.send.bytes ? rs->buf + cs.send.off : NULL; // barrier: no buffer
        unsigned char *snap = malloc(cs.send.bytes + 1);
        if (cs.send.bytes) memcpy(snap, ptr, cs.send.bytes);
        EXPECT(q->n_sends < MAX_MSGS, "send queue full");
        q->sends[q->n_sends++] = (posted){r, step, ptr, cs.send.bytes, snap};
    }
}

// one rank, as far as it goes: the loop of comm_mpi_advance
static int advance(int r) {
    rank_state *rs = &g_ranks[r];
    int progressed = 0;
    while (!rs->done) {
        while (rs->inflight < rs->s.window && rs->next_step < rs->s.steps) {
            post(r, rs->next_step++);
            progressed = 1;
        }
        if (rs->inflight == 0) {
            rs->done = 1;
            progressed = 1;
            break;
        }
        // messages are delivered as late as possible: when the receiver needs them (a send
        // completes only then), so that a buffer reused too early shows
        if (rs->fl[0].recv_done != 1) progressed |= match(rs->fl[0].cs.recv.peer, r);
        flight f = rs->fl[0];
        if (f.recv_done != 1 || f.send_done != 1) break;
        progressed = 1;
        rs->inflight--;
        memmove(rs->fl, rs->fl + 1, (size_t)rs->inflight * sizeof rs->fl[0]);
        if (f.cs.reduce)
            comm_step_reduce(&f.cs, rs->buf, rs->scratch, rs->s.esize, g_dt,
                             g_op == COMM_ALL_REDUCE_MAX, g_combine);
    }
    return progressed;
}

// run one collective on p simulated ranks; bufs[r] is rank r's buffer (in place)
static void run(comm_op op, comm_dtype dt, size_t esize, int p, size_t n, int root,
                unsigned char **bufs) {
    g_op = op;
    g_dt = dt;
    memset(g_chan, 0, sizeof(channel_queue) * MAX_P * MAX_P);
    for (int r = 0; r < p; r++) {
        rank_state *rs = &g_ranks[r];
        memset(rs, 0, sizeof *rs);
        if (g_blk_len)
            comm_sched_init_blocks(&rs->s, p, r, g_blk_len, g_blk_off, &g_cut);
        else
            comm_sched_init(&rs->s, op, n, esize, p, r, root, &g_cut);
        EXPECT(rs->s.window >= 1 && rs->s.window <= g_cut.window &&
                   (rs->s.window <= rs->s.segments || rs->s.window == 1),
               "window %d (cut: %d, segments %d)", rs->s.window, g_cut.window, rs->s.segments);
        rs->buf = bufs[r];
        rs->scratch = malloc(comm_sched_scratch_bytes(&rs->s) + 1);
    }
    for (;;) {
        int all_done = 1, progressed = 0;
        for (int r = 0; r < p; r++) {
            progressed |= advance(r);
            all_done &= g_ranks[r].done;
        }
        if (all_done) break;
        if (!progressed) {
            EXPECT(0, "%s p=%d n=%zu: deadlock (no rank can move)", comm_op_name(op), p, n);
            break;
        }
    }
    for (int i = 0; i < p * MAX_P; i++)
        EXPECT(g_chan[i].n_sends == 0 && g_chan[i].n_recvs == 0,
               "%s p=%d n=%zu: unmatched messages left", comm_op_name(op), p, n);
    for (int r = 0; r < p; r++)
        free(g_ranks[r].scratch);
}

// ---------------------------------------------------------------------------------------------
// expectations

static size_t chunk_count(size_t n, int p, int r) {
    size_t first, count;
    comm_chunk(n, p, mod(r, p), &first, &count);
    return count;
}

static int log2_floor(int p) {
    int l = 0;
    while ((2L << l) <= p)
        l++;
    return l;
}

static void want_all_reduce(int p, int r, size_t n, size_t s, uint64_t *sent, uint64_t *recv) {
    *sent = *recv = 0;
    if (p == 1 || n == 0) return;
    if (n * s >= COMM_SMALL_BYTES && n >= (size_t)p) {
        *sent = (2 * n - chunk_count(n, p, r) - chunk_count(n, p, r + 1)) * s;
        *recv = (2 * n - chunk_count(n, p, r - 1) - chunk_count(n, p, r)) * s;
        return;
    }
    int l = log2_floor(p), extra = p - (1 << l);
    uint64_t v = n * s;
    uint64_t k = r < 2 * extra ? (r % 2 == 0 ? 1 : (uint64_t)l + 1) : (uint64_t)l;
    *sent = *recv = k * v;
}

// the documented summation order (see test_comm.c), for all n elements at once
static void order_sums(int p, size_t n, float *out) {
    if (n * sizeof(float) >= COMM_SMALL_BYTES && n >= (size_t)p) {
        for (int j = 0; j < p; j++) { // chunk j: from rank j+1 up the ring, ending at rank j
            size_t first, count;
            comm_chunk(n, p, j, &first, &count);
            for (size_t i = first; i < first + count; i++) {
                float acc = comm_test_value(mod(j + 1, p), i);
                for (int k = 2; k <= p; k++)
                    acc = acc + comm_test_value(mod(j + k, p), i);
                out[i] = acc;
            }
        }
        return;
    }
    int q = 1 << log2_floor(p), extra = p - q;
    for (size_t i = 0; i < n; i++) {
        float v[MAX_P] = {0};
        for (int k = 0; k < q; k++)
            v[k] = k < extra ? comm_test_value(2 * k, i) + comm_test_value(2 * k + 1, i)
                             : comm_test_value(k + extra, i);
        for (int w = q; w > 1; w /= 2)
            for (int k = 0; k < w / 2; k++)
                v[k] = v[2 * k] + v[2 * k + 1];
        out[i] = v[0];
    }
}

// ---------------------------------------------------------------------------------------------
// the checks, for one world size and length

static void check_all_reduce(int p, size_t n) {
    float *b[MAX_P];
    for (int r = 0; r < p; r++) {
        b[r] = malloc(n * sizeof(float) + 1);
        for (size_t i = 0; i < n; i++)
            b[r][i] = comm_test_value(r, i);
    }
    run(COMM_ALL_REDUCE_SUM, COMM_F32, 4, p, n, 0, (unsigned char **)b);
    float *want = malloc(n * sizeof(float) + 1);
    order_sums(p, n, want);
    size_t bad = 0;
    for (int r = 0; r < p; r++) {
        uint64_t ws, wr;
        want_all_reduce(p, r, n, 4, &ws, &wr);
        EXPECT(g_ranks[r].sent == ws && g_ranks[r].recv == wr,
               "all-reduce p=%d n=%zu rank %d: sent %llu received %llu, want %llu %llu", p, n, r,
               (unsigned long long)g_ranks[r].sent, (unsigned long long)g_ranks[r].recv,
               (unsigned long long)ws, (unsigned long long)wr);
        bad += memcmp(b[r], want, n * sizeof(float)) != 0;
    }
    EXPECT(bad == 0, "all-reduce p=%d n=%zu: %zu ranks' sums differ from the documented order", p,
           n, bad);
    for (int r = 0; r < p; r++)
        free(b[r]);
    free(want);
}

static void check_max(int p, size_t n) {
    int32_t *b[MAX_P];
    for (int r = 0; r < p; r++) {
        b[r] = malloc(n * sizeof(int32_t) + 1);
        for (size_t i = 0; i < n; i++)
            b[r][i] = (int32_t)((i * 7919u + (size_t)r * 104729u) % 2001u) - 1000;
    }
    run(COMM_ALL_REDUCE_MAX, COMM_I32, 4, p, n, 0, (unsigned char **)b);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t want = INT32_MIN;
        for (int k = 0; k < p; k++) {
            int32_t v = (int32_t)((i * 7919u + (size_t)k * 104729u) % 2001u) - 1000;
            want = v > want ? v : want;
        }
        for (int r = 0; r < p; r++)
            bad += b[r][i] != want;
    }
    EXPECT(bad == 0, "max p=%d n=%zu: %zu wrong elements", p, n, bad);
    for (int r = 0; r < p; r++)
        free(b[r]);
}

static void check_reduce_scatter_all_gather(int p, size_t n) {
    float *b[MAX_P];
    for (int r = 0; r < p; r++) {
        b[r] = malloc(n * sizeof(float) + 1);
        for (size_t i = 0; i < n; i++)
            b[r][i] = (float)((r + 1) * (int)(i % 1000));
    }
    run(COMM_REDUCE_SCATTER_SUM, COMM_F32, 4, p, n, 0, (unsigned char **)b);
    size_t bad = 0;
    float tri = (float)(p * (p + 1) / 2);
    for (int r = 0; r < p; r++) {
        size_t first, count;
        comm_chunk(n, p, r, &first, &count);
        uint64_t ws = p > 1 ? (n - chunk_count(n, p, r)) * 4 : 0;
        uint64_t wr = p > 1 ? (n - chunk_count(n, p, r - 1)) * 4 : 0;
        EXPECT(g_ranks[r].sent == ws && g_ranks[r].recv == wr,
               "reduce-scatter p=%d n=%zu rank %d: sent %llu received %llu, want %llu %llu", p, n,
               r, (unsigned long long)g_ranks[r].sent, (unsigned long long)g_ranks[r].recv,
               (unsigned long long)ws, (unsigned long long)wr);
        for (size_t i = first; i < first + count; i++)
            bad += b[r][i] != tri * (float)(i % 1000);
        // then all-gather the chunks back: every rank ends with the whole sum
        for (size_t i = 0; i < n; i++)
            if (i < first || i >= first + count) b[r][i] = NAN;
    }
    EXPECT(bad == 0, "reduce-scatter p=%d n=%zu: %zu wrong elements", p, n, bad);
    run(COMM_ALL_GATHER, COMM_F32, 4, p, n, 0, (unsigned char **)b);
    bad = 0;
    for (int r = 0; r < p; r++) {
        uint64_t ws = p > 1 ? (n - chunk_count(n, p, r + 1)) * 4 : 0;
        uint64_t wr = p > 1 ? (n - chunk_count(n, p, r)) * 4 : 0;
        EXPECT(g_ranks[r].sent == ws && g_ranks[r].recv == wr,
               "all-gather p=%d n=%zu rank %d: sent %llu received %llu, want %llu %llu", p, n, r,
               (unsigned long long)g_ranks[r].sent, (unsigned long long)g_ranks[r].recv,
               (unsigned long long)ws, (unsigned long long)wr);
        for (size_t i = 0; i < n; i++)
            bad += b[r][i] != tri * (float)(i % 1000);
    }
    EXPECT(bad == 0, "all-gather p=%d n=%zu: %zu wrong elements", p, n, bad);
    for (int r = 0; r < p; r++)
        free(b[r]);
}

static void check_broadcast(int p, size_t bytes) {
    for (int root = 0; root < p; root++) {
        unsigned char *b[MAX_P];
        for (int r = 0; r < p; r++) {
            b[r] = malloc(bytes + 1);
            for (size_t j = 0; j < bytes; j++)
                b[r][j] = r == root ? (unsigned char)(j * 31 + 7) : 0xEE;
        }
        run(COMM_BROADCAST, COMM_I32, 1, p, bytes, root, b);
        size_t bad = 0;
        uint64_t total_sent = 0;
        for (int r = 0; r < p; r++) {
            for (size_t j = 0; j < bytes; j++)
                bad += b[r][j] != (unsigned char)(j * 31 + 7);
            uint64_t wr = r == root || p == 1 ? 0 : bytes;
            EXPECT(g_ranks[r].recv == wr, "broadcast p=%d %zu bytes root %d: rank %d received %llu",
                   p, bytes, root, r, (unsigned long long)g_ranks[r].recv);
            total_sent += g_ranks[r].sent;
            free(b[r]);
        }
        EXPECT(bad == 0, "broadcast p=%d %zu bytes root %d: %zu wrong bytes", p, bytes, root, bad);
        EXPECT(total_sent == (uint64_t)(p - 1) * (bytes > 0 ? bytes : 0),
               "broadcast p=%d %zu bytes root %d: %llu bytes sent in all", p, bytes, root,
               (unsigned long long)total_sent);
    }
}

static void check_barrier(int p) {
    unsigned char *b[MAX_P] = {0};
    run(COMM_BARRIER, COMM_F32, 4, p, 0, 0, b);
    int rounds = 0;
    while ((1 << rounds) < p)
        rounds++;
    for (int r = 0; r < p; r++)
        EXPECT(g_ranks[r].s.steps == rounds && g_ranks[r].sent == 0,
               "barrier p=%d: rank %d takes %d rounds, sends %llu bytes", p, r, g_ranks[r].s.steps,
               (unsigned long long)g_ranks[r].sent);
}

// the combine collectives: a*3 + b over 5-byte elements (little-endian integers mod 2^40),
// neither commutative nor associative, so the result shows the order of every combine
static uint64_t elem5(const unsigned char *p) {
    uint64_t v = 0;
    for (int b = 0; b < 5; b++)
        v |= (uint64_t)p[b] << (8 * b);
    return v;
}
static void put5(unsigned char *p, uint64_t v) {
    for (int b = 0; b < 5; b++)
        p[b] = (unsigned char)(v >> (8 * b));
}
static uint64_t comb5(uint64_t a, uint64_t b) { return (a * 3 + b) & ((1ull << 40) - 1); }
static void combine5(void *dst, const void *src, size_t n, int src_first, void *ctx) {
    (void)ctx;
    unsigned char *d = dst;
    const unsigned char *s = src;
    for (size_t i = 0; i < n; i++) {
        uint64_t a = elem5(d + 5 * i), b = elem5(s + 5 * i);
        put5(d + 5 * i, src_first ? comb5(b, a) : comb5(a, b));
    }
}
static uint64_t value5(int r, size_t i) {
    return rng_mix64(((uint64_t)r << 32) ^ i) & ((1ull << 40) - 1);
}

static void check_combine(int p, size_t n, int scatter) {
    comm_op op = scatter ? COMM_REDUCE_SCATTER_COMBINE : COMM_ALL_REDUCE_COMBINE;
    unsigned char *b[MAX_P];
    for (int r = 0; r < p; r++) {
        b[r] = malloc(n * 5 + 1);
        for (size_t i = 0; i < n; i++)
            put5(b[r] + 5 * i, value5(r, i));
    }
    comm_combine cb = {combine5, 5, NULL};
    g_combine = &cb;
    run(op, COMM_F32, 5, p, n, 0, b);
    g_combine = NULL;
    int ring = scatter || (n * 5 >= COMM_SMALL_BYTES && n >= (size_t)p);
    int q = 1 << log2_floor(p), extra = p - q;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t want;
        int owner = 0; // the rank whose chunk holds i
        for (int j = 0; j < p; j++) {
            size_t first, count;
            comm_chunk(n, p, j, &first, &count);
            if (i >= first && i < first + count) owner = j;
        }
        if (ring) { // chunk j: from rank j+1 up the ring, ending at rank j
            want = value5(mod(owner + 1, p), i);
            for (int k = 2; k <= p; k++)
                want = comb5(want, value5(mod(owner + k, p), i));
        } else {
            uint64_t v[MAX_P];
            for (int k = 0; k < q; k++)
                v[k] = k < extra ? comb5(value5(2 * k, i), value5(2 * k + 1, i))
                                 : value5(k + extra, i);
            for (int w = q; w > 1; w /= 2)
                for (int k = 0; k < w / 2; k++)
                    v[k] = comb5(v[2 * k], v[2 * k + 1]);
            want = v[0];
        }
        for (int r = 0; r < p; r++)
            if (!scatter || r == owner) bad += elem5(b[r] + 5 * i) != want;
    }
    for (int r = 0; r < p; r++) {
        uint64_t ws, wr;
        if (scatter) {
            ws = p > 1 ? (n - chunk_count(n, p, r)) * 5 : 0;
            wr = p > 1 ? (n - chunk_count(n, p, r - 1)) * 5 : 0;
        } else {
            want_all_reduce(p, r, n, 5, &ws, &wr);
        }
        EXPECT(g_ranks[r].sent == ws && g_ranks[r].recv == wr,
               "%s p=%d n=%zu rank %d: sent %llu received %llu, want %llu %llu", comm_op_name(op),
               p, n, r, (unsigned long long)g_ranks[r].sent, (unsigned long long)g_ranks[r].recv,
               (unsigned long long)ws, (unsigned long long)wr);
        free(b[r]);
    }
    EXPECT(bad == 0, "%s p=%d n=%zu: %zu elements differ from the documented order",
           comm_op_name(op), p, n, bad);
}

// all-gather of variable blocks: the lengths (an all-gather of one 8-byte element per rank),
// then the blocks' ring, as comm_mpi.c runs them
static void check_all_gather_v(int p, const size_t *len) {
    uint64_t wire[MAX_P][MAX_P], l64[MAX_P], total = 0, sent[MAX_P], recv[MAX_P];
    unsigned char *b[MAX_P];
    for (int r = 0; r < p; r++) {
        memset(wire[r], 0, sizeof wire[r]);
        wire[r][r] = len[r];
        b[r] = (unsigned char *)wire[r];
        total += len[r];
    }
    run(COMM_ALL_GATHER, COMM_F32, 8, p, (size_t)p, 0, b);
    for (int r = 0; r < p; r++) {
        sent[r] = g_ranks[r].sent;
        recv[r] = g_ranks[r].recv;
        for (int q = 0; q < p; q++)
            EXPECT(wire[r][q] == len[q],
                   "all-gather-v p=%d: rank %d got length %llu for rank %d, "
                   "want %zu",
                   p, r, (unsigned long long)wire[r][q], q, len[q]);
    }
    for (int q = 0, at = 0; q < p; at += (int)len[q], q++) {
        l64[q] = len[q];
        g_blk_off[q] = (uint64_t)at;
    }
    for (int r = 0; r < p; r++) { // each rank's own block in place, the rest unknown
        b[r] = malloc(total + 1);
        memset(b[r], 0xEE, total + 1);
        for (size_t j = 0; j < len[r]; j++)
            b[r][g_blk_off[r] + j] = (unsigned char)(j * 29 + r);
    }
    g_blk_len = l64;
    run(COMM_ALL_GATHER_V, COMM_F32, 1, p, 0, 0, b);
    g_blk_len = NULL;
    size_t bad = 0;
    for (int r = 0; r < p; r++) {
        for (int q = 0; q < p; q++)
            for (size_t j = 0; j < len[q]; j++)
                bad += b[r][g_blk_off[q] + j] != (unsigned char)(j * 29 + q);
        uint64_t ws = p > 1 ? (uint64_t)(p - 1) * 8 + total - len[mod(r + 1, p)] : 0;
        uint64_t wr = p > 1 ? (uint64_t)(p - 1) * 8 + total - len[r] : 0;
        sent[r] += g_ranks[r].sent;
        recv[r] += g_ranks[r].recv;
        EXPECT(sent[r] == ws && recv[r] == wr,
               "all-gather-v p=%d rank %d: sent %llu received %llu, want %llu %llu", p, r,
               (unsigned long long)sent[r], (unsigned long long)recv[r], (unsigned long long)ws,
               (unsigned long long)wr);
        free(b[r]);
    }
    EXPECT(bad == 0, "all-gather-v p=%d: %zu wrong bytes", p, bad);
}

// every check for 1 to MAX_P ranks under the ring cut g_cut
static void check_all(void) {
    size_t per_seg = g_cut.segment / sizeof(float) ? g_cut.segment / sizeof(float) : 1;
    for (int p = 1; p <= MAX_P; p++) {
        // around the world size, both sides of the 64 KiB switch, and several ring segments:
        // chunks of window - 1/2 segments (the whole window in flight), and of 3 windows (the
        // window slides along the chunk)
        size_t segmented = (size_t)p * per_seg * (size_t)(2 * g_cut.window - 1) / 2 + 7;
        size_t windows = (size_t)p * per_seg * (size_t)(3 * g_cut.window) + 5;
        if (windows > ((size_t)1 << 21)) windows = 0; // the local cut's would take long
        const size_t lengths[] = {0,     1,     (size_t)p - 1, (size_t)p + 1,
                                  16381, 16411, segmented,     windows};
        for (size_t k = 0; k < sizeof lengths / sizeof lengths[0]; k++) {
            size_t n = lengths[k];
            check_all_reduce(p, n);
            check_max(p, n);
            check_reduce_scatter_all_gather(p, n);
            check_broadcast(p, n);
        }
        check_broadcast(p, 65537);
        check_broadcast(p, 300007);
        check_barrier(p);
        // the combine, both sides of the threshold (5-byte elements) and several segments
        const size_t combine_lengths[] = {0, 1, (size_t)p + 1, 13106, 13108, segmented / 3};
        for (size_t k = 0; k < sizeof combine_lengths / sizeof combine_lengths[0]; k++) {
            check_combine(p, combine_lengths[k], 0);
            check_combine(p, combine_lengths[k], 1);
        }
        // blocks: all empty; short, some empty; one rank's only; several segments, one empty
        size_t len[4][MAX_P];
        for (int r = 0; r < p; r++) {
            len[0][r] = 0;
            len[1][r] = (size_t)((r * 13 + 3) % 5) * 3;
            len[2][r] = r == p / 2 ? 1500001 : 0;
            len[3][r] =
                r == p - 1 ? 0 : g_cut.segment * (size_t)g_cut.window + 3 + (size_t)r * 1000;
        }
        for (int k = 0; k < 4; k++)
            check_all_gather_v(p, len[k]);
    }
}

int main(void) {
    g_chan = calloc((size_t)MAX_P * MAX_P, sizeof(channel_queue));
    const comm_ring_cut cuts[] = {
        COMM_CUT_LOCAL, COMM_CUT_NETWORK, {4096, COMM_MAX_WINDOW}, {1000, 3}, {6, 5}};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        g_cut = cuts[k];
        check_all();
    }
    if (g_failures) return 1;
    printf("test_comm_sched: all schedules checked for 1 to %d ranks under %zu ring cuts\n", MAX_P,
           sizeof cuts / sizeof cuts[0]);
    return 0;
}
