/*
 * float32 layer kernels. Each output is  acc = 0; acc += x * w  slot by slot, then acc + bias, one IEEE
 * rounding per product and per sum (compile with -ffp-contract=off: no fused multiply-add), so every
 * target reproduces the host reference bit for bit (and TFLite's reference FULLY_CONNECTED, which
 * sums the same way, wherever the slots are in ascending input order: index tables, dense layers). On Cortex-M cores with a single-precision FPU the
 * multiply-accumulate is VMLA.F32, which rounds the product before adding (it is not fused), so it
 * gives the same bits as the separate multiply and add.
 */
#include "tc_kernels.h"

#if defined(TC_DTYPE_FLOAT32)

#if defined(__ARM_FP) && (__ARM_FP & 4) && defined(__thumb2__)
#define TC_VFP 1
static inline float tc_mac(float acc, float x, float w)
{
    __asm__("vmla.f32 %0, %1, %2" : "+t"(acc) : "t"(x), "t"(w));
    return acc;
}
#else
static inline float tc_mac(float acc, float x, float w)
{
    return acc + x * w;
}
#endif

static inline float tc_relu(int relu, float v)
{
    return (relu && v < 0.0f) ? 0.0f : v;
}

#if defined(TC_VFP)
/* Four slots per step: VLDMIA loads four inputs / weights and advances the pointer in one
 * instruction, which GCC does not emit for this loop by itself. Registers s0-s11 are scratch. */
static inline float tc_dot_f32(float acc, const float *x, const float *w, int n)
{
    int quads = n >> 2;
    if (quads != 0) {
        __asm__ volatile("1:\n\t"
                         "vldmia %[x]!, {s0-s3}\n\t"
                         "vldmia %[w]!, {s4-s7}\n\t"
                         "vmla.f32 %[a], s0, s4\n\t"
                         "vmla.f32 %[a], s1, s5\n\t"
                         "vmla.f32 %[a], s2, s6\n\t"
                         "vmla.f32 %[a], s3, s7\n\t"
                         "subs %[q], %[q], #1\n\t"
                         "bne 1b"
                         : [x] "+r"(x), [w] "+r"(w), [a] "+t"(acc), [q] "+r"(quads)
                         :
                         : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "cc", "memory");
    }
    for (n &= 3; n > 0; n--) {
        acc = tc_mac(acc, *x++, *w++);
    }
    return acc;
}

/* Two rows over the same run: four inputs loaded once per step, each row keeps its slot order. */
static inline void tc_dot2_f32(float *acc, const float *x, const float *w0, const float *w1, int n)
{
    float a0 = acc[0], a1 = acc[1];
    int quads = n >> 2;
    if (quads != 0) {
        __asm__ volatile("1:\n\t"
                         "vldmia %[x]!, {s0-s3}\n\t"
                         "vldmia %[w0]!, {s4-s7}\n\t"
                         "vldmia %[w1]!, {s8-s11}\n\t"
                         "vmla.f32 %[a0], s0, s4\n\t"
                         "vmla.f32 %[a1], s0, s8\n\t"
                         "vmla.f32 %[a0], s1, s5\n\t"
                         "vmla.f32 %[a1], s1, s9\n\t"
                         "vmla.f32 %[a0], s2, s6\n\t"
                         "vmla.f32 %[a1], s2, s10\n\t"
                         "vmla.f32 %[a0], s3, s7\n\t"
                         "vmla.f32 %[a1], s3, s11\n\t"
                         "subs %[q], %[q], #1\n\t"
                         "bne 1b"
                         : [x] "+r"(x), [w0] "+r"(w0), [w1] "+r"(w1), [a0] "+t"(a0), [a1] "+t"(a1),
                           [q] "+r"(quads)
                         :
                         : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "cc",
                           "memory");
    }
    for (n &= 3; n > 0; n--) {
        const float v = *x++;
        a0 = tc_mac(a0, v, *w0++);
        a1 = tc_mac(a1, v, *w1++);
    }
    acc[0] = a0;
    acc[1] = a1;
}
#else
static inline float tc_dot_f32(float acc, const float *x, const float *w, int n)
{
    const float *end = x + n;
    while (x != end) {
        acc = tc_mac(acc, *x++, *w++);
    }
    return acc;
}

static inline void tc_dot2_f32(float *acc, const float *x, const float *w0, const float *w1, int n)
{
    float a0 = acc[0], a1 = acc[1];
    const float *end = x + n;
    while (x != end) {
        const float v = *x++;
        a0 = tc_mac(a0, v, *w0++);
        a1 = tc_mac(a1, v, *w1++);
    }
    acc[0] = a0;
    acc[1] = a1;
}
#endif

/* Index-free and dense layers: rows r and r + n_win read the same run of d inputs. */
static void tc_windows_f32(const tc_layer_t *L, const float *src, float *y)
{
    const int d = L->d_in, n_win = L->n_win, group = L->group, n_in = L->n_in, relu = L->relu;
    int k, win;
    for (k = 0; k < group; k += 2) {
        const int pair = k + 1 < group;
        const float *w0 = L->w + k * n_win * d, *w1 = w0 + n_win * d;
        const float *b0 = L->bias + k * n_win;
        float *y0 = y + k * n_win;
        int start = 0;
        for (win = 0; win < n_win; win++) {
            const float *xs = src + start;
            if (pair) {
                float a[2];
                a[0] = 0.0f;
                a[1] = 0.0f;
                tc_dot2_f32(a, xs, w0, w1, d);
                y0[win] = tc_relu(relu, a[0] + b0[win]);
                y0[win + n_win] = tc_relu(relu, a[1] + b0[win + n_win]);
            } else {
                y0[win] = tc_relu(relu, tc_dot_f32(0.0f, xs, w0, d) + b0[win]);
            }
            w0 += d;
            w1 += d;
            start += d;
            if (start >= n_in) {
                start -= n_in;
            }
        }
    }
}

#define TC_TABLE_ROW(IDX_T, idx_ptr)                                                               \
    do {                                                                                           \
        const IDX_T *idx = (idx_ptr) + r * d;                                                      \
        int m = 0;                                                                                 \
        for (; m + 4 <= d; m += 4) {                                                               \
            acc = tc_mac(acc, x[idx[m]], w[m]);                                                    \
            acc = tc_mac(acc, x[idx[m + 1]], w[m + 1]);                                            \
            acc = tc_mac(acc, x[idx[m + 2]], w[m + 2]);                                            \
            acc = tc_mac(acc, x[idx[m + 3]], w[m + 3]);                                            \
        }                                                                                          \
        for (; m < d; m++) {                                                                       \
            acc = tc_mac(acc, x[idx[m]], w[m]);                                                    \
        }                                                                                          \
    } while (0)

static void tc_table_f32(const tc_layer_t *L, const float *x, float *y)
{
    const int d = L->d_in, n_out = L->n_out, relu = L->relu;
    const float *w = L->w;
    int r;
    for (r = 0; r < n_out; r++, w += d) {
        float acc = 0.0f;
        if (L->idx8 != 0) {
            TC_TABLE_ROW(uint8_t, L->idx8);
        } else {
            TC_TABLE_ROW(uint16_t, L->idx16);
        }
        y[r] = tc_relu(relu, acc + L->bias[r]);
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
