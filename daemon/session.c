#include "daemon/session.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "proto/chat.h"

bs_session *bs_session_new(bs_engine *eng, bs_request *req, uint64_t seed, bs_err *e)
{
    bs_session *s = calloc(1, sizeof *s);
    if (!s) {
        bs_err_set(e, "out of memory for a session");
        return NULL;
    }
    s->eng = eng;
    s->id = req->id;
    s->stream = req->stream;
    s->max_tokens = req->max_tokens;
    s->params.temperature = (float)req->temperature;
    s->params.top_p = (float)req->top_p;
    s->params.seed = seed;
    s->params.ctx = 0;
    s->last_n = -1;
    s->n_min = s->n_max = -1;
    atomic_init(&s->stop_req, 0);

    int n_tmpl = 0;
    const char *const *tmpl = NULL;
    if (req->op == BS_OP_CHAT) {
        s->prompt = bs_chat_render(req->messages, req->n_messages, &s->prompt_len, e);
        if (!s->prompt)
            goto fail;
        tmpl = bs_chat_stops(&n_tmpl);
    } else {
        s->prompt = req->prompt;
        s->prompt_len = req->prompt_len;
        req->prompt = NULL;
        req->prompt_len = 0;
    }
    s->stop = calloc((size_t)(req->n_stop + n_tmpl) + 1, sizeof *s->stop);
    if (!s->stop) {
        bs_err_set(e, "out of memory for a session");
        goto fail;
    }
    for (int i = 0; i < req->n_stop; i++) {
        s->stop[s->n_stop++] = req->stop[i];
        req->stop[i] = NULL;
    }
    for (int i = 0; i < n_tmpl; i++) {
        s->stop[s->n_stop] = strdup(tmpl[i]);
        if (!s->stop[s->n_stop]) {
            bs_err_set(e, "out of memory for a session");
            goto fail;
        }
        s->n_stop++;
    }
    for (int i = 0; i < s->n_stop; i++) {
        size_t l = strlen(s->stop[i]);
        if (l > s->max_stop)
            s->max_stop = l;
    }
    return s;
fail:
    bs_session_free(s);
    return NULL;
}

void bs_session_free(bs_session *s)
{
    if (!s)
        return;
    if (s->gen_ready)
        bs_gen_free(&s->gen);
    free(s->prompt);
    for (int i = 0; i < s->n_stop; i++)
        free(s->stop[i]);
    free(s->stop);
    free(s->ids);
    bs_proto_buf_free(&s->text);
    free(s);
}

static void fail(bs_session *s, bs_proto_code code, const char *msg)
{
    s->error = code;
    snprintf(s->errmsg, sizeof s->errmsg, "%.*s", (int)sizeof s->errmsg - 1, msg);
    s->finished = true;
}

void bs_session_finish(bs_session *s, bs_finish why)
{
    s->finished = true;
    s->finish = why;
    /* text held back for a stop string that never came is text after all */
    s->safe = s->text.len;
}

/* Tokenizes the prompt and sets up the KV cache: the first slice's work. */
static int setup(bs_session *s)
{
    bs_err e;
    const bs_store *st = &s->eng->store;
    if (bs_gen_init(&s->gen, &s->view->sm.model, st->tok, &s->params, &e)) {
        fail(s, BS_PERR_INTERNAL, e.msg);
        return -1;
    }
    s->gen_ready = true;
    /* a large model splits its products over the scheduler's team (its slices then run alone) */
    bs_sched *sc = s->item.sched;
    if (sc && sc->team && bs_forward_splits(&s->view->sm.model.cfg)) {
        if (bs_state_use_team(&s->gen.st, sc->team, &e)) {
            fail(s, BS_PERR_INTERNAL, e.msg);
            return -1;
        }
        s->item.wide = true;
    }
    /* as bs_gen_prompt does: BOS and the dummy-prefix space */
    if (bs_tok_encode(st->tok, s->prompt, s->prompt_len, 1, 1, &s->ids, &s->n_ids, &e)) {
        fail(s, BS_PERR_INTERNAL, e.msg);
        return -1;
    }
    free(s->prompt);
    s->prompt = NULL;
    s->prompt_tokens = s->n_ids;
    if (s->n_ids >= s->gen.st.ctx) {
        char msg[128];
        snprintf(msg, sizeof msg, "the prompt is %d tokens; the model's context holds %d", s->n_ids,
                 s->gen.st.ctx);
        fail(s, BS_PERR_PROMPT_TOO_LONG, msg);
        return -1;
    }
    return 0;
}

/* One chunk of the prompt, in the chunks bs_forward itself would use, so the KV cache
 * and logits are bit for bit those of bs_gen_prompt. */
static int prefill_chunk(bs_session *s)
{
    bs_err e;
    int left = s->n_ids - s->prefilled;
    int n = left < s->gen.st.max_batch ? left : s->gen.st.max_batch;
    const float *logits = bs_forward(&s->view->sm.model, &s->gen.st, s->ids + s->prefilled, n, s->prefilled, 0, &e);
    if (!logits) {
        if (!s->gen.st.aborted)   /* stopped for a shrink: the next slice redoes this chunk */
            fail(s, BS_PERR_INTERNAL, e.msg);
        return -1;
    }
    s->logits_n = s->view->n;
    s->prefilled += n;
    if (s->prefilled == s->n_ids) {
        s->gen.logits = logits;
        s->gen.pos = s->n_ids;
        s->gen.prev = s->ids[s->n_ids - 1];
        s->gen.prompt_tokens = s->n_ids;
        free(s->ids);
        s->ids = NULL;
        s->t_prefilled = uv_hrtime();
    }
    return 0;
}

/* After old_len..len was appended: ends the text at the first stop string, or moves
 * `safe` up to what can no longer become one (nor end inside a UTF-8 character). */
static void cut(bs_session *s, size_t old_len)
{
    size_t cand = s->text.len;
    if (s->n_stop) {
        /* a new match must end in the new bytes */
        size_t from = old_len + 1 > s->max_stop ? old_len + 1 - s->max_stop : 0;
        size_t best = SIZE_MAX;
        for (int i = 0; i < s->n_stop; i++) {
            size_t sl = strlen(s->stop[i]);
            const char *m = memmem(s->text.data + from, s->text.len - from, s->stop[i], sl);
            if (m && (size_t)(m - s->text.data) < best)
                best = (size_t)(m - s->text.data);
        }
        if (best != SIZE_MAX) {
            s->text.len = best;
            s->text.data[s->text.len] = '\0';
            bs_session_finish(s, BS_FINISH_STOP);
            return;
        }
        size_t hold = 0;
        for (int i = 0; i < s->n_stop; i++) {
            size_t sl = strlen(s->stop[i]);
            for (size_t k = sl - 1 < s->text.len ? sl - 1 : s->text.len; k > hold; k--)
                if (!memcmp(s->text.data + s->text.len - k, s->stop[i], k)) {
                    hold = k;
                    break;
                }
        }
        cand = s->text.len - hold;
    }
    if (cand > s->safe)
        s->safe += bs_proto_utf8_boundary(s->text.data + s->safe, cand - s->safe);
}

/* Where the N behind the tokens changed (the token about to be counted is `generated`). */
static void note_n(bs_session *s, int n)
{
    if (s->last_n >= 0 && n != s->last_n) {
        if (s->n_resizes < BS_PROTO_MAX_RESIZES) {
            s->resizes[s->n_resizes].token = s->generated;
            s->resizes[s->n_resizes].from = s->last_n;
            s->resizes[s->n_resizes].to = n;
            s->n_resizes++;
        }
        s->resize_events++;
    }
    s->last_n = n;
    if (s->n_min < 0 || n < s->n_min)
        s->n_min = n;
    if (n > s->n_max)
        s->n_max = n;
}

/* Runs the last sampled token through the model. False when the slice must end: the pass
 * was stopped because its view is being withdrawn (a shrink; the next slice runs it again
 * on the new view), or failed. */
static bool advance(bs_session *s)
{
    bs_err e;
    if (bs_gen_advance(&s->gen, &e)) {
        if (!s->gen.st.aborted)
            fail(s, BS_PERR_INTERNAL, e.msg);
        return false;
    }
    s->pending = false;
    s->logits_n = s->view->n;
    return true;
}

/* Samples the next token from the last logits and takes its text; true when the token
 * is to be run (pending), false when the session finished (or failed) instead. */
static bool sample_next(bs_session *s)
{
    int tok;
    int n = s->logits_n;   /* the token is sampled from these logits */
    if (bs_gen_sample(&s->gen, &tok) == 0) {
        bs_session_finish(s, tok < 0 ? BS_FINISH_LENGTH : BS_FINISH_EOS);
        return false;
    }
    uint64_t now = uv_hrtime();
    note_n(s, n);
    s->generated++;
    if (s->generated == 1)
        s->t_first = now;
    s->t_last = now;
    size_t old = s->text.len;
    if (bs_proto_buf_append(&s->text, s->gen.piece, s->gen.piece_len, NULL)) {
        fail(s, BS_PERR_INTERNAL, "out of memory for the generated text");
        return false;
    }
    cut(s, old);
    s->tok_n[s->n_tok] = n;
    s->tok_end[s->n_tok++] = s->safe;
    s->pending = !s->finished;
    return s->pending;
}

static bool step(bs_session *s)
{
    if (!s->pending && !sample_next(s))
        return false;
    return advance(s);
}

/* Decoding, with nothing left to prefill: the sessions a batch may hold. */
static bool decoding(const bs_session *s)
{
    return s->gen_ready && !s->finished && s->error == BS_PERR_NONE && s->prefilled == s->n_ids;
}

void bs_session_slice(bs_session *s)
{
    uint64_t t0 = uv_hrtime();
    s->n_tok = 0;
    if (s->finished)
        return;
    if (!s->gen_ready && setup(s))
        return;
    s->gen.m = &s->view->sm.model;
    s->gen.st.abort = &s->view->revoked;
    s->gen.st.qrun.team = s->item.team;   /* the team only when the slice holds every thread */
    while (!s->finished) {
        int req = atomic_load_explicit(&s->stop_req, memory_order_relaxed);
        if (req) {
            bs_session_finish(s, (bs_finish)(req - 1));
            break;
        }
        if (s->prefilled < s->n_ids) {
            if (prefill_chunk(s))
                break;
        } else if (s->generated >= s->max_tokens) {
            bs_session_finish(s, BS_FINISH_LENGTH);
            break;
        } else if (!step(s)) {
            break;
        }
        if (s->n_tok == BS_SESSION_SLICE_TOKENS || uv_hrtime() - t0 >= BS_SESSION_SLICE_NS)
            break;
    }
    s->kv_bytes = bs_state_kv_bytes(&s->gen.st);
    s->item.batch_key = decoding(s) ? s->eng : NULL;
}

/* Whether s goes on stepping in this batch slice: false once it ends (stop request,
 * length, a finish while sampling). */
static bool batch_wants(bs_session *s)
{
    if (s->finished)
        return false;
    int req = atomic_load_explicit(&s->stop_req, memory_order_relaxed);
    if (req) {
        bs_session_finish(s, (bs_finish)(req - 1));
        return false;
    }
    if (s->generated >= s->max_tokens) {
        bs_session_finish(s, BS_FINISH_LENGTH);
        return false;
    }
    return s->pending || sample_next(s);
}

void bs_session_slice_batch(bs_session *const *ss, int n, bs_session_batch_stats *bst)
{
    memset(bst, 0, sizeof *bst);
    if (n == 1) {
        bs_session_slice(ss[0]);
        return;
    }
    uint64_t t0 = uv_hrtime();
    bs_session *run[BS_SCHED_MAX_BATCH];
    bs_gen *gens[BS_SCHED_MAX_BATCH];
    for (int i = 0; i < n; i++) {
        bs_session *s = ss[i];
        s->n_tok = 0;
        s->gen.m = &s->view->sm.model;
        s->gen.st.abort = &s->view->revoked;
        s->gen.st.qrun.team = s->item.team;
    }
    for (;;) {
        int k = 0, full = 0;
        for (int i = 0; i < n; i++)
            if (batch_wants(ss[i])) {
                run[k] = ss[i];
                gens[k++] = &ss[i]->gen;
            }
        if (k == 0)
            break;
        /* the first one's buffers hold the batch: every state has rows for 64 tokens
         * (bs_gen_init), more than a batch */
        bs_err e;
        if (bs_gen_advance_batch(gens, k, &e)) {
            /* a stop for a shrink leaves every token pending: the next slices run them */
            if (!gens[0]->st.aborted)
                for (int i = 0; i < k; i++)
                    fail(run[i], BS_PERR_INTERNAL, e.msg);
            break;
        }
        bst->steps++;
        bst->rows += (uint64_t)k;
        for (int i = 0; i < k; i++) {
            run[i]->pending = false;
            run[i]->logits_n = run[i]->view->n;
            full |= run[i]->n_tok == BS_SESSION_SLICE_TOKENS;
        }
        if (full || uv_hrtime() - t0 >= BS_SESSION_SLICE_NS)
            break;
    }
    for (int i = 0; i < n; i++) {
        ss[i]->kv_bytes = bs_state_kv_bytes(&ss[i]->gen.st);
        ss[i]->item.batch_key = decoding(ss[i]) ? ss[i]->eng : NULL;
    }
}

void bs_session_stats(const bs_session *s, uint64_t now, bs_proto_stats *st)
{
    memset(st, 0, sizeof *st);
    st->prompt_tokens = s->prompt_tokens;
    st->generated_tokens = s->generated;
    if (s->generated > 0 && s->t_last > s->t_prefilled)
        st->tokens_per_s = s->generated / ((double)(s->t_last - s->t_prefilled) / 1e9);
    st->ttft_ms = s->t_first ? (double)(s->t_first - s->t_recv) / 1e6 : 0;
    st->total_ms = (double)(now - s->t_recv) / 1e6;
    const bs_store *store = &s->eng->store;
    int lo = s->n_min, hi = s->n_max;
    if (lo < 0)   /* no token: the prompt's N, or none at all */
        lo = hi = s->gen_ready ? s->logits_n : 0;
    st->stack_n_min = lo;
    st->stack_n_max = hi;
    st->stack_total = store->n_blocks;
    st->resident_bytes_min = (int64_t)store->resident[lo];
    st->resident_bytes_max = (int64_t)store->resident[hi];
    st->resize_events = s->resize_events;
    st->n_resizes = s->n_resizes;
    for (int i = 0; i < s->n_resizes; i++) {
        st->resizes[i].token = s->resizes[i].token;
        st->resizes[i].from_n = s->resizes[i].from;
        st->resizes[i].to_n = s->resizes[i].to;
    }
    st->seed = s->params.seed;
    st->finish_reason = s->finish;
}
