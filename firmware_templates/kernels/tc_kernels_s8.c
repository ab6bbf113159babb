/*
 * int8 layer kernels, bit-exact with TFLite Micro's FULLY_CONNECTED (reference kernels, double
 * rounding). No libm, no stdio, no allocation.
 */
#include "tc_kernels.h"

#if defined(TC_DTYPE_INT8)

/* tflite::MultiplyByQuantizedMultiplier, double rounding (TFLM default). The doubling high multiply
 * with gemmlowp's sign-dependent nudge and truncating division equals floor((x*m + 2^30) / 2^31);
 * it cannot saturate because m >= 0. Right shifts of negative values are arithmetic (GCC, Clang). */
static inline int32_t tc_requant_scale(int32_t acc, int32_t mult, int32_t shift)
{
    int32_t left = shift > 0 ? shift : 0;
    int32_t right = shift > 0 ? 0 : -shift;
    int32_t x = (int32_t)((uint32_t)acc << left);
    int32_t high = (int32_t)(((int64_t)x * mult + ((int64_t)1 << 30)) >> 31);
    int32_t mask = (int32_t)((1u << right) - 1u);
    int32_t remainder = high & mask;
    int32_t threshold = (mask >> 1) + (high < 0 ? 1 : 0);
    return (high >> right) + (remainder > threshold ? 1 : 0);
}

static inline int8_t tc_requant(const tc_layer_t *L, int r, int32_t acc)
{
    int32_t v = tc_requant_scale(acc, L->mult[r], L->shift[r]) + L->out_zp;
    if (v < L->act_min) {
        v = L->act_min;
    }
    if (v > 127) {
        v = 127;
    }
    return (int8_t)v;
}

/* Sum of x[m] * w[m] over a contiguous run. */
static inline int32_t tc_dot_s8(int32_t acc, const int8_t *x, const int8_t *w, int n)
{
    int m;
    for (m = 0; m < n; m++) {
        acc += (int32_t)x[m] * w[m];
    }
    return acc;
}

void tc_permute_extend(const tc_layer_t *L, const int8_t *x, int8_t *buf)
{
    const int n = L->n_in, a = L->a, extent = L->extent;
    int j, p = L->b;
    for (j = 0; j < n; j++) {
        buf[j] = x[p];
        p += a;
        if (p >= n) {
            p -= n;
        }
    }
    for (; j < extent; j++) {
        buf[j] = buf[j - n];
    }
}

static void tc_windows_s8(const tc_layer_t *L, const int8_t *src, int8_t *y)
{
    const int d = L->d_in, n_win = L->n_win, group = L->group, n_in = L->n_in;
    int win, k, start = 0;
    for (win = 0; win < n_win; win++) {
        const int8_t *xs = src + start;
        for (k = 0; k < group; k++) {
            const int r = win + k * n_win;
            y[r] = tc_requant(L, r, tc_dot_s8(L->bias[r], xs, L->w + r * d, d));
        }
        start += d;
        if (start >= n_in) {
            start -= n_in;
        }
    }
}

static void tc_table_s8(const tc_layer_t *L, const int8_t *x, int8_t *y)
{
    const int d = L->d_in, n_out = L->n_out;
    const int8_t *w = L->w;
    int r, m;
    for (r = 0; r < n_out; r++, w += d) {
        int32_t acc = L->bias[r];
        if (L->idx8 != 0) {
            const uint8_t *idx = L->idx8 + r * d;
            for (m = 0; m < d; m++) {
                acc += (int32_t)x[idx[m]] * w[m];
            }
        } else {
            const uint16_t *idx = L->idx16 + r * d;
            for (m = 0; m < d; m++) {
                acc += (int32_t)x[idx[m]] * w[m];
            }
        }
        y[r] = tc_requant(L, r, acc);
    }
}

void tc_layer_forward(const tc_layer_t *L, const int8_t *x, int8_t *y, int8_t *scratch)
{
    if (L->kind == TC_LAYER_TABLE) {
        tc_table_s8(L, x, y);
        return;
    }
    if (L->extent != 0) {
        tc_permute_extend(L, x, scratch);
        x = scratch;
    }
    tc_windows_s8(L, x, y);
}

#else
typedef int tc_kernels_s8_unused; /* ISO C: a translation unit must not be empty */
#endif
