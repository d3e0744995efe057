/* The AVX-512 "span" kernel of kernels/bitplane.h (internal to it): plane matrices with
 * group % 32 == 0 on CPUs with AVX-512 F/BW/VL/VNNI and GFNI.
 *
 * Why: the chunk kernel spends per 64 inputs one mask add per plane and, because lanes
 * 0-7 and 8-15 of its int32 vector belong to two groups, a float conversion and scale step
 * per chunk. Here a row is cut into spans of 512 inputs. The d plane bytes of each 8
 * inputs are gathered into one qword (three levels of unpacks) and one GF2P8AFFINEQB
 * transposes 8 such qwords into the 64 inputs' d-bit codes at once: about 4 vector
 * instructions per 64 inputs at 4 planes instead of 4 mask adds plus the float step. The
 * unpacks leave the inputs in an order where each 128-bit lane of a code vector covers one
 * group of 32 (in pairs of vectors), so the 8 VNNI dot products of a span add up in int32
 * and a few transposing adds give one int32 per group: one float scale step per 512 inputs.
 * The int8 activations are dealt in that order once per token (bs_bp_span_prepare).
 *
 * Results: the same quantisation as the chunk kernel (xs, q per group, bitplane.h), so
 * the same error bound; float sums in another order. For one token and for several, each
 * token's float operations are the same, in the same order: a row computed in a batch is
 * bit for bit the row computed alone. */
#ifndef BS_BITPLANE_SPAN_H
#define BS_BITPLANE_SPAN_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/bitplane.h"

/* Tokens one pass over a span's codes serves (the codes of a span are rebuilt once per
 * this many tokens). */
enum { BS_BP_SPAN_TOK = 8 };

/* 1 when the CPU runs the span kernel (AVX-512 F/BW/VL/VNNI + GFNI). */
int bs_bp_span_cpu(void);

/* Short rows: when a row is 8, 16 or 32 plane bytes (up to 64, 128, 256 inputs) and
 * groups are of 32, one 64-byte load holds 8, 4 or 2 whole rows and the kernel runs on
 * such packs of rows instead of on 512-input spans (of which such a row would fill one
 * eighth to one half). */
int bs_bp_span_packed(int cols, int group);

/* Bytes of one token's span input for cols inputs. */
size_t bs_bp_span_bytes(int cols);

/* Deals one token's int8 input (xq, zero from cols to a multiple of 64 inputs; per group
 * xs and sq: as prepared by bitplane.c) into
 * out (bs_bp_span_bytes(cols) bytes; any alignment, 64 is best). */
void bs_bp_span_prepare(const int8_t *xq, const float *xs, const float *sq, int cols, int group, uint8_t *out);

/* y[t][r] (+)= (W x_t)[r], row0 <= r < row1, for nt tokens whose span inputs are in[t];
 * p->group % 32 == 0 and bs_bp_span_cpu(). */
void bs_bp_span_rows(const bs_kernel_planes *p, const uint8_t *const *in, int nt, int row0, int row1,
                     float *const *y, int accumulate);

#endif
