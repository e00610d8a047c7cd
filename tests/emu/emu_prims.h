// emu_prims.h — the primitives of kernels/cuda/mma.cuh, emulated on CPU threads, so the
// tensor-core kernels (kernels/cuda/flash_attention.cuh) and the gradient codecs' kernels
// (kernels/cuda/codec_kernels.cuh) run and are checked on a machine without a GPU.
//
// Every GPU thread of a block is a host thread (from a pool kept across blocks and launches);
// blocks run one after another. Kernels are started through CUDA_LAUNCH, defined here as on the
// GPU (common.cuh), so the launch code that sets their grids runs too. Warp-collective operations
// (ldmatrix, mma.sync, shuffles of float and unsigned) are a rendezvous of the warp's 32 threads:
// each posts its operands, a barrier, each computes its own result from the others' operands
// following the fragment layouts of the PTX ISA (restated in mma.cuh), a second barrier.
// __syncthreads is a barrier of the block; atomicAdd a true atomic. cp.async copies are deferred
// until the thread waits for their group and their destination is garbage from the issue on, so a
// tile read before its cp.async.wait_group (or before the barrier that publishes other threads'
// copies), or refilled while another warp still reads it, holds wrong data and the result is
// wrong, as it could be on the GPU.
//
// Checked on the way, with a message and abort(): ldmatrix row addresses and cp.async
// destinations inside the block's shared memory and 16-byte aligned; cp.async sources 16-byte
// aligned; copies still in flight when a thread finishes; barriers that not all threads reach
// (they hang: the test has a timeout). Counted: the shared-memory bank conflicts of ldmatrix
// (emu::ldsm_conflicts). What it cannot show: timing, register pressure, and layouts that
// differ from the documented ones.
#ifndef TESSERA_EMU_PRIMS_H
#define TESSERA_EMU_PRIMS_H

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct bf16 {
    uint16_t bits;
};

inline float bf16_f32(bf16 x) {
    const uint32_t u = (uint32_t)x.bits << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
inline bf16 f32_bf16(float f) { // round to nearest even, NaN kept a NaN
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{(uint16_t)((u >> 16) | 0x40)};
    u += 0x7fffu + ((u >> 16) & 1);
    return bf16{(uint16_t)(u >> 16)};
}
struct float2 {
    float x, y;
};
inline uint32_t pack_bf16x2(float lo, float hi) {
    return (uint32_t)f32_bf16(lo).bits | ((uint32_t)f32_bf16(hi).bits << 16);
}
inline float2 unpack_bf16x2(uint32_t v) {
    return float2{bf16_f32(bf16{(uint16_t)(v & 0xffff)}), bf16_f32(bf16{(uint16_t)(v >> 16)})};
}

namespace emu {

[[noreturn]] inline void fail(const char *what, const void *p) {
    fprintf(stderr, "emu: %s (address %p)\n", what, p);
    abort();
}

struct copy {
    void *dst;
    const void *src;
    bool valid;
    int bytes;
};

struct block {
    int nthreads = 0, bx = 0, by = 0, gridx = 0;
    char *smem = nullptr;
    size_t smem_bytes = 0;
    std::unique_ptr<std::barrier<>> all;
    std::vector<std::unique_ptr<std::barrier<>>> warp;
    std::vector<const void *> ptr; // per thread: posted address
    std::vector<uint32_t> u;       // per thread: 6 posted registers
    std::vector<float> f;          // per thread: one posted float
};

// ldmatrix phases (one 8x8 matrix: 8 row addresses of 16 bytes) and the extra shared-memory
// wavefronts they cost: a phase is conflict-free when its 8 rows fall in 8 different groups of
// 4 banks ((offset / 16) mod 8), as the padded tiles are meant to
inline std::atomic<long> ldsm_phases{0}, ldsm_conflicts{0};

inline thread_local block *blk = nullptr;
inline thread_local int tid = 0;
inline thread_local std::vector<std::vector<copy>> committed; // oldest first
inline thread_local std::vector<copy> open_group;

inline void check_smem(const void *p, size_t bytes, const char *what) {
    const char *c = (const char *)p;
    if (c < blk->smem || c + bytes > blk->smem + blk->smem_bytes) fail(what, p);
    if (((uintptr_t)p & 15) != 0) fail("shared-memory address not 16-byte aligned", p);
}

inline void warp_sync() { blk->warp[tid / 32]->arrive_and_wait(); }
inline const void *posted_ptr(int lane) { return blk->ptr[(tid / 32) * 32 + lane]; }

// lane 0 of the warp counts the bank conflicts of the 4 phases just posted
inline void count_ldsm_conflicts() {
    if (tid % 32 != 0) return;
    for (int i = 0; i < 4; i++) {
        int hits[8] = {0}, worst = 0;
        for (int r = 0; r < 8; r++) {
            const long off = (const char *)posted_ptr(8 * i + r) - blk->smem;
            worst = std::max(worst, ++hits[(off / 16) % 8]);
        }
        ldsm_phases++;
        ldsm_conflicts += worst - 1;
    }
}
inline const uint32_t *posted_u(int lane) { return &blk->u[6 * ((tid / 32) * 32 + lane)]; }

// The host threads that play a block's GPU threads, made once and kept for every block of every
// launch (making 256 threads per block would cost more than most kernels' work). run(n, job)
// has threads 0 .. n-1 each call job(index) once, all at the same time (they meet in the
// kernels' barriers), and returns when every one has returned.
class pool {
  public:
    void run(int n, const std::function<void(int)> &job) {
        std::unique_lock<std::mutex> lock(m);
        while ((int)threads.size() < n) {
            const int index = (int)threads.size();
            threads.emplace_back([this, index] { work(index); });
        }
        this->job = &job;
        active = remaining = n;
        generation++;
        start.notify_all();
        done.wait(lock, [this] { return remaining == 0; });
        this->job = nullptr;
    }
    ~pool() {
        {
            std::lock_guard<std::mutex> lock(m);
            stop = true;
        }
        start.notify_all();
        for (auto &t : threads)
            t.join();
    }

  private:
    void work(int index) {
        uint64_t seen = 0;
        std::unique_lock<std::mutex> lock(m);
        for (;;) {
            start.wait(lock, [&] { return stop || generation != seen; });
            if (stop) return;
            seen = generation;
            if (index >= active) continue;
            const std::function<void(int)> *f = job;
            lock.unlock();
            (*f)(index);
            lock.lock();
            if (--remaining == 0) done.notify_one();
        }
    }
    std::mutex m;
    std::condition_variable start, done;
    std::vector<std::thread> threads;
    const std::function<void(int)> *job = nullptr;
    int active = 0, remaining = 0;
    uint64_t generation = 0;
    bool stop = false;
};
inline pool workers;

// Run kernel() as a grid (gridx, gridy) of blocks of nthreads threads with smem_bytes of dynamic
// shared memory (filled with a garbage pattern, as on the GPU nothing is zeroed).
// Blocks run one at a time, in a shuffled (seeded) order: a kernel must not depend on the order
// in which the GPU schedules its blocks. The launch limits of the GPUs the kernels are built for
// are checked: gridDim.y <= 65535, at most 1024 threads, and at most 163 KB of dynamic shared
// memory per block (an A100's opt-in limit; an H100/H200 allows 227 KB).
inline void launch(int gridx, int gridy, int nthreads, size_t smem_bytes,
                   const std::function<void()> &kernel) {
    if (gridx < 1 || gridy < 1 || gridy > 65535) fail("grid outside the launch limits", nullptr);
    if (nthreads < 32 || nthreads > 1024 || nthreads % 32) fail("bad block size", nullptr);
    if (smem_bytes > 163 * 1024) fail("more shared memory than an A100 block may have", nullptr);
    std::vector<char> smem(smem_bytes + 128);
    char *base = (char *)(((uintptr_t)smem.data() + 127) & ~(uintptr_t)127);
    std::vector<std::pair<int, int>> order;
    for (int by = 0; by < gridy; by++)
        for (int bx = 0; bx < gridx; bx++)
            order.emplace_back(bx, by);
    uint64_t seed = 0x2545f4914f6cdd1dull ^ order.size();
    for (size_t i = order.size(); i > 1; i--) { // Fisher-Yates with xorshift
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        std::swap(order[i - 1], order[seed % i]);
    }
    for (auto [bx, by] : order) {
        memset(base, 0x7f, smem_bytes); // bf16 0x7f7f: a large number, not zero
        block b;
        b.nthreads = nthreads;
        b.bx = bx;
        b.by = by;
        b.gridx = gridx;
        b.smem = base;
        b.smem_bytes = smem_bytes;
        b.all = std::make_unique<std::barrier<>>(nthreads);
        for (int w = 0; w < nthreads / 32; w++)
            b.warp.push_back(std::make_unique<std::barrier<>>(32));
        b.ptr.resize(nthreads);
        b.u.resize(6 * nthreads);
        b.f.resize(nthreads);
        workers.run(nthreads, [&b, &kernel](int t) {
            blk = &b;
            tid = t;
            committed.clear();
            open_group.clear();
            kernel();
            if (!committed.empty() || !open_group.empty())
                fail("thread finished with cp.async copies never waited for", nullptr);
            blk = nullptr;
        });
    }
}

} // namespace emu

// ---- launches ---------------------------------------------------------------------------------
// CUDA_LAUNCH as common.cuh defines it on the GPU (grid, block, shared bytes, stream, kernel,
// arguments), here running the kernel through emu::launch: the launchers of the kernel headers
// are the same code in both.
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
typedef struct emu_stream *cudaStream_t; // launches are synchronous here: any value will do

namespace emu {
template <typename... Params, typename... Args>
void launch_kernel(dim3 grid, dim3 block, size_t smem, void (*kernel)(Params...), Args... args) {
    if (grid.z != 1 || block.y != 1 || block.z != 1)
        fail("emulated launches are 2-D grids of 1-D blocks", nullptr);
    launch((int)grid.x, (int)grid.y, (int)block.x, smem, [&] { kernel(args...); });
}
} // namespace emu

#define CUDA_LAUNCH(grid, block, smem, stream, ...)                                                \
    ((void)(stream), emu::launch_kernel(grid, block, smem, __VA_ARGS__))

inline int mma_tid(void) { return emu::tid; }
inline int mma_bx(void) { return emu::blk->bx; }
inline int mma_by(void) { return emu::blk->by; }
inline int mma_gridx(void) { return emu::blk->gridx; }
inline void mma_sync_block(void) { emu::blk->all->arrive_and_wait(); }
inline char *mma_smem(void) { return emu::blk->smem; }

// __shfl_xor_sync over the full warp (common.cuh's shfl_xor, which warp.cuh reduces with)
inline float shfl_xor(float v, int mask) {
    emu::blk->f[emu::tid] = v;
    emu::warp_sync();
    const float r = emu::blk->f[(emu::tid / 32) * 32 + ((emu::tid % 32) ^ mask)];
    emu::warp_sync();
    return r;
}

inline unsigned shfl_xor(unsigned v, int mask) {
    emu::blk->u[6 * emu::tid] = v;
    emu::warp_sync();
    const unsigned r = emu::blk->u[6 * ((emu::tid / 32) * 32 + ((emu::tid % 32) ^ mask))];
    emu::warp_sync();
    return r;
}

// atomicAdd on a 32-bit counter in shared or global memory (the codec kernels' histograms): the
// threads of a block run at the same time here, so it is a true atomic read-modify-write
// (std::atomic_ref, sequentially consistent); blocks run one after another, so the additions of
// different blocks are ordered anyway. Returns the old value, as on the GPU. Integer additions
// commute: the counts do not depend on the order the threads come in, here or on the GPU.
inline unsigned atomicAdd(unsigned *p, unsigned v) {
    if (((uintptr_t)p & 3) != 0) emu::fail("atomicAdd on an address not 4-byte aligned", p);
    return std::atomic_ref<unsigned>(*p).fetch_add(v);
}

// ldmatrix .x4: matrix i's rows come from lanes 8i..8i+7 (row k of matrix i at lane 8i + k);
// without .trans lane l gets row l/4, elements 2(l%4) and 2(l%4)+1; with .trans rows 2(l%4) and
// 2(l%4)+1 of column l/4
inline void ldsm_x4_any(uint32_t r[4], const bf16 *row, bool trans) {
    emu::check_smem(row, 16, "ldmatrix row address outside shared memory");
    emu::blk->ptr[emu::tid] = row;
    emu::warp_sync();
    emu::count_ldsm_conflicts();
    const int lane = emu::tid % 32, g = lane / 4, q = lane % 4;
    auto at = [](int matrix, int k, int col) {
        return (uint32_t)((const uint16_t *)emu::posted_ptr(8 * matrix + k))[col];
    };
    for (int i = 0; i < 4; i++)
        r[i] = trans ? at(i, 2 * q, g) | at(i, 2 * q + 1, g) << 16
                     : at(i, g, 2 * q) | at(i, g, 2 * q + 1) << 16;
    emu::warp_sync();
}
inline void ldsm_x4(uint32_t r[4], const bf16 *row) { ldsm_x4_any(r, row, false); }
inline void ldsm_x4_trans(uint32_t r[4], const bf16 *row) { ldsm_x4_any(r, row, true); }

// mma.m16n8k16.row.col.f32.bf16.bf16.f32: c += A B with the fragment layouts of mma.cuh
inline void mma_bf16_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    uint32_t *mine = &emu::blk->u[6 * emu::tid];
    for (int i = 0; i < 4; i++)
        mine[i] = a[i];
    mine[4] = b0;
    mine[5] = b1;
    emu::warp_sync();
    const int lane = emu::tid % 32, g = lane / 4, q = lane % 4;
    auto elem = [](uint32_t reg, int half) {
        return bf16_f32(bf16{(uint16_t)(half ? reg >> 16 : reg & 0xffff)});
    };
    auto A = [&](int row, int k) { // a_i of lane (row%8)*4 + (k%8)/2
        const uint32_t *src = emu::posted_u((row % 8) * 4 + (k % 8) / 2);
        return elem(src[(row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0)], k & 1);
    };
    auto Bm = [&](int k, int n) { // b_i of lane n*4 + (k%8)/2
        const uint32_t *src = emu::posted_u(n * 4 + (k % 8) / 2);
        return elem(src[4 + (k >= 8 ? 1 : 0)], k & 1);
    };
    for (int e = 0; e < 4; e++) {
        const int row = g + (e >> 1) * 8, col = 2 * q + (e & 1);
        float acc = 0.0f;
        for (int k = 0; k < 16; k++)
            acc += A(row, k) * Bm(k, col);
        c[e] += acc;
    }
    emu::warp_sync();
}

// The destination holds garbage from the issue until the wait (on the GPU the copy lands at
// some point in between): a stage overwritten while another warp still reads it, for want of a
// barrier, gives wrong results here too.
inline void cp_async16(void *dst, const void *src, bool valid) {
    emu::check_smem(dst, 16, "cp.async destination outside shared memory");
    if (((uintptr_t)src & 15) != 0) emu::fail("cp.async source not 16-byte aligned", src);
    memset(dst, 0x7f, 16);
    emu::open_group.push_back(emu::copy{dst, src, valid, 16});
}
inline void cp_async4(void *dst, const void *src, bool valid) {
    const char *c = (const char *)dst;
    if (c < emu::blk->smem || c + 4 > emu::blk->smem + emu::blk->smem_bytes ||
        ((uintptr_t)dst & 3) != 0)
        emu::fail("cp.async (4 bytes) destination outside shared memory or not aligned", dst);
    if (((uintptr_t)src & 3) != 0) emu::fail("cp.async source not 4-byte aligned", src);
    memset(dst, 0x7f, 4);
    emu::open_group.push_back(emu::copy{dst, src, valid, 4});
}
inline void cp_async_commit(void) {
    emu::committed.push_back(std::move(emu::open_group));
    emu::open_group.clear();
}
template <int N> inline void cp_async_wait(void) {
    while (emu::committed.size() > (size_t)N) {
        for (const emu::copy &c : emu::committed.front()) {
            if (c.valid)
                memcpy(c.dst, c.src, c.bytes);
            else
                memset(c.dst, 0, c.bytes);
        }
        emu::committed.erase(emu::committed.begin());
    }
}

#endif
