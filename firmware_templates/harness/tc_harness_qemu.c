/*
 * On-target harness for QEMU (semihosting), linked with the shared Cortex-M start-up: prints the compiled-in model hash (H <hex>), runs
 * tc_head_infer on the compiled-in test vectors and prints every output as hex, one line per sample:
 *   R <index> <split+logits bytes> <exit flag>
 * The Python test compares the lines with the host reference. With TC_BENCH_ITERS it also times
 * whole inferences, each layer and each permutation with SysTick (run QEMU with -icount shift=0 for
 * exact counts):  BENCH <name> <iterations> <ticks> <empty-loop ticks>
 */
#include <stdint.h>

#include "tc_semihost.h"
#include "tc_head.h"
#include "tc_kernels.h"
#include "tc_test_vectors.h" /* generated: TC_TEST_N, tc_test_data, TC_TEST_MAX_WIDTH */

/* The function under test; the benchmark swaps in the dense baseline (TC_INFER=tc_dense_infer). */
#ifndef TC_INFER
#define TC_INFER tc_head_infer
#else
int TC_INFER(const tc_input_t *input, tc_act_t *split_out, tc_act_t *exit_logits_out);
#endif

static char line[16 + 2 * (TC_SPLIT_SIZE + TC_NUM_CLASSES) * sizeof(tc_act_t) + 16];
static tc_input_t input[TC_INPUT_SIZE];
static tc_act_t split[TC_SPLIT_SIZE], logits[TC_NUM_CLASSES];

static char *put_hex(char *p, const void *data, unsigned n)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *b = (const uint8_t *)data;
    unsigned i;
    for (i = 0; i < n; i++) {
        *p++ = digits[b[i] >> 4];
        *p++ = digits[b[i] & 15];
    }
    return p;
}

static char *put_uint(char *p, uint32_t v)
{
    char tmp[12];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0u);
    while (n > 0) {
        *p++ = tmp[--n];
    }
    return p;
}

static void load_input(int i)
{
    int j;
#if defined(TC_DTYPE_INT8)
    for (j = 0; j < TC_INPUT_SIZE; j++) {
        input[j] = tc_test_data[i][j];
    }
#else
    /* Stored as 8-bit pixels; x = pixel / 255 in float32 (the dataset's preprocessing), zero-padded. */
    for (j = 0; j < TC_INPUT_SIZE; j++) {
        input[j] = j < TC_TEST_PIXELS ? (float)tc_test_data[i][j] / 255.0f : 0.0f;
    }
#endif
}

#if defined(TC_BENCH_ITERS)
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

static uint32_t ticks(void)
{
    uint32_t w, v;
    do {
        w = tc_systick_wraps;
        v = SYST_CVR;
    } while (w != tc_systick_wraps);
    return w * 0x1000000u + (0xFFFFFFu - v);
}

/* Same signature as tc_head_infer, does nothing: the loop overhead to subtract. */
__attribute__((noinline)) int tc_empty(const tc_input_t *a, tc_act_t *b, tc_act_t *c)
{
    __asm__ volatile("" : : "r"(a), "r"(b), "r"(c) : "memory");
    return 0;
}

__attribute__((noinline)) void tc_empty_layer(const tc_layer_t *l, const tc_act_t *x, tc_act_t *y, tc_act_t *s)
{
    __asm__ volatile("" : : "r"(l), "r"(x), "r"(y), "r"(s) : "memory");
}

static void report(const char *name, uint32_t t, uint32_t empty)
{
    char *p = line;
    const char *s = "BENCH ";
    while (*s) {
        *p++ = *s++;
    }
    while (*name) {
        *p++ = *name++;
    }
    *p++ = ' ';
    p = put_uint(p, TC_BENCH_ITERS);
    *p++ = ' ';
    p = put_uint(p, t);
    *p++ = ' ';
    p = put_uint(p, empty);
    *p++ = '\n';
    *p = 0;
    tc_semi_write0(line);
}

#if !defined(TC_BENCH_NO_LAYERS)
static tc_act_t act[TC_NUM_LAYERS + 1][TC_TEST_MAX_WIDTH];
static tc_act_t scratch[TC_XBUF_SIZE > 0 ? TC_XBUF_SIZE : 1];
#endif

static void bench(void)
{
    uint32_t t0, t1, t2, i;
#if !defined(TC_BENCH_NO_LAYERS)
    int k, j;
#endif
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0u;
    SYST_CSR = 7u; /* processor clock, interrupt on wrap, enable */
    load_input(0);
    t0 = ticks();
    for (i = 0; i < TC_BENCH_ITERS; i++) {
        tc_empty(input, split, logits);
    }
    t1 = ticks();
    for (i = 0; i < TC_BENCH_ITERS; i++) {
        TC_INFER(input, split, logits);
    }
    t2 = ticks();
    report("head", t2 - t1, t1 - t0);
#if !defined(TC_BENCH_NO_LAYERS)
    for (j = 0; j < TC_INPUT_SIZE; j++) {
        act[0][j] = input[j];
    }
    for (k = 0; k < TC_NUM_LAYERS; k++) {
        static const char *names[] = {"layer0", "layer1", "layer2", "layer3", "layer4", "layer5",
                                      "layer6", "layer7"};
        const tc_layer_t *l = &tc_layers[k];
        uint32_t empty;
        t0 = ticks();
        for (i = 0; i < TC_BENCH_ITERS; i++) {
            tc_empty_layer(l, act[k], act[k + 1], scratch);
        }
        t1 = ticks();
        for (i = 0; i < TC_BENCH_ITERS; i++) {
            tc_layer_forward(l, act[k], act[k + 1], scratch);
        }
        t2 = ticks();
        empty = t1 - t0;
        if (k < 8) {
            report(names[k], t2 - t1, empty);
        }
        if (l->kind != TC_LAYER_TABLE && l->extent != 0 && k < 8) {
            static const char *pnames[] = {"permute0", "permute1", "permute2", "permute3",
                                           "permute4", "permute5", "permute6", "permute7"};
            t1 = ticks();
            for (i = 0; i < TC_BENCH_ITERS; i++) {
                tc_permute_extend(l, act[k], scratch);
            }
            t2 = ticks();
            report(pnames[k], t2 - t1, empty);
        }
    }
#endif
}
#endif

int main(void)
{
    int i;
    char *h = line;
    *h++ = 'H';
    *h++ = ' ';
    h = put_hex(h, tc_model_hash, TC_MODEL_HASH_LEN);
    *h++ = '\n';
    *h = 0;
    tc_semi_write0(line);
    for (i = 0; i < TC_TEST_N; i++) {
        char *p = line;
        int flag;
        load_input(i);
        flag = TC_INFER(input, split, logits);
        *p++ = 'R';
        *p++ = ' ';
        p = put_uint(p, (uint32_t)i);
        *p++ = ' ';
        p = put_hex(p, split, sizeof(split));
        p = put_hex(p, logits, sizeof(logits));
        *p++ = ' ';
        *p++ = (char)('0' + flag);
        *p++ = '\n';
        *p = 0;
        tc_semi_write0(line);
    }
#if defined(TC_BENCH_ITERS)
    bench();
#endif
    tc_semi_write0("DONE\n");
    tc_semi_exit(0);
}
