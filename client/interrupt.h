/* Ctrl-C as something to poll. SIGINT is blocked and read from a signalfd instead, so
 * the chat can wait on the daemon's socket (or the keyboard) and on Ctrl-C at once, with
 * no signal handler and no global flag, and decide itself what each Ctrl-C means. */
#ifndef BS_CLI_INTERRUPT_H
#define BS_CLI_INTERRUPT_H

#include "kernels/err.h"

/* Blocks SIGINT on the calling thread (the main one) for the rest of the process, has
 * other threads pass it on to that one, and returns a non-blocking signalfd that
 * becomes readable on each one; -1 with e filled. SIGINT stays blocked after
 * bs_interrupt_close on purpose: a Ctrl-C pressed while a program that already chose to
 * end is on its way out must not turn a clean exit into death by signal. */
int bs_interrupt_open(bs_err *e);

/* How many Ctrl-Cs were waiting on fd; takes them off it. */
int bs_interrupt_take(int fd);

void bs_interrupt_close(int fd);

#endif
