/* A forward pass stopped half way (its view of the weights was revoked by a shrink) and
 * run again gives exactly the logits of a pass that was never stopped: the KV entries the
 * stopped pass wrote are rewritten. */
#include <string.h>

#include "harness.h"
#include "model/forward.h"
#include "model/model.h"

static atomic_int flag;

/* Raises the flag in the middle of layer 2 (the pass stops at its next product). */
static void stop_in_layer2(void *ctx, int layer, int site, const float *x, int ntok, int width)
{
    (void)ctx, (void)x, (void)ntok, (void)width;
    if (layer == 2 && site == BS_SITE_ATT_OUT)
        atomic_store(&flag, 1);
}

int main(void)
{
    bs_model m;
    bs_err e = {{0}};
    REQUIRE(bs_model_load(&m, bs_shared("models/stories260K.bin"), &e) == 0);
    int prompt[4] = {1, 403, 407, 261}, next[3] = {365, 263, 299};
    int V = m.cfg.vocab_size;

    /* the reference: never stopped */
    bs_state a;
    REQUIRE(bs_state_init(&a, &m.cfg, 64, 8, &e) == 0);
    REQUIRE(bs_forward(&m, &a, prompt, 4, 0, 0, &e));
    float ref[3][512];
    REQUIRE(V <= 512);
    for (int i = 0; i < 3; i++) {
        const float *l = bs_forward(&m, &a, &next[i], 1, 4 + i, 0, &e);
        REQUIRE(l);
        memcpy(ref[i], l, sizeof(float) * (size_t)V);
    }

    /* stopped in the prompt and in each decode step, then run again */
    bs_state b;
    REQUIRE(bs_state_init(&b, &m.cfg, 64, 8, &e) == 0);
    b.abort = &flag;
    b.hook = stop_in_layer2;
    CHECK(bs_forward(&m, &b, prompt, 4, 0, 0, &e) == NULL && b.aborted == 1);
    b.hook = NULL;
    atomic_store(&flag, 0);
    REQUIRE(bs_forward(&m, &b, prompt, 4, 0, 0, &e));
    CHECK(b.aborted == 0);
    int same = 0;
    for (int i = 0; i < 3; i++) {
        b.hook = stop_in_layer2;
        CHECK(bs_forward(&m, &b, &next[i], 1, 4 + i, 0, &e) == NULL && b.aborted == 1);
        b.hook = NULL;
        atomic_store(&flag, 0);
        const float *l = bs_forward(&m, &b, &next[i], 1, 4 + i, 0, &e);
        REQUIRE(l);
        same += !memcmp(l, ref[i], sizeof(float) * (size_t)V);
    }
    CHECKF(same == 3, "%d of 3 steps gave the reference logits after a stop", same);

    /* a flag already up stops the pass before anything runs */
    atomic_store(&flag, 1);
    CHECK(bs_forward(&m, &b, &next[0], 1, 7, 0, &e) == NULL && b.aborted == 1);

    /* a batch (two sequences stepped together) stopped and run again: both get the
     * logits of a batch never stopped */
    bs_state c[2], d[2];
    bs_state *cp[2] = {&c[0], &c[1]}, *dp[2] = {&d[0], &d[1]};
    for (int i = 0; i < 2; i++) {
        REQUIRE(bs_state_init(&c[i], &m.cfg, 64, 2, &e) == 0 && bs_state_init(&d[i], &m.cfg, 64, 2, &e) == 0);
        REQUIRE(bs_forward(&m, &c[i], prompt, 3 + i, 0, 0, &e) && bs_forward(&m, &d[i], prompt, 3 + i, 0, 0, &e));
    }
    int bt[2] = {next[0], next[1]}, bpos[2] = {3, 4};
    REQUIRE(bs_forward_batch(&m, cp, bt, bpos, 2, &e));
    atomic_store(&flag, 0);
    d[0].abort = &flag;
    d[0].hook = stop_in_layer2;
    CHECK(bs_forward_batch(&m, dp, bt, bpos, 2, &e) == NULL && d[0].aborted && d[1].aborted);
    d[0].hook = NULL;
    atomic_store(&flag, 0);
    REQUIRE(bs_forward_batch(&m, dp, bt, bpos, 2, &e));
    CHECK(!d[0].aborted && !d[1].aborted);
    for (int i = 0; i < 2; i++) {
        CHECK(!memcmp(c[i].logits, d[i].logits, sizeof(float) * (size_t)V));
        bs_state_free(&c[i]);
        bs_state_free(&d[i]);
    }

    bs_state_free(&a);
    bs_state_free(&b);
    bs_model_free(&m);
    TEST_MAIN_END();
}
