#include "client/lineedit.h"

#include <errno.h>
#include <histedit.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wchar.h>

#include "client/interrupt.h"

#define BS_LINEEDIT_HISTORY 1000   /* lines kept, in memory and in the file */

struct bs_lineedit {
    EditLine *el;
    History *hist;
    int intr_fd;
    char prompt[64];
    char *path;             /* the history file; NULL: none (or it failed once) */
    bool interrupted;       /* the last read ended with Ctrl-C ... */
    bool had_text;          /* ... while the line held text */
    char *line;             /* a copy of the last line entered, without its newline */
    size_t cap;
};

static char *prompt_of(EditLine *el)
{
    bs_lineedit *le = NULL;
    el_get(el, EL_CLIENTDATA, &le);
    return le->prompt;
}

/* libedit's character source. Its own reads would sleep through a blocked SIGINT, so
 * this waits on the keyboard and the Ctrl-C fd at once. A Ctrl-C ends el_gets as a read
 * error, which is told apart from a real one by le->interrupted. */
static int getc_of(EditLine *el, wchar_t *wc)
{
    bs_lineedit *le = NULL;
    el_get(el, EL_CLIENTDATA, &le);
    char buf[MB_LEN_MAX];
    size_t n = 0;
    for (;;) {
        struct pollfd p[2] = {{.fd = STDIN_FILENO, .events = POLLIN},
                              {.fd = le->intr_fd, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if ((p[1].revents & POLLIN) && bs_interrupt_take(le->intr_fd) > 0) {
            const LineInfo *li = el_line(el);
            le->interrupted = true;
            le->had_text = li->lastchar > li->buffer;
            errno = EINTR;
            return -1;
        }
        if (!p[0].revents)
            continue;
        ssize_t k = read(STDIN_FILENO, buf + n, 1);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return k == 0 ? 0 : -1;
        n++;
        /* one byte at a time until a whole character (UTF-8 has no shift state) */
        mbstate_t st;
        memset(&st, 0, sizeof st);
        size_t r = mbrtowc(wc, buf, n, &st);
        if (r == (size_t)-2 && n < sizeof buf)
            continue;
        if (r == (size_t)-1 || r == (size_t)-2) {
            n = 0;      /* not a character in this locale: dropped, as libedit does */
            continue;
        }
        return 1;
    }
}

/* mkdir -p of the folders above path, private ones: history is the user's own words. */
static void make_parents(const char *path)
{
    char dir[PATH_MAX];
    size_t n = strlen(path);
    if (n >= sizeof dir)
        return;
    memcpy(dir, path, n + 1);
    for (char *s = dir + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        mkdir(dir, 0700);   /* EEXIST is the usual case; a real failure shows at save */
        *s = '/';
    }
}

bs_lineedit *bs_lineedit_open(const char *prompt, FILE *out, int intr_fd, const char *history_path,
                              bs_err *e)
{
    bs_lineedit *le = calloc(1, sizeof *le);
    if (!le) {
        bs_err_set(e, "out of memory");
        return NULL;
    }
    le->intr_fd = intr_fd;
    snprintf(le->prompt, sizeof le->prompt, "%s", prompt);
    if (history_path && !(le->path = strdup(history_path))) {
        bs_err_set(e, "out of memory");
        bs_lineedit_close(le);
        return NULL;
    }
    HistEvent ev;
    le->hist = history_init();
    le->el = el_init("bitstackctl", stdin, out, stderr);
    if (!le->hist || !le->el) {
        bs_err_set(e, "cannot start line editing (libedit)");
        bs_lineedit_close(le);
        return NULL;
    }
    history(le->hist, &ev, H_SETSIZE, BS_LINEEDIT_HISTORY);
    history(le->hist, &ev, H_SETUNIQUE, 1);
    if (le->path)
        history(le->hist, &ev, H_LOAD, le->path);   /* none yet on the first run */
    el_set(le->el, EL_CLIENTDATA, le);
    el_set(le->el, EL_EDITOR, "emacs");
    el_set(le->el, EL_PROMPT, prompt_of);
    el_set(le->el, EL_HIST, history, le->hist);
    el_set(le->el, EL_GETCFN, getc_of);
    /* No EL_SIGNAL: libedit's handlers would take SIGINT too, on whichever thread it
     * lands, and put the terminal back in cooked mode mid-line. A resize is picked up at
     * the next prompt (el_gets measures the terminal each time). */
    el_source(le->el, NULL);
    return le;
}

bs_lineedit_event bs_lineedit_read(bs_lineedit *le, const char **line, size_t *len, bool *had_text)
{
    le->interrupted = le->had_text = false;
    int n = 0;
    const char *s = el_gets(le->el, &n);
    if (le->interrupted) {
        *had_text = le->had_text;
        return BS_LINEEDIT_INTERRUPT;
    }
    if (!s || n <= 0)
        return BS_LINEEDIT_EOF;
    size_t k = (size_t)n;
    if (k > 0 && s[k - 1] == '\n')
        k--;
    if (k + 1 > le->cap) {
        char *t = realloc(le->line, k + 1);
        if (!t)
            return BS_LINEEDIT_EOF;
        le->line = t;
        le->cap = k + 1;
    }
    memcpy(le->line, s, k);
    le->line[k] = 0;
    *line = le->line;
    *len = k;
    return BS_LINEEDIT_LINE;
}

int bs_lineedit_remember(bs_lineedit *le, const char *line, bs_err *e)
{
    HistEvent ev;
    history(le->hist, &ev, H_ENTER, line);
    if (!le->path)
        return 0;
    make_parents(le->path);
    if (history(le->hist, &ev, H_SAVE, le->path) < 0) {
        int err = errno;
        bs_err_set(e, "cannot save the line history in %s: %s", le->path,
                   err ? strerror(err) : "libedit failed");
        free(le->path);
        le->path = NULL;
        return -1;
    }
    return 0;
}

void bs_lineedit_close(bs_lineedit *le)
{
    if (!le)
        return;
    if (le->el)
        el_end(le->el);
    if (le->hist)
        history_end(le->hist);
    free(le->path);
    free(le->line);
    free(le);
}
