/* bs-fake-daemon: a stand-in for a bitstackd that resizes live, for bitstackctl's tests
 * while the real one is being written. It answers status with a canned result, budget
 * with the mode the request asked for, logs every request line as received, and goes
 * away (closes and exits) after a number of status answers, so a watching client sees
 * its daemon leave.
 *
 * Usage: bs-fake-daemon SOCKET STATUS.json LOG MAX_STATUS
 * It creates SOCKET, serves one connection at a time, and removes SOCKET when it exits. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "proto/proto.h"

/* The answer to a budget request: the mode it implies and the bounds as sent. */
static json_t *budget_result(const bs_request *r)
{
    json_t *o = json_object();
    const char *mode = "auto", *mn = "min", *mx = "max";
    if (r->has_min && r->has_max && !strcmp(r->min.text, r->max.text))
        mode = "fixed";
    if (!r->has_auto && !r->has_min && !r->has_max)
        mode = "auto";
    if (r->has_min)
        mn = r->min.text;
    if (r->has_max)
        mx = r->max.text;
    json_object_set_new(o, "mode", json_string(mode));
    json_object_set_new(o, "min", json_string(mn));
    json_object_set_new(o, "max", json_string(mx));
    json_object_set_new(o, "min_bytes", json_integer(65536));
    json_object_set_new(o, "max_bytes", json_integer(1048576));
    json_object_set_new(o, "target_bytes", json_integer(524288));
    json_object_set_new(o, "stack_n", json_integer(120));
    json_object_set_new(o, "resident_bytes", json_integer(500000));
    return o;
}

static int send_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        s += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Serves one connection; returns how many status requests it answered. */
static long serve(int fd, const json_t *status, FILE *log, long left)
{
    char buf[65536];
    size_t have = 0;
    long answered = 0;
    while (answered < left) {
        ssize_t k = recv(fd, buf + have, sizeof buf - have - 1, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        have += (size_t)k;
        char *nl;
        while (answered < left && (nl = memchr(buf, '\n', have))) {
            size_t len = (size_t)(nl - buf);
            fprintf(log, "%.*s\n", (int)len, buf);
            fflush(log);
            bs_request r;
            bs_proto_error pe;
            bs_proto_buf out = {0};
            bs_err e;
            if (bs_proto_parse_request(buf, len, NULL, &r, &pe)) {
                bs_proto_encode_error(&out, &pe.id, pe.code, pe.message, &e);
            } else if (r.op == BS_OP_STATUS) {
                bs_proto_encode_result(&out, &r.id, status, &e);
                answered++;
            } else if (r.op == BS_OP_BUDGET) {
                json_t *o = budget_result(&r);
                bs_proto_encode_result(&out, &r.id, o, &e);
                json_decref(o);
            } else if (r.op != BS_OP_NONE) {
                bs_proto_encode_error(&out, &r.id, BS_PERR_UNKNOWN_OP, "not in the fake", &e);
            }
            bs_request_free(&r);
            int bad = out.len && send_all(fd, out.data, out.len);
            bs_proto_buf_free(&out);
            memmove(buf, nl + 1, have - len - 1);
            have -= len + 1;
            if (bad)
                return answered;
        }
        if (have == sizeof buf - 1)
            break;
    }
    return answered;
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--help")) {
        printf("usage: bs-fake-daemon SOCKET STATUS.json LOG MAX_STATUS\n");
        return 0;
    }
    if (argc != 5) {
        fprintf(stderr, "usage: bs-fake-daemon SOCKET STATUS.json LOG MAX_STATUS\n");
        return 2;
    }
    json_error_t je;
    json_t *status = json_load_file(argv[2], 0, &je);
    FILE *log = fopen(argv[3], "a");
    long left = atol(argv[4]);
    if (!status || !log) {
        fprintf(stderr, "bs-fake-daemon: cannot read %s or open %s\n", argv[2], argv[3]);
        return 1;
    }
    int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (ls < 0 || strlen(argv[1]) >= sizeof a.sun_path) {
        fprintf(stderr, "bs-fake-daemon: bad socket path\n");
        return 1;
    }
    strcpy(a.sun_path, argv[1]);
    unlink(argv[1]);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 8)) {
        perror("bs-fake-daemon: bind");
        return 1;
    }
    while (left > 0) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        left -= serve(fd, status, log, left);
        close(fd);
    }
    unlink(argv[1]);
    close(ls);
    fclose(log);
    json_decref(status);
    return 0;
}
