/* Command-line options of bitstackctl subcommands: "--name value", "--name=value",
 * "-n value" and bare flags, plus positional words. Unknown options are usage errors. */
#ifndef BS_OPTS_H
#define BS_OPTS_H

typedef struct {
    const char *name;   /* long name without dashes */
    char shrt;          /* short letter or 0 */
    int flag;           /* 1: takes no value */
    const char *value;  /* filled: the value, or "1" for a flag that was given */
} bs_opt;

/* Exit code for a usage error, as the README documents. */
#define BS_EXIT_USAGE 2

/* Fills opts[].value from argv; positional words go to pos (up to max_pos).
 * Returns the number of positional words, or -1 after printing the problem. */
int bs_opts_parse(int argc, char **argv, bs_opt *opts, int nopts, const char **pos, int max_pos);

const char *bs_opt_get(const bs_opt *opts, int nopts, const char *name);

/* Numeric values with range checks; print the problem and return -1 when bad. */
int bs_opt_int(const bs_opt *opts, int nopts, const char *name, long dflt, long lo, long hi, long *out);
int bs_opt_double(const bs_opt *opts, int nopts, const char *name, double dflt, double lo, double hi, double *out);

#endif
