/*
 * float32 layer kernels. Each output is  acc = bias; acc += x * w  slot by slot, one IEEE rounding per
 * product and per sum (compile with -ffp-contract=off: no fused multiply-add), so every target
 * reproduces the host reference bit for bit.
 */
#include "tc_kernels.h"

#if defined(TC_DTYPE_FLOAT32)

static inline float tc_relu(const tc_layer_t *L, float v)
{
    return (L->relu && v < 0.0f) ? 0.0f : v;
}

static inline float tc_dot_f32(float acc, const float *x, const float *w, int n)
{
    int m;
    for (m = 0; m < n; m++) {
        acc += x[m] * w[m];
    }
    return acc;
}

void tc_permute_extend(const tc_layer_t *L, const float *x, float *buf)
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

static void tc_windows_f32(const tc_layer_t *L, const float *src, float *y)
{
    const int d = L->d_in, n_win = L->n_win, group = L->group, n_in = L->n_in;
    int win, k, start = 0;
    for (win = 0; win < n_win; win++) {
        const float *xs = src + start;
        for (k = 0; k < group; k++) {
            const int r = win + k * n_win;
            y[r] = tc_relu(L, tc_dot_f32(L->bias[r], xs, L->w + r * d, d));
        }
        start += d;
        if (start >= n_in) {
            start -= n_in;
        }
    }
}

static void tc_table_f32(const tc_layer_t *L, const float *x, float *y)
{
    const int d = L->d_in, n_out = L->n_out;
    const float *w = L->w;
    int r, m;
    for (r = 0; r < n_out; r++, w += d) {
        float acc = L->bias[r];
        if (L->idx8 != 0) {
            const uint8_t *idx = L->idx8 + r * d;
            for (m = 0; m < d; m++) {
                acc += x[idx[m]] * w[m];
            }
        } else {
            const uint16_t *idx = L->idx16 + r * d;
            for (m = 0; m < d; m++) {
                acc += x[idx[m]] * w[m];
            }
        }
        y[r] = tc_relu(L, acc);
    }
}

void tc_layer_forward(const tc_layer_t *L, const float *x, float *y, float *scratch)
{
    if (L->kind == TC_LAYER_TABLE) {
        tc_table_f32(L, x, y);
        return;
    }
    if (L->extent != 0) {
        tc_permute_extend(L, x, scratch);
        x = scratch;
    }
    tc_windows_f32(L, x, y);
}

#else
typedef int tc_kernels_f32_unused; /* ISO C: a translation unit must not be empty */
#endif
