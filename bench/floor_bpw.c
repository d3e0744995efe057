/* bench_floor_bpw: the floor's bit count (the paper's formula, model/floor.h) for a model's
 * linears at given bits per weight, and what the same proportionality constant gives other
 * shapes (the 1.1B and 7B llama matrices). No model file needed: shapes come from the
 * config, here babyllama-d128 or stories260K.
 *
 *   bench_floor_bpw [babyllama|stories260k] [paths]   */
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#include "model/floor.h"
#include "model/model.h"

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--help")) {
        printf("usage: bench_floor_bpw [babyllama|stories260k] [paths]\n");
        return 0;
    }
    int baby = argc < 2 || strcmp(argv[1], "stories260k");
    int paths = argc > 2 ? atoi(argv[2]) : 1;
    bs_config c = baby ? (bs_config){.dim = 128, .hidden_dim = 352, .n_layers = 5, .n_heads = 8, .n_kv_heads = 4}
                       : (bs_config){.dim = 64, .hidden_dim = 172, .n_layers = 5, .n_heads = 8, .n_kv_heads = 4};
    c.head_dim = c.dim / c.n_heads;
    c.kv_dim = c.head_dim * c.n_kv_heads;
    int n = c.n_layers * BS_NLIN, rows[BS_NLIN * 64], cols[BS_NLIN * 64], rank[BS_NLIN * 64];
    double weights = 0;
    for (int i = 0; i < n; i++) {
        bs_lin_shape(&c, i % BS_NLIN, &rows[i], &cols[i]);
        weights += (double)rows[i] * cols[i];
    }
    static const double targets[] = {0.3, 0.55, 0.8};
    static const int big[][2] = {{2048, 5632}, {4096, 11008}};
    printf("%s, %d path%s\n", baby ? "babyllama-d128" : "stories260K", paths, paths > 1 ? "s" : "");
    printf("%6s %8s | %-42s | %s\n", "target", "c", "per shape: rank, bpw (of which h,g,l)", "same c on 2048x5632, 4096x11008");
    for (int t = 0; t < 3; t++) {
        double cc;
        bs_err e = {{0}};
        if (bs_floor_solve_ranks(rows, cols, n, targets[t], paths, rank, &cc, &e)) {
            printf("%6.2f  %s\n", targets[t], e.msg);
            continue;
        }
        double bits = 0;
        for (int i = 0; i < n; i++)
            bits += bs_floor_bits(rows[i], cols[i], rank[i], paths);
        printf("%6.2f %8.4f | total %.4f;", targets[t], cc, bits / weights);
        for (int w = 0; w < BS_NLIN; w++) {
            if (w == BS_WO || w == BS_W3)
                continue;   /* same shapes as wq and w1 */
            double mn = (double)rows[w] * cols[w];
            double sc = paths * (16.0 * (rows[w] + cols[w]) + 16.0 * rank[w]) / mn;
            printf(" %s %dx%d r%d %.3f (%.3f)", bs_lin_name(w), rows[w], cols[w], rank[w],
                   bs_floor_bits(rows[w], cols[w], rank[w], paths) / mn, sc);
        }
        printf(" |");
        for (int b = 0; b < 2; b++) {
            int r = bs_floor_rank_for(cc, big[b][0], big[b][1]);
            printf(" r%d %.4f", r, bs_floor_bits(big[b][0], big[b][1], r, paths) / ((double)big[b][0] * big[b][1]));
        }
        printf("\n");
    }
    return 0;
}
