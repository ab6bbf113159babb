/*
 * The input permutation of index-free (affine) layers, shared by both dtypes: it only moves tc_act_t
 * values. Declared in tc_kernels.h; the per-dtype kernels call it before their window loops.
 */
#include "tc_kernels.h"

/* buf[j] = x[p(j)] with p(j + 1) = p(j) + a mod n, kept in range by adding n back when p + a - n
 * is negative (branch-free), four elements per iteration, then the cyclic extension up to extent.
 * Shared by both dtypes: it only moves tc_act_t values. */
#define TC_PERMUTE_STEP(dst)                                                                       \
    do {                                                                                           \
        (dst) = x[p];                                                                              \
        p += step;                                                                                 \
        p += (p >> 31) & n;                                                                        \
    } while (0)

void tc_permute_extend(const tc_layer_t *L, const tc_act_t *x, tc_act_t *buf)
{
    const int n = L->n_in, extent = L->extent;
    const int step = L->a - n;
    int j = 0, p = L->b;
    for (; j + 4 <= n; j += 4) {
        TC_PERMUTE_STEP(buf[j]);
        TC_PERMUTE_STEP(buf[j + 1]);
        TC_PERMUTE_STEP(buf[j + 2]);
        TC_PERMUTE_STEP(buf[j + 3]);
    }
    for (; j < n; j++) {
        TC_PERMUTE_STEP(buf[j]);
    }
    for (; j < extent; j++) {
        buf[j] = buf[j - n];
    }
}
