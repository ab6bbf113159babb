/*
 * Unit test of the int8 kernels' requantization (tc_requant_scale, static in tc_kernels_s8.c, so the
 * source is included). Host: reads int32 triples (acc, mult, shift) from argv[1], writes the int32
 * results to argv[2]. Under QEMU (TC_SEMIHOST): the triples come from the generated
 * tc_requant_vectors.h and the results are printed as hex through semihosting.
 */
#include "tc_kernels_s8.c"

#if defined(TC_SEMIHOST)
#include "tc_semihost.h"
#include "tc_requant_vectors.h" /* TC_RQ_N, tc_rq[TC_RQ_N][3] */

int main(void)
{
    static char line[8 * 16 + 2];
    static const char digits[] = "0123456789abcdef";
    int i, k;
    for (i = 0; i < TC_RQ_N; i += 16) {
        char *p = line;
        for (k = i; k < i + 16 && k < TC_RQ_N; k++) {
            uint32_t v = (uint32_t)tc_requant_scale(tc_rq[k][0], tc_rq[k][1], tc_rq[k][2]);
            int b;
            for (b = 28; b >= 0; b -= 4) {
                *p++ = digits[(v >> b) & 15u];
            }
        }
        *p++ = '\n';
        *p = 0;
        tc_semi_write0(line);
    }
    tc_semi_write0("DONE\n");
    tc_semi_exit(0);
}
#else
#include <stdio.h>

int main(int argc, char **argv)
{
    int32_t t[3];
    FILE *in, *out;
    if (argc != 3) {
        return 2;
    }
    in = fopen(argv[1], "rb");
    out = fopen(argv[2], "wb");
    if (in == NULL || out == NULL) {
        return 2;
    }
    while (fread(t, sizeof(int32_t), 3, in) == 3) {
        int32_t r = tc_requant_scale(t[0], t[1], t[2]);
        fwrite(&r, sizeof(r), 1, out);
    }
    fclose(in);
    return fclose(out) == 0 ? 0 : 2;
}
#endif
