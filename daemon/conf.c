#include "daemon/conf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

bool bs_conf_name_ok(const char *name)
{
    return bs_proto_model_name_ok(name, strlen(name), NULL);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* One "key = value" line into the section's spec. */
static int set_key(bs_served_spec *sp, const char *key, const char *val, const char *dir, int line, bs_err *e)
{
    if (!strcmp(key, "store") || !strcmp(key, "source")) {
        if (!*val)
            return bs_err_set(e, "line %d: %s: empty", line, key);
        char *dst = key[1] == 't' ? sp->path : sp->source;
        int w = val[0] == '/' || !dir || !dir[0] ? snprintf(dst, PATH_MAX, "%s", val)
                                                  : snprintf(dst, PATH_MAX, "%s/%s", dir, val);
        if (w < 0 || w >= PATH_MAX)
            return bs_err_set(e, "line %d: %s: the path is too long", line, key);
        return 0;
    }
    if (!strcmp(key, "weight")) {
        char *end;
        errno = 0;
        double w = strtod(val, &end);
        if (errno || end == val || *end || !(w > 0 && w <= 1e6))
            return bs_err_set(e, "line %d: weight: expected a number in (0, 1e6], got '%s'", line, val);
        sp->weight = w;
        return 0;
    }
    if (!strcmp(key, "min") || !strcmp(key, "max")) {
        bool is_min = key[1] == 'i';
        bs_err be;
        if (bs_proto_parse_budget(val, is_min ? &sp->min : &sp->max, &be))
            return bs_err_set(e, "line %d: %s: %s", line, key, be.msg);
        *(is_min ? &sp->has_min : &sp->has_max) = true;
        return 0;
    }
    return bs_err_set(e, "line %d: unknown key '%s' (expected store, source, weight, min or max)", line, key);
}

static int end_section(const bs_served_spec *sp, int line, bs_err *e)
{
    if (!sp->path[0] && !sp->source[0])
        return bs_err_set(e, "line %d: model %s has no store (or source)", line, sp->name);
    if (sp->path[0] && sp->source[0])
        return bs_err_set(e, "line %d: model %s has a store and a source: give one", line, sp->name);
    return 0;
}

int bs_conf_parse(const char *text, const char *dir, bs_served_spec *out, int max, int *n, bs_err *e)
{
    *n = 0;
    char *copy = strdup(text);
    if (!copy)
        return bs_err_set(e, "out of memory");
    int rc = 0, line = 0, section_line = 0;
    bs_served_spec *cur = NULL;
    for (char *p = copy, *next; p && !rc; p = next) {
        next = strchr(p, '\n');
        if (next)
            *next++ = '\0';
        line++;
        char *s = trim(p);
        if (!*s || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            if (cur && (rc = end_section(cur, section_line, e)))
                break;
            char *close = strchr(s, ']');
            if (!close || *trim(close + 1)) {
                rc = bs_err_set(e, "line %d: expected [model NAME]", line);
                break;
            }
            *close = '\0';
            char *inner = trim(s + 1);
            if (strncmp(inner, "model", 5) || (inner[5] != ' ' && inner[5] != '\t')) {
                rc = bs_err_set(e, "line %d: unknown section [%s] (expected [model NAME])", line, inner);
                break;
            }
            char *name = trim(inner + 5);
            if (!bs_conf_name_ok(name)) {
                rc = bs_err_set(e, "line %d: model name '%s': 1..%d letters, digits or . _ - : + /", line, name,
                                BS_PROTO_MODEL_MAX);
                break;
            }
            for (int i = 0; i < *n; i++)
                if (!strcmp(out[i].name, name)) {
                    rc = bs_err_set(e, "line %d: model %s is listed twice", line, name);
                    break;
                }
            if (rc)
                break;
            if (*n == max) {
                rc = bs_err_set(e, "line %d: at most %d models", line, max);
                break;
            }
            cur = &out[(*n)++];
            memset(cur, 0, sizeof *cur);
            snprintf(cur->name, sizeof cur->name, "%s", name);
            cur->weight = 1;
            cur->from_config = true;
            section_line = line;
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = bs_err_set(e, "line %d: expected key = value", line);
            break;
        }
        if (!cur) {
            rc = bs_err_set(e, "line %d: a key outside any [model NAME] section", line);
            break;
        }
        *eq = '\0';
        rc = set_key(cur, trim(s), trim(eq + 1), dir, line, e);
    }
    if (!rc && cur)
        rc = end_section(cur, section_line, e);
    free(copy);
    return rc;
}

int bs_conf_load(const char *path, bs_served_spec *out, int max, int *n, bs_err *e)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return bs_err_set(e, "%s: %s", path, strerror(errno));
    char *text = NULL;
    size_t len = 0, cap = 0;
    char buf[4096];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        if (len + got + 1 > 1 << 20) {
            free(text);
            fclose(f);
            return bs_err_set(e, "%s: larger than 1 MiB", path);
        }
        if (len + got + 1 > cap) {
            cap = (len + got + 1) * 2;
            char *t = realloc(text, cap);
            if (!t) {
                free(text);
                fclose(f);
                return bs_err_set(e, "out of memory");
            }
            text = t;
        }
        memcpy(text + len, buf, got);
        len += got;
        text[len] = '\0';
    }
    bool failed = ferror(f);
    fclose(f);
    if (failed) {
        free(text);
        return bs_err_set(e, "%s: read error", path);
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    int rc = bs_conf_parse(text ? text : "", dir, out, max, n, e);
    free(text);
    if (rc) {
        char msg[sizeof e->msg];
        snprintf(msg, sizeof msg, "%s", e->msg);
        bs_err_set(e, "%s: %s", path, msg);
    }
    return rc;
}
