/* A keep-alive HTTP/1.1 load: K connections to 127.0.0.1:PORT, each sending GET PATH and
 * reading the whole answer before the next, for S seconds, from one thread (poll).
 * Prints requests per second and the latency median and 99th percentile.
 * Usage: load PORT PATH K SECONDS */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXK 256

typedef struct {
    int fd;
    char buf[8192];
    size_t len;
    double t0;
} conn;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* A whole answer in c->buf? Its length, else 0. */
static size_t complete(const conn *c)
{
    const char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t head = (size_t)(end - c->buf) + 4, body = 0;
    const char *cl = memmem(c->buf, head, "Content-Length:", 15);
    if (!cl)
        cl = memmem(c->buf, head, "content-length:", 15);
    if (!cl) {
        fprintf(stderr, "load: an answer without Content-Length (chunked?): not counted right\n");
        exit(1);
    }
    body = (size_t)strtoul(cl + 15, NULL, 10);
    return c->len >= head + body ? head + body : 0;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        printf("usage: load PORT PATH CONNECTIONS SECONDS\n");
        return argc == 2 && !strcmp(argv[1], "--help") ? 0 : 2;
    }
    int port = atoi(argv[1]), k = atoi(argv[3]);
    double secs = atof(argv[4]);
    if (k < 1 || k > MAXK)
        return fprintf(stderr, "load: 1..%d connections\n", MAXK), 2;
    char req[256];
    int rl = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", argv[2]);
    static conn cs[MAXK];
    struct pollfd pf[MAXK];
    size_t cap = 1 << 22, n_lat = 0;
    double *lat = malloc(sizeof *lat * cap);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < k; i++) {
        cs[i].fd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(cs[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(cs[i].fd, (struct sockaddr *)&sa, sizeof sa))
            return perror("connect"), 1;
        pf[i] = (struct pollfd){.fd = cs[i].fd, .events = POLLIN};
        cs[i].t0 = now_s();
        if (write(cs[i].fd, req, (size_t)rl) != rl)
            return perror("write"), 1;
    }
    double t_start = now_s(), t_end = t_start + secs;
    long done = 0;
    while (now_s() < t_end) {
        if (poll(pf, (nfds_t)k, 100) <= 0)
            continue;
        for (int i = 0; i < k; i++) {
            if (!(pf[i].revents & POLLIN))
                continue;
            conn *c = &cs[i];
            ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
            if (r <= 0)
                return fprintf(stderr, "load: connection %d closed after %ld answers\n", i, done), 1;
            c->len += (size_t)r;
            size_t whole = complete(c);
            if (!whole)
                continue;
            double t = now_s();
            if (n_lat < cap)
                lat[n_lat++] = t - c->t0;
            done++;
            memmove(c->buf, c->buf + whole, c->len - whole);
            c->len -= whole;
            c->t0 = t;
            if (write(c->fd, req, (size_t)rl) != rl)
                return perror("write"), 1;
        }
    }
    double el = now_s() - t_start;
    qsort(lat, n_lat, sizeof *lat, cmp);
    printf("%ld requests in %.2f s: %.0f req/s, latency median %.1f us, p99 %.1f us (%d connections)\n", done, el,
           done / el, n_lat ? lat[n_lat / 2] * 1e6 : 0, n_lat ? lat[(size_t)(n_lat * 0.99)] * 1e6 : 0, k);
    for (int i = 0; i < k; i++)
        close(cs[i].fd);
    free(lat);
    return 0;
}
