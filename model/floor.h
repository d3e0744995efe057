/* bs_floor: the LittleBit floor of a matrix (DESIGN §3, arXiv 2506.13771), the one home of
 * its layout and size arithmetic.
 *
 *   W_floor = Σ_{p < paths} diag(h_p) · sign(U_p) · diag(l_p) · sign(V_p)ᵀ · diag(g_p)
 *
 * A matrix with floor_rank > 0 has a floor payload in the store's floor section
 * (docs/store-format.md, "Floor"); its stack blocks then decompose W − W_floor. Per path,
 * in this order: h (fp16, rows), l (fp16, rank), g (fp16, cols), then sign(U) as rows ×
 * ceil(rank/8) bytes and sign(V)ᵀ as rank × ceil(cols/8) bytes (kernels/littlebit.h); a
 * path is padded to an even length so the next path's fp16 arrays stay 2-byte aligned.
 *
 * Float factors (bs_floor_f) are what initialisation and training work on: latent U, V
 * whose signs are stored, and the scales. Nothing here allocates except bs_floor_f_alloc. */
#ifndef BS_FLOOR_H
#define BS_FLOOR_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/err.h"
#include "kernels/littlebit.h"
#include "model/block.h"

#define BS_FLOOR_MAX_PATHS 2

/* Bytes of one path of a rows × cols floor of rank r (even). */
uint64_t bs_floor_path_bytes(int rows, int cols, int rank);

/* Bytes of m's floor payload (0 without a floor). */
uint64_t bs_floor_bytes(const bs_store_matrix *m);

/* Bits the paper counts for a floor: paths · (r·(m + n + 16) + 16·(m + n)). */
double bs_floor_bits(int rows, int cols, int rank, int paths);

/* The payload of m's floor as kernel descriptors, one per path. */
typedef struct {
    int paths;
    bs_kernel_lb path[BS_FLOOR_MAX_PATHS];
} bs_floor_view;

void bs_floor_view_of(const bs_store_matrix *m, const uint8_t *payload, bs_floor_view *v);

/* w (rows × cols) += W_floor. */
void bs_floor_add_dense(const bs_floor_view *v, float *w);

/* Ranks for a whole model at `bpw` bits per linear weight with `paths` paths: one constant
 * c with r_i = round(c · m_i n_i / (m_i + n_i + 16)), clamped to [1, min(m_i, n_i)], chosen
 * (bisection) so the counted bits come as close to bpw · Σ m_i n_i as they can without
 * passing it. rows/cols/rank: n entries; *c (may be NULL) gets the constant. Fails when even
 * rank 1 everywhere exceeds it. */
int bs_floor_solve_ranks(const int *rows, const int *cols, int n, double bpw, int paths, int *rank, double *c,
                         bs_err *e);

/* The rank that constant c gives a rows × cols matrix (what the solve assigns it). */
int bs_floor_rank_for(double c, int rows, int cols);

/* One path as floats: U rows × rank, V cols × rank (latent: only their signs are stored). */
typedef struct {
    int rows, cols, rank;
    float *U, *V, *h, *l, *g;
} bs_floor_f;

int bs_floor_f_alloc(bs_floor_f *f, int rows, int cols, int rank, bs_err *e);
void bs_floor_f_free(bs_floor_f *f);

/* Writes the path into its place in a payload (bs_floor_path_bytes long). */
void bs_floor_f_pack(const bs_floor_f *f, uint8_t *dst);

/* Dual-SVID (the paper's initialisation) of A (rows × cols): truncated SVD at f->rank with
 * the project's randomised SVD; √Σ split into both factors; their signs are the binary
 * factors; rank-1 fits of |U√Σ| ≈ h·luᵀ and |V√Σ| ≈ g·lvᵀ give h, g and l = lu ⊙ lv.
 * The latent U, V are U√Σ / (h luᵀ) etc. — the sign pattern with magnitudes near 1. */
int bs_floor_dual_svid(bs_floor_f *f, const float *A, uint64_t seed, bs_err *e);

/* A (rows × cols) −= the path as stored (fp16 scales, signs): residual compensation. */
void bs_floor_f_subtract(const bs_floor_f *f, float *A);

#endif
