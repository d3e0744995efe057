/* The AVX-512 "span" kernel of kernels/bitplane.h (internal to it): plane matrices with
 * group % 32 == 0 on CPUs with AVX-512 F/BW/VNNI and BITALG.
 *
 * Why: the chunk kernel (64 inputs per int32 vector, lanes 0-7 in one group and 8-15 in
 * the next) has to turn every chunk's int32 dot products into floats and scale them, as
 * many float instructions per 64 inputs as there are mask adds at 4 planes. Here a row is
 * cut into spans of 512 inputs and the inputs are dealt to lanes so that lane i of every
 * chunk of a span holds inputs of the span's group-of-32 number i: chunk c (0..7), lane i,
 * byte b is input 32 i + 4 c + b of the span. VPSHUFBITQMB picks those bits out of the
 * plane's 64 bytes into a lane mask (byte 4i+b of a mask comes from qword i/2 = the 64
 * inputs that hold group-of-32 i), the codes are rebuilt with mask adds as before, and the
 * 8 chunks' VNNI dot products add up in int32 to one dot product per group-of-32: one
 * float scale step per 512 inputs instead of per 64. The int8 activations are dealt the
 * same way once per token (bs_bp_span_prepare).
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

/* 1 when the CPU runs the span kernel (AVX-512 F/BW/VL/VNNI + BITALG). */
int bs_bp_span_cpu(void);

/* Bytes of one token's span input for cols inputs (a multiple of 64). */
size_t bs_bp_span_bytes(int cols);

/* Deals one token's int8 input (xq, per group xs and sq as prepared by bitplane.c) into
 * out (bs_bp_span_bytes(cols) bytes; any alignment, 64 is best). */
void bs_bp_span_prepare(const int8_t *xq, const float *xs, const float *sq, int cols, int group, uint8_t *out);

/* y[t][r] (+)= (W x_t)[r], row0 <= r < row1, for nt tokens whose span inputs are in[t];
 * p->group % 32 == 0 and bs_bp_span_cpu(). */
void bs_bp_span_rows(const bs_kernel_planes *p, const uint8_t *const *in, int nt, int row0, int row1,
                     float *const *y, int accumulate);

#endif
