/* A bounded load loop for the hello servers (bench/http): CONNS threads, each sends REQS
 * requests to 127.0.0.1:PORT, one at a time, on one keep-alive connection (or a new
 * connection per request with "close"), and reads each whole response. Prints requests per
 * second and the median and 99th percentile latency.
 * usage: load PORT CONNS REQS [close] */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int port, reqs;
static bool fresh;
static double *lat;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        perror("connect");
        exit(1);
    }
    return fd;
}

/* One response: headers, then Content-Length bytes of body. */
static void read_response(int fd)
{
    char buf[4096];
    size_t len = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (n <= 0) {
            fprintf(stderr, "the server closed the connection\n");
            exit(1);
        }
        len += (size_t)n;
        buf[len] = '\0';
        char *h = strstr(buf, "\r\n\r\n");
        if (!h)
            continue;
        char *cl = strcasestr(buf, "\r\ncontent-length:");
        size_t want = cl ? strtoul(cl + 17, NULL, 10) : 0;
        if (len - (size_t)(h + 4 - buf) >= want)
            return;
    }
}

static void *worker(void *arg)
{
    double *my = arg;
    const char *req = fresh ? "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" : "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    size_t rl = strlen(req);
    int fd = fresh ? -1 : dial();
    for (int i = 0; i < reqs; i++) {
        double t0 = now();
        if (fresh)
            fd = dial();
        if (send(fd, req, rl, MSG_NOSIGNAL) != (ssize_t)rl) {
            perror("send");
            exit(1);
        }
        read_response(fd);
        if (fresh)
            close(fd);
        my[i] = now() - t0;
    }
    if (!fresh)
        close(fd);
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return fprintf(stderr, "usage: load PORT CONNS REQS [close]\n"), 2;
    port = atoi(argv[1]);
    int conns = atoi(argv[2]);
    reqs = atoi(argv[3]);
    fresh = argc > 4 && !strcmp(argv[4], "close");
    lat = malloc(sizeof *lat * (size_t)conns * (size_t)reqs);
    pthread_t *t = malloc(sizeof *t * (size_t)conns);
    double t0 = now();
    for (int i = 0; i < conns; i++)
        pthread_create(&t[i], NULL, worker, lat + (size_t)i * (size_t)reqs);
    for (int i = 0; i < conns; i++)
        pthread_join(t[i], NULL);
    double s = now() - t0;
    size_t n = (size_t)conns * (size_t)reqs;
    qsort(lat, n, sizeof *lat, cmp);
    printf("%d conns x %d requests%s: %.0f req/s, median %.1f us, p99 %.1f us\n", conns, reqs,
           fresh ? " (a connection each)" : " (keep-alive)", n / s, lat[n / 2] * 1e6, lat[n * 99 / 100] * 1e6);
    free(t);
    free(lat);
    return 0;
}
