/* bs_train: quantisation-aware training of a LittleBit floor (DESIGN §3), in C.
 *
 * The student is the model with every linear replaced by its floor (model/floor.h): latent
 * U, V (signs through a straight-through estimator with a tanh surrogate, model/train_ops.h),
 * scales h, l, g, and the RMSNorm weights of the layers are the parameters; embeddings, the
 * final norm and the classifier stay fixed. The teacher is the float model:
 *
 *   loss = KL(teacher ‖ student logits) + mse_weight · Σ_layers mean (x_student − x_teacher)²
 *
 * over the residual stream after every layer. AdamW, linear warm-up then cosine decay over the
 * time budget. Windows of the training text start with BOS, at random places. Matmuls go
 * through OpenBLAS (its threads). Trained norm weights are folded into the g of the floors
 * that read them, so the store's norms stay the float model's (the stack above the floor
 * decomposes W − W_floor with the same norms).
 *
 * Progress is reported through a callback (this module never prints); the state is
 * checkpointed to a file every checkpoint_every seconds and at the end, and a run given the
 * same checkpoint path resumes from it (its step, its elapsed time, its moments). */
#ifndef BS_TRAIN_H
#define BS_TRAIN_H

#include <jansson.h>
#include <stdint.h>

#include "kernels/err.h"
#include "model/floor.h"
#include "model/model.h"

typedef struct {
    long step;
    double loss, kl, mse;     /* of the last step */
    double tok_per_s;         /* student tokens per second of training */
    double elapsed, eta;      /* seconds */
    double lr;
    int resumed;              /* this run started from a checkpoint */
} bs_train_status;

typedef void (*bs_train_progress_fn)(void *ctx, const bs_train_status *st);

typedef struct {
    double minutes;           /* training time budget (includes time before a resume) */
    long max_steps;           /* > 0: stop after this many steps as well */
    int batch, seq;           /* windows per step and tokens per window (BOS included); 0: the
                                 model's context up to 256, and 512 tokens a step */
    float lr, weight_decay, mse_weight;
    int warmup;               /* steps of linear warm-up */
    uint64_t seed;
    const char *checkpoint;   /* NULL: none */
    double checkpoint_every;  /* seconds */
    double report_every;      /* seconds between progress calls */
    bs_train_progress_fn progress;
    void *progress_ctx;
} bs_train_opts;

void bs_train_defaults(bs_train_opts *o);

/* Trains floors (n_layers · 7 · paths entries: matrix layer·7 + which, path p at
 * index (layer·7 + which)·paths + p; initialised, e.g. by Dual-SVID) against teacher on the
 * token ids. report (may be NULL) gets steps, seconds, final loss. */
int bs_train_floor(const bs_model *teacher, const int *ids, int nids, int bos, bs_floor_f *floors, int paths,
                   const bs_train_opts *o, json_t *report, bs_err *e);

/* ---- the pieces, for tests ------------------------------------------------------- */

typedef struct bs_trainer bs_trainer;

bs_trainer *bs_trainer_new(const bs_model *teacher, bs_floor_f *floors, int paths, int batch, int seq, float mse_weight,
                           bs_err *e);
void bs_trainer_free(bs_trainer *t);

/* Every parameter and its gradient as one flat array each (n floats). */
float *bs_trainer_params(bs_trainer *t, size_t *n);
const float *bs_trainer_grads(const bs_trainer *t);
/* Is parameter i a latent sign factor (its gradient is the surrogate's, not the loss's)? */
int bs_trainer_is_latent(const bs_trainer *t, size_t i);

/* Loss on tokens (batch × seq) and, when grads is set, its gradient (zeroed first). */
double bs_trainer_loss(bs_trainer *t, const int *tokens, int grads, double *kl, double *mse);

/* The parameters back into floors, norm weights folded into g. */
void bs_trainer_export(const bs_trainer *t, bs_floor_f *floors);

#endif
