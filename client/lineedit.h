/* Lines typed at a terminal, for chat: libedit (BSD editline) with emacs keys, a history
 * recalled with Up/Down and kept across sessions in a file, and Ctrl-C told apart from
 * Ctrl-D. Ctrl-C arrives through client/interrupt.h's fd (SIGINT blocked), which is
 * watched together with the keyboard while a line is typed. Only for a terminal on
 * standard input: input from a pipe is read as plain lines by the caller. */
#ifndef BS_CLI_LINEEDIT_H
#define BS_CLI_LINEEDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "kernels/err.h"

typedef struct bs_lineedit bs_lineedit;

typedef enum {
    BS_LINEEDIT_LINE,       /* a line was entered */
    BS_LINEEDIT_EOF,        /* Ctrl-D on an empty line, or the terminal went away */
    BS_LINEEDIT_INTERRUPT,  /* Ctrl-C: the line being typed (if any) is dropped */
} bs_lineedit_event;

/* Line editing on standard input; the prompt and the line being edited are drawn on out.
 * intr_fd: from bs_interrupt_open. history_path: the file the history is loaded from
 * (missing is fine) and saved to after each bs_lineedit_remember, or NULL for none; its
 * folder is made (0700) when missing. ~/.editrc (or $EDITRC) applies, as in every libedit
 * program. NULL with e filled when libedit cannot start. */
bs_lineedit *bs_lineedit_open(const char *prompt, FILE *out, int intr_fd, const char *history_path,
                              bs_err *e);

/* Waits for the next event. For BS_LINEEDIT_LINE, *line (*len bytes, without the
 * newline, NUL-terminated, valid until the next call) is what was entered; for
 * BS_LINEEDIT_INTERRUPT, *had_text says whether a partly typed line was dropped. */
bs_lineedit_event bs_lineedit_read(bs_lineedit *le, const char **line, size_t *len, bool *had_text);

/* Adds line to the history (Up recalls it) and saves the history file. -1 with e when the
 * file cannot be written; the line stays in this session's history, and the file is not
 * tried again (one warning, not one per line). */
int bs_lineedit_remember(bs_lineedit *le, const char *line, bs_err *e);

/* Restores the terminal and frees everything. */
void bs_lineedit_close(bs_lineedit *le);

#endif
