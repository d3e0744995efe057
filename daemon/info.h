/* The daemon's answers about itself, as JSON, for every front end: status, metrics, and
 * the budget (read, or changed by a request). Loop thread. */
#ifndef BS_INFO_H
#define BS_INFO_H

#include <jansson.h>

#include "daemon/server.h"

json_t *bs_info_status(bs_server *srv);
json_t *bs_info_metrics(bs_server *srv);

/* The same metrics in Prometheus' text format (counters as bitstack_*_total), appended to
 * b; -1 on OOM. */
int bs_info_prometheus(bs_server *srv, bs_proto_buf *b);

/* Applies the budget a BUDGET request sets (if any) and returns the budget now: the
 * daemon's, or with r->model that model's own. NULL with *code and e filled when the
 * request's budget is not one the models can take, or names no model. who: for the log. */
json_t *bs_info_budget(bs_server *srv, const bs_request *r, const char *who, bs_proto_code *code, bs_err *e);

#endif
