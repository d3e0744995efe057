#include "client/interrupt.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

/* SIGINT's handler, which only ever runs on a thread other than the main one: the
 * process has threads that were started before main with nothing blocked (OpenBLAS's
 * pool, from a library constructor), and the terminal's SIGINT goes to any thread that
 * does not block it. It is sent on to the main thread, which blocks it, so the signalfd
 * sees it; the main thread's id is the process id. */
static void to_main_thread(int sig)
{
    int saved = errno;
    if (gettid() != getpid())
        tgkill(getpid(), getpid(), sig);
    errno = saved;
}

int bs_interrupt_open(bs_err *e)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL))
        return bs_err_set(e, "cannot block SIGINT: %s", strerror(errno));
    struct sigaction sa = {.sa_handler = to_main_thread, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL))
        return bs_err_set(e, "cannot handle SIGINT: %s", strerror(errno));
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return bs_err_set(e, "signalfd: %s", strerror(errno));
    return fd;
}

int bs_interrupt_take(int fd)
{
    int n = 0;
    struct signalfd_siginfo si;
    for (;;) {
        ssize_t k = read(fd, &si, sizeof si);
        if (k == (ssize_t)sizeof si)
            n++;
        else if (k < 0 && errno == EINTR)
            continue;
        else
            return n;   /* EAGAIN: none left */
    }
}

void bs_interrupt_close(int fd)
{
    if (fd >= 0)
        close(fd);
}
