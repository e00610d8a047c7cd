// test_flash_emu.cc — the flash-attention kernels (kernels/cuda/flash_attention.cuh), compiled
// for the host against the emulated tensor-core primitives (emu_prims.h) and launched by their
// own launch code (flash_launch_forward/backward), checked against a direct double-precision
// reference: forward output and log-sum-exp, dsum, and dQ, dK, dV, the accumulation into an
// existing gradient, bit-identical repeated backward passes, and no bank conflicts in any
// ldmatrix.
//
//   test_flash_emu [T:HS:B:NH ...]     default: the shapes below
//
// Inputs are bf16 (uniform in [-1.5, 1.5] for q, k, v; [-1, 1] for dout). Tolerances are on
// max |x - ref| / max |ref| per tensor and stated for bf16: the kernels round P and dS to bf16
// (relative 2^-9) before their products and write bf16 outputs, so errors of a few 1e-3 are
// expected; 1e-2 (forward) and 2e-2 (gradients) leave room for that and catch any indexing or
// masking error, which shows up as O(1).
#include "tests/emu/emu_prims.h"

#include "kernels/cuda/flash_attention.cuh"

#include <algorithm>
#include <chrono>
#include <string>

namespace {

uint64_t rng_state = 0x9e3779b97f4a7c15ull;
double uniform(double lo, double hi) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return lo + (hi - lo) * (double)(rng_state >> 11) / 9007199254740992.0;
}

std::vector<bf16> rand_bf16(size_t n, double lo, double hi) {
    std::vector<bf16> v(n);
    for (auto &x : v)
        x = f32_bf16((float)uniform(lo, hi));
    return v;
}

double f(bf16 x) { return (double)bf16_f32(x); }

struct reference {
    std::vector<double> out, lse, dsum, dqkv; // lse natural log; dqkv the gradient alone
};

// direct causal attention of every (b,h), forward and backward, in double
reference attention_ref(const std::vector<bf16> &qkv, const std::vector<bf16> &dout, int B, int T,
                        int NH, int HS) {
    const int C = NH * HS;
    const size_t rs = 3 * (size_t)C;
    const double scale = 1.0 / std::sqrt((double)HS);
    reference r;
    r.out.assign((size_t)B * T * C, 0.0);
    r.lse.assign((size_t)B * NH * T, 0.0);
    r.dsum.assign((size_t)B * NH * T, 0.0);
    r.dqkv.assign((size_t)B * T * rs, 0.0);
    std::vector<double> P((size_t)T * T), dS((size_t)T * T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            auto q = [&](int t, int d) { return f(qkv[((size_t)b * T + t) * rs + h * HS + d]); };
            auto k = [&](int t, int d) {
                return f(qkv[((size_t)b * T + t) * rs + C + h * HS + d]);
            };
            auto v = [&](int t, int d) {
                return f(qkv[((size_t)b * T + t) * rs + 2 * C + h * HS + d]);
            };
            auto dO = [&](int t, int d) { return f(dout[((size_t)b * T + t) * C + h * HS + d]); };
            for (int t = 0; t < T; t++) {
                double mx = -INFINITY;
                for (int u = 0; u <= t; u++) {
                    double x = 0;
                    for (int d = 0; d < HS; d++)
                        x += q(t, d) * k(u, d);
                    P[(size_t)t * T + u] = x * scale;
                    mx = std::max(mx, x * scale);
                }
                double sum = 0;
                for (int u = 0; u <= t; u++)
                    sum += std::exp(P[(size_t)t * T + u] - mx);
                const double lse = mx + std::log(sum);
                r.lse[((size_t)b * NH + h) * T + t] = lse;
                for (int u = 0; u <= t; u++)
                    P[(size_t)t * T + u] = std::exp(P[(size_t)t * T + u] - lse);
                double D = 0;
                for (int d = 0; d < HS; d++) {
                    double o = 0;
                    for (int u = 0; u <= t; u++)
                        o += P[(size_t)t * T + u] * v(u, d);
                    r.out[((size_t)b * T + t) * C + h * HS + d] = o;
                    D += o * dO(t, d);
                }
                r.dsum[((size_t)b * NH + h) * T + t] = D;
                for (int u = 0; u <= t; u++) {
                    double dp = 0;
                    for (int d = 0; d < HS; d++)
                        dp += dO(t, d) * v(u, d);
                    dS[(size_t)t * T + u] = P[(size_t)t * T + u] * (dp - D);
                }
            }
            for (int t = 0; t < T; t++)
                for (int u = 0; u <= t; u++) {
                    const double ds = dS[(size_t)t * T + u] * scale, p = P[(size_t)t * T + u];
                    double *gq = &r.dqkv[((size_t)b * T + t) * rs + h * HS];
                    double *gk = &r.dqkv[((size_t)b * T + u) * rs + C + h * HS];
                    double *gv = &r.dqkv[((size_t)b * T + u) * rs + 2 * C + h * HS];
                    for (int d = 0; d < HS; d++) {
                        gq[d] += ds * k(u, d);
                        gk[d] += ds * q(t, d);
                        gv[d] += p * dO(t, d);
                    }
                }
        }
    return r;
}

int failures = 0;

// max |x - ref| / max |ref| over the elements i where pick(i) holds
template <typename X, typename Pick>
void check(const char *what, const std::string &shape, size_t n, X x, const double *ref, Pick pick,
           double tol) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!pick(i)) continue;
        const double d = std::fabs(x(i) - ref[i]);
        if (!(d <= num)) num = d; // NaN sticks
        den = std::max(den, std::fabs(ref[i]));
    }
    const double err = den > 0 ? num / den : num;
    const bool ok = err <= tol;
    printf("%-22s %-8s err %.2e (tol %.0e) %s\n", shape.c_str(), what, err, tol,
           ok ? "ok" : "FAIL");
    if (!ok) failures++;
}

template <int HS> void run_case(int T, int B, int NH) {
    const int C = NH * HS;
    const size_t rs = 3 * (size_t)C, nqkv = (size_t)B * T * rs, nout = (size_t)B * T * C,
                 nrow = (size_t)B * NH * T;
    char buf[64];
    snprintf(buf, sizeof buf, "T=%d HS=%d B=%d NH=%d", T, HS, B, NH);
    const std::string shape = buf;
    auto t0 = std::chrono::steady_clock::now();

    std::vector<bf16> qkv = rand_bf16(nqkv, -1.5, 1.5), dout = rand_bf16(nout, -1, 1);
    const reference ref = attention_ref(qkv, dout, B, T, NH, HS);

    std::vector<bf16> out(nout, f32_bf16(NAN));
    std::vector<float> lse(nrow, NAN), dsum(nrow, NAN);
    std::vector<bf16> dqkv(nqkv, f32_bf16(0.0f));
    flash_params p = {};
    p.qkv = qkv.data();
    p.out = out.data();
    p.lse = lse.data();
    p.dout = dout.data();
    p.o = out.data();
    p.dsum = dsum.data();
    p.dqkv = dqkv.data();
    p.B = B;
    p.T = T;
    p.C = C;
    p.NH = NH;
    p.scale = 1.0f / std::sqrt((float)HS);
    p.scale_log2 = p.scale * 1.4426950408889634f;

    // the kernels' own launch code (flash_attention.cuh), as the GPU build runs it
    flash_launch_forward<HS>(p, nullptr);
    check(
        "out", shape, nout, [&](size_t i) { return f(out[i]); }, ref.out.data(),
        [](size_t) { return true; }, 1e-2);
    std::vector<double> lse2(nrow);
    for (size_t i = 0; i < nrow; i++)
        lse2[i] = ref.lse[i] * 1.4426950408889634;
    // absolute error on lse2 (~log2 T): relative to its scale
    check(
        "lse", shape, nrow, [&](size_t i) { return (double)lse[i]; }, lse2.data(),
        [](size_t) { return true; }, 1e-4);

    // the backward: dsum on few blocks, to walk its grid stride, then dK/dV and dQ
    const unsigned dsum_blocks = (unsigned)std::max<size_t>(1, std::min<size_t>(5, nrow / 4));
    auto backward = [&] { flash_launch_backward<HS>(p, nullptr, dsum_blocks); };
    backward();

    // dsum from the kernel's own (bf16) output: a plain dot product, tight tolerance
    std::vector<double> dsum_ref(nrow);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                double s = 0;
                for (int d = 0; d < HS; d++) {
                    const size_t o = ((size_t)b * T + t) * C + h * HS + d;
                    s += f(out[o]) * f(dout[o]);
                }
                dsum_ref[((size_t)b * NH + h) * T + t] = s;
            }
    check(
        "dsum", shape, nrow, [&](size_t i) { return (double)dsum[i]; }, dsum_ref.data(),
        [](size_t) { return true; }, 1e-5);

    auto part = [&](int which) { return [=](size_t i) { return (int)((i % rs) / C) == which; }; };
    auto grad = [&](size_t i) { return f(dqkv[i]); };
    check("dq", shape, nqkv, grad, ref.dqkv.data(), part(0), 2e-2);
    check("dk", shape, nqkv, grad, ref.dqkv.data(), part(1), 2e-2);
    check("dv", shape, nqkv, grad, ref.dqkv.data(), part(2), 2e-2);

    // a second backward pass accumulates (+=): twice the gradient
    const std::vector<bf16> first = dqkv;
    backward();
    std::vector<double> twice(nqkv);
    for (size_t i = 0; i < nqkv; i++)
        twice[i] = 2 * f(first[i]);
    check(
        "dqkv+=", shape, nqkv, grad, twice.data(), [](size_t) { return true; }, 1e-2);

    // and from zero again: the same bits
    std::fill(dqkv.begin(), dqkv.end(), f32_bf16(0.0f));
    backward();
    const bool same = memcmp(dqkv.data(), first.data(), nqkv * sizeof(bf16)) == 0;
    printf("%-22s %-8s %s\n", shape.c_str(), "repeat", same ? "bit-identical ok" : "DIFFERS FAIL");
    if (!same) failures++;
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    printf("%-22s (%.1f s)\n", shape.c_str(), secs);
    fflush(stdout);
}

bool run_shape(int T, int HS, int B, int NH) {
    if (HS == 64)
        run_case<64>(T, B, NH);
    else if (HS == 128)
        run_case<128>(T, B, NH);
    else
        return false;
    return true;
}

} // namespace

int main(int argc, char **argv) {
    if (argc > 1) {
        for (int i = 1; i < argc; i++) {
            int T, HS, B, NH;
            if (sscanf(argv[i], "%d:%d:%d:%d", &T, &HS, &B, &NH) != 4 || T < 1 || B < 1 || NH < 1 ||
                !run_shape(T, HS, B, NH)) {
                fprintf(stderr,
                        "test_flash_emu: bad shape '%s': expected T:HS:B:NH with HS 64 "
                        "or 128\n",
                        argv[i]);
                return 2;
            }
        }
    } else {
        // one token; one tile; a tile and a row; several tiles, not a multiple of 64; HS 128
        run_shape(1, 64, 1, 1);
        run_shape(64, 64, 2, 2);
        run_shape(65, 128, 1, 2);
        run_shape(200, 64, 1, 2);
        run_shape(256, 128, 1, 1);
    }
    // the padded tiles exist so that no ldmatrix phase hits a bank twice
    const long phases = emu::ldsm_phases, conflicts = emu::ldsm_conflicts;
    printf("ldmatrix: %ld phases, %ld extra wavefronts from bank conflicts %s\n", phases, conflicts,
           conflicts == 0 ? "ok" : "FAIL");
    if (conflicts != 0) failures++;
    printf("%s\n", failures ? "FAILED" : "all ok");
    return failures ? 1 : 0;
}
