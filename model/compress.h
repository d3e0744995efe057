/* bs_compress: a float model + calibration text -> a stacked store (DESIGN §2).
 *
 *  1. calibration pass (model/calib.h): activation scales and input Hessians;
 *  2. activation-aware scaling folded into the model (the float function unchanged);
 *  3. every linear becomes a sequence of ~1-bit residual blocks of one kind
 *     (saq planes, GPTQ-seeded gq planes, or the paper's avd sign x low-rank blocks);
 *  4. all blocks are ordered into one stack: level-major, within a level by calibration
 *     output-error reduction per byte (sort=level), or by calibration perplexity with
 *     only that matrix one level deeper (sort=ppl, the paper's);
 *  5. the store is written (model/store.h).
 * With a floor, step 2 is followed by the floor's Dual-SVID initialisation (and training,
 * when asked) on the scaled model; steps 3-4 work on W (then the prefix where the store
 * switches from the floor to the stack is placed by calibration perplexity) or, over the
 * floor, on W − W_floor.
 * Baselines (round-to-nearest and GPTQ, asymmetric, group 32) write a store whose
 * matrices are one qasym block each. */
#ifndef BS_COMPRESS_H
#define BS_COMPRESS_H

#include <jansson.h>

#include "model/model.h"
#include "model/progress.h"
#include "model/train.h"
#include "model/tokenizer.h"

enum { BS_SORT_LEVEL = 0, BS_SORT_PPL = 1 };
enum { BS_BASE_RTN = 0, BS_BASE_GPTQ = 1 };
/* How a store's stack relates to its floor (model/store.h): BS_FLOOR_SWITCH, the default, runs
 * the floor alone up to the prefix where the stack alone (blocks of W) first scores at least
 * as well on calibration text, and the stack alone from there; BS_FLOOR_OVER stacks blocks of
 * W − W_floor on the floor. Measured (docs/results.md §11): over a trained floor every prefix
 * up to ~3.5 bits per weight is worse than the floor alone. */
enum { BS_FLOOR_SWITCH = 0, BS_FLOOR_OVER = 1 };

typedef struct {
    int kind;           /* BS_KIND_SAQ / GQ / AVD */
    int levels;         /* blocks per matrix */
    int gq_levels;      /* K for gq */
    int gq_restart;     /* gq: level that starts fresh scales (-1: K + 1; 0: never) */
    int k;              /* avd rank; 0 = the rank whose factors cost ~1/8 bit per weight */
    int group;          /* inputs per scale group */
    int sort;           /* BS_SORT_* */
    int ctx;            /* calibration window (tokens incl. BOS) */
    int calib_windows;  /* windows of calibration text used */
    int ppl_windows;    /* windows scored per candidate with sort=ppl */
    int act_scale;      /* activation-aware scaling on/off */
    float act_alpha;    /* exponent on the activation scales (AWQ-style softening) */
    int act_order;      /* GPTQ act-order */
    int clip_search;    /* gq: search a clip factor per group */
    bs_progress progress;  /* stages calibration, floor, encode, order, write; notes */
    double floor_bpw;   /* > 0: a LittleBit floor (model/floor.h) of this many bits per linear
                           weight (counted as the paper does) under the stack */
    int floor_paths;    /* 1 or 2 (the second fits what the first misses) */
    int floor_mode;     /* BS_FLOOR_SWITCH or BS_FLOOR_OVER */
    int switch_windows; /* calibration windows scored to place the switch */
    bs_train_opts qat;  /* training of the floor (model/train.h) when qat.minutes > 0 or
                           qat.max_steps > 0; on the calibration text, the scaled float model
                           as teacher; its progress callback reports */
} bs_compress_opts;

/* Defaults for a block kind: levels 16 for avd, 12 for planes; gq K = 4 with clip
 * search and fresh scales from level K + 1; activation scaling for avd only. */
void bs_compress_defaults(bs_compress_opts *o, int kind);

/* Compresses src (not modified) into a store at out_path. report (may be NULL) gets
 * what was done and how long it took. */
int bs_compress(const bs_model *src, const bs_tokenizer *tok, const char *calib, size_t calib_len,
                const bs_compress_opts *o, const char *out_path, json_t *report, bs_err *e);

/* Baseline store: method BS_BASE_RTN or BS_BASE_GPTQ, bits 2..8, group 32, no activation
 * scaling (the standard recipes). calib may be NULL for RTN. Reports stages calibration
 * (GPTQ), then gptq or rtn (one item per matrix), then write, to pg (may be NULL). */
int bs_quantize_baseline(const bs_model *src, const bs_tokenizer *tok, const char *calib, size_t calib_len,
                         int method, int bits, int ctx, int calib_windows, const bs_progress *pg,
                         const char *out_path, json_t *report, bs_err *e);

/* Checks a model's linears before compression: non-finite values are an error naming
 * the matrix; an all-zero matrix is reported through *zero_name (it compresses exactly). */
int bs_compress_check_model(const bs_model *m, char *zero_name, size_t zlen, bs_err *e);

#endif
