/*
 * Host harness: runs tc_head_infer over a file of encoded inputs and writes every output.
 *   tc_harness_host INPUTS OUTPUTS
 * INPUTS: N * TC_INPUT_SIZE tc_input_t values (native byte order).
 * OUTPUTS: per sample TC_SPLIT_SIZE + TC_NUM_CLASSES tc_act_t values, the int8 exit flag and the
 * int8 tc_argmax of the exit logits.
 * Also prints the model hash so the test can check it was compiled in.
 */
#include <stdio.h>
#include <stdlib.h>

#include "tc_head.h"

/* The function under test; the benchmark swaps in the dense baseline (TC_INFER=tc_dense_infer). */
#ifndef TC_INFER
#define TC_INFER tc_head_infer
#else
int TC_INFER(const tc_input_t *input, tc_act_t *split_out, tc_act_t *exit_logits_out);
#endif

int main(int argc, char **argv)
{
    static tc_input_t input[TC_INPUT_SIZE];
    static tc_act_t split[TC_SPLIT_SIZE], logits[TC_NUM_CLASSES];
    FILE *fin, *fout;
    long n = 0;
    int i;
    if (argc != 3) {
        fprintf(stderr, "usage: %s INPUTS OUTPUTS\n", argv[0]);
        return 2;
    }
    fin = fopen(argv[1], "rb");
    fout = fopen(argv[2], "wb");
    if (fin == NULL || fout == NULL) {
        perror("open");
        return 2;
    }
    while (fread(input, sizeof(tc_input_t), TC_INPUT_SIZE, fin) == TC_INPUT_SIZE) {
        signed char flag[2];
        flag[0] = (signed char)TC_INFER(input, split, logits);
        flag[1] = (signed char)tc_argmax(logits);
        if (fwrite(split, sizeof(tc_act_t), TC_SPLIT_SIZE, fout) != TC_SPLIT_SIZE ||
            fwrite(logits, sizeof(tc_act_t), TC_NUM_CLASSES, fout) != TC_NUM_CLASSES ||
            fwrite(flag, 1, 2, fout) != 2) {
            perror("write");
            return 2;
        }
        n++;
    }
    fclose(fin);
    if (fclose(fout) != 0) {
        perror("close");
        return 2;
    }
    printf("hash ");
    for (i = 0; i < TC_MODEL_HASH_LEN; i++) {
        printf("%02x", tc_model_hash[i]);
    }
    printf("\nsamples %ld\n", n);
    return 0;
}
