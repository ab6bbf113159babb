/*
 * int8 layer kernels, bit-exact with TFLite Micro's FULLY_CONNECTED (reference kernels, double
 * rounding). No libm, no stdio, no allocation.
 *
 * Contiguous runs (index-free and dense layers) use the Cortex-M DSP extension when the compiler
 * targets it (__ARM_FEATURE_DSP: M4, M7, M33 with DSP, M55); the portable C below is used elsewhere
 * (M0, M3, hosts). Both compute the same integers, so both are bit-exact.
 */
#include "tc_kernels.h"

#if defined(TC_DTYPE_INT8)

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#include <string.h>

/* One (unaligned) word load of four int8 values: LDR allows unaligned addresses from Cortex-M3 on. */
static inline uint32_t tc_load4(const int8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Sign-extended bytes 1 and 3 (SXTB16 with the rotation GCC's intrinsic lacks). */
static inline uint32_t tc_sxtb16_ror8(uint32_t v)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

/* round(a * b / 2^32), signed, rounding half up */
static inline int32_t tc_smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

/* (lo & 0xFFFF) | (hi << 16): two sign-extended int8 values as an int16 pair */
static inline uint32_t tc_pack16(int32_t lo, int32_t hi)
{
    uint32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(lo), "r"(hi));
    return r;
}

/* acc + sum_m x[m] * w[m]: SXTB16 pairs bytes 0/2 and 1/3 of x and w alike, SMLAD adds two
 * products, so the weights need no reordering. */
static inline int32_t tc_dot_s8(int32_t acc, const int8_t *x, const int8_t *w, int n)
{
    const int8_t *end4 = x + (n & ~3), *end = x + n;
    while (x != end4) {
        const uint32_t xv = tc_load4(x), wv = tc_load4(w);
        x += 4;
        w += 4;
        acc = __smlad(__sxtb16(xv), __sxtb16(wv), acc);
        acc = __smlad(tc_sxtb16_ror8(xv), tc_sxtb16_ror8(wv), acc);
    }
    while (x != end) {
        acc += (int32_t)*x++ * *w++;
    }
    return acc;
}

/* Two rows over the same run: each input word is loaded and sign-extended once. Written in
 * assembly, 16 MACs in 28 instructions: GCC's own loop spills its end pointer on this kernel. */
static inline void tc_dot2_s8(int32_t *acc, const int8_t *x, const int8_t *w0, const int8_t *w1, int n)
{
    int32_t a0 = acc[0], a1 = acc[1];
    int octs = n >> 3;
    if (octs != 0) {
        uint32_t t0, t1, t2, t3;
        __asm__ volatile("1:\n\t"
                         "ldr %[t0], [%[x]], #4\n\t"
                         "ldr %[t1], [%[w0]], #4\n\t"
                         "sxtb16 %[t2], %[t0]\n\t"
                         "sxtb16 %[t0], %[t0], ror #8\n\t"
                         "sxtb16 %[t3], %[t1]\n\t"
                         "sxtb16 %[t1], %[t1], ror #8\n\t"
                         "smlad %[a0], %[t2], %[t3], %[a0]\n\t"
                         "smlad %[a0], %[t0], %[t1], %[a0]\n\t"
                         "ldr %[t1], [%[w1]], #4\n\t"
                         "sxtb16 %[t3], %[t1]\n\t"
                         "sxtb16 %[t1], %[t1], ror #8\n\t"
                         "smlad %[a1], %[t2], %[t3], %[a1]\n\t"
                         "smlad %[a1], %[t0], %[t1], %[a1]\n\t"
                         "ldr %[t0], [%[x]], #4\n\t"
                         "ldr %[t1], [%[w0]], #4\n\t"
                         "sxtb16 %[t2], %[t0]\n\t"
                         "sxtb16 %[t0], %[t0], ror #8\n\t"
                         "sxtb16 %[t3], %[t1]\n\t"
                         "sxtb16 %[t1], %[t1], ror #8\n\t"
                         "smlad %[a0], %[t2], %[t3], %[a0]\n\t"
                         "smlad %[a0], %[t0], %[t1], %[a0]\n\t"
                         "ldr %[t1], [%[w1]], #4\n\t"
                         "sxtb16 %[t3], %[t1]\n\t"
                         "sxtb16 %[t1], %[t1], ror #8\n\t"
                         "smlad %[a1], %[t2], %[t3], %[a1]\n\t"
                         "smlad %[a1], %[t0], %[t1], %[a1]\n\t"
                         "subs %[q], %[q], #1\n\t"
                         "bne 1b"
                         : [x] "+r"(x), [w0] "+r"(w0), [w1] "+r"(w1), [a0] "+r"(a0), [a1] "+r"(a1),
                           [q] "+r"(octs), [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2), [t3] "=&r"(t3)
                         :
                         : "cc", "memory");
    }
    if (n & 4) {
        const uint32_t xv = tc_load4(x), v0 = tc_load4(w0), v1 = tc_load4(w1);
        const uint32_t xe = __sxtb16(xv), xo = tc_sxtb16_ror8(xv);
        x += 4;
        w0 += 4;
        w1 += 4;
        a0 = __smlad(xe, __sxtb16(v0), a0);
        a1 = __smlad(xe, __sxtb16(v1), a1);
        a0 = __smlad(xo, tc_sxtb16_ror8(v0), a0);
        a1 = __smlad(xo, tc_sxtb16_ror8(v1), a1);
    }
    for (n &= 3; n > 0; n--) {
        const int32_t v = *x++;
        a0 += v * *w0++;
        a1 += v * *w1++;
    }
    acc[0] = a0;
    acc[1] = a1;
}
#else
static inline int32_t tc_dot_s8(int32_t acc, const int8_t *x, const int8_t *w, int n)
{
    int m;
    for (m = 0; m < n; m++) {
        acc += (int32_t)x[m] * w[m];
    }
    return acc;
}

static inline void tc_dot2_s8(int32_t *acc, const int8_t *x, const int8_t *w0, const int8_t *w1, int n)
{
    int32_t a0 = acc[0], a1 = acc[1];
    int m;
    for (m = 0; m < n; m++) {
        const int32_t v = x[m];
        a0 += v * w0[m];
        a1 += v * w1[m];
    }
    acc[0] = a0;
    acc[1] = a1;
}
#endif

/* tflite::MultiplyByQuantizedMultiplier in double rounding (TFLM's default):
 *   RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc << left, mult), right).
 * The doubling high multiply with gemmlowp's sign-dependent nudge and truncating division equals
 * floor((x * mult + 2^30) / 2^31) (it cannot saturate: mult >= 0), which is SMMULR(2x, mult); the
 * rounding divide equals (h + 2^(right-1) - (h < 0)) >> right. Both rewrites are exact because the
 * export checks |acc << left| < 2^30 for every row (docs/c-export.md). Right shifts of negative
 * values are arithmetic (GCC, Clang). */
static inline int32_t tc_requant_scale(int32_t acc, int32_t mult, int32_t shift)
{
    int32_t high;
    if (shift > 0) {
        acc = (int32_t)((uint32_t)acc << shift);
        shift = 0;
    }
#if defined(__ARM_FEATURE_DSP)
    high = tc_smmulr((int32_t)((uint32_t)acc << 1), mult);
#else
    high = (int32_t)(((int64_t)acc * mult + ((int64_t)1 << 30)) >> 31);
#endif
    if (shift < 0) {
        const int32_t right = -shift;
        high = (high + (int32_t)(1u << (right - 1)) + (high >> 31)) >> right;
    }
    return high;
}

static inline int8_t tc_clamp(int32_t v, int32_t act_min)
{
#if defined(__ARM_FEATURE_DSP)
    v = __ssat(v, 8); /* [-128, 127] in one instruction */
#else
    if (v > 127) {
        v = 127;
    }
#endif
    return (int8_t)(v < act_min ? act_min : v);
}

/* Requantizes n accumulators into int8 outputs. */
static void tc_requant_rows(const tc_layer_t *L, const int32_t *acc, int8_t *y, int n)
{
    const int32_t out_zp = L->out_zp, act_min = L->act_min;
    const int32_t *mult = L->mult;
    const int8_t *shift = L->shift;
    int r;
    for (r = 0; r < n; r++) {
        y[r] = tc_clamp(tc_requant_scale(acc[r], mult[r], shift[r]) + out_zp, act_min);
    }
}

/* Index-free and dense layers. Row r reads the run src[(r * d) mod n_in ...] of d values; rows
 * r and r + n_win read the same run. Rows are visited as pairs (r, r + n_win), so weights, biases
 * and accumulators of both rows advance sequentially. */
static void tc_windows_s8(const tc_layer_t *L, const int8_t *src, int8_t *y, int32_t *acc)
{
    const int d = L->d_in, n_win = L->n_win, group = L->group, n_in = L->n_in;
    int k, win;
    for (k = 0; k < group; k += 2) {
        const int pair = k + 1 < group;
        const int8_t *w0 = L->w + k * n_win * d, *w1 = w0 + n_win * d;
        const int32_t *b0 = L->bias + k * n_win;
        int32_t *c0 = acc + k * n_win;
        int start = 0;
        for (win = 0; win < n_win; win++) {
            const int8_t *xs = src + start;
            if (pair) {
                int32_t a[2];
                a[0] = b0[win];
                a[1] = b0[win + n_win];
                tc_dot2_s8(a, xs, w0, w1, d);
                c0[win] = a[0];
                c0[win + n_win] = a[1];
            } else {
                c0[win] = tc_dot_s8(b0[win], xs, w0, d);
            }
            w0 += d;
            w1 += d;
            start += d;
            if (start >= n_in) {
                start -= n_in;
            }
        }
    }
    tc_requant_rows(L, acc, y, L->n_out);
}

/* Gathers through the index table, four slots per iteration. With DSP: the gathered inputs are
 * packed as int16 pairs (slots 0/2 and 1/3) to meet SXTB16 of one weight word, two SMLADs. */
#if defined(__ARM_FEATURE_DSP)
#define TC_TABLE_QUAD(idx, m)                                                                      \
    do {                                                                                           \
        const uint32_t wv = tc_load4(w + (m));                                                     \
        const int32_t x0 = x[idx[(m)]], x1 = x[idx[(m) + 1]];                                      \
        const int32_t x2 = x[idx[(m) + 2]], x3 = x[idx[(m) + 3]];                                  \
        acc = __smlad(tc_pack16(x0, x2), __sxtb16(wv), acc);                                       \
        acc = __smlad(tc_pack16(x1, x3), tc_sxtb16_ror8(wv), acc);                                 \
    } while (0)
#else
#define TC_TABLE_QUAD(idx, m)                                                                      \
    do {                                                                                           \
        acc += (int32_t)x[idx[(m)]] * w[(m)] + (int32_t)x[idx[(m) + 1]] * w[(m) + 1] +             \
               (int32_t)x[idx[(m) + 2]] * w[(m) + 2] + (int32_t)x[idx[(m) + 3]] * w[(m) + 3];      \
    } while (0)
#endif

#define TC_TABLE_ROW(IDX_T, idx_ptr)                                                               \
    do {                                                                                           \
        const IDX_T *idx = (idx_ptr) + r * d;                                                      \
        int m = 0;                                                                                 \
        for (; m + 4 <= d; m += 4) {                                                               \
            TC_TABLE_QUAD(idx, m);                                                                 \
        }                                                                                          \
        for (; m < d; m++) {                                                                       \
            acc += (int32_t)x[idx[m]] * w[m];                                                      \
        }                                                                                          \
    } while (0)

static void tc_table_s8(const tc_layer_t *L, const int8_t *x, int8_t *y, int32_t *accs)
{
    const int d = L->d_in, n_out = L->n_out;
    const int8_t *w = L->w;
    int r;
    for (r = 0; r < n_out; r++, w += d) {
        int32_t acc = L->bias[r];
        if (L->idx8 != 0) {
            TC_TABLE_ROW(uint8_t, L->idx8);
        } else {
            TC_TABLE_ROW(uint16_t, L->idx16);
        }
        accs[r] = acc;
    }
    tc_requant_rows(L, accs, y, n_out);
}

/* int32 accumulators of one layer, requantized after the dot products (fewer live registers). */
static int32_t tc_acc[TC_MAX_OUT];

void tc_layer_forward(const tc_layer_t *L, const int8_t *x, int8_t *y, int8_t *scratch)
{
    if (L->kind == TC_LAYER_TABLE) {
        tc_table_s8(L, x, y, tc_acc);
        return;
    }
    if (L->extent != 0) {
        tc_permute_extend(L, x, scratch);
        x = scratch;
    }
    tc_windows_s8(L, x, y, tc_acc);
}

#else
typedef int tc_kernels_s8_unused; /* ISO C: a translation unit must not be empty */
#endif
