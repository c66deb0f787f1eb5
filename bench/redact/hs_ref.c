/*
 * Hyperscan as a reference for the redaction benchmark (bench/redact/run.sh).
 *
 * The anchor is "Hyperscan runs ~100 rules at several GB/s". This measures, on the same
 * corpus and machine as our engine, what Hyperscan (Debian's libhs, fat runtime: it picks the
 * AVX2/AVX-512 code itself) does with
 *   - our engine's keyword set: caseless literals, one report per keyword (HS_FLAG_SINGLEMATCH),
 *     which is all our keyword pass produces (which rules a line opens);
 *   - our 150 rule regexes, in prefilter mode (HS_FLAG_PREFILTER: Hyperscan may approximate a
 *     construct it cannot do exactly and report a superset, which only favours it);
 * each scanned line by line (lines split with memchr, as our pipeline does) and as one buffer.
 * Search only: nothing is validated, fingerprinted or rewritten.
 *
 * Usage: hs_ref KEYWORDS_FILE PATTERNS_FILE CORPUS_FILE   (one keyword / regex per line)
 * Prints one JSON object. Throughput is MiB per CPU second of the scanning thread, best of 3
 * runs of >= 0.5 s each, compile time excluded.
 */
#include <hs/hs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    exit(2);
  }
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  rewind(f);
  char *b = malloc(*n + 1);
  if (!b || fread(b, 1, *n, f) != *n) {
    fprintf(stderr, "%s: read failed\n", path);
    exit(2);
  }
  b[*n] = 0;
  fclose(f);
  return b;
}

static long hits;
static int on_match(unsigned id, unsigned long long from, unsigned long long to, unsigned flags,
                    void *ctx) {
  (void)id, (void)from, (void)to, (void)flags, (void)ctx;
  hits++;
  return 0;
}

/* Compiles every line of `file` as an expression; those Hyperscan refuses are counted and left
 * out. `literal`: escape everything but [a-z0-9] so the keyword is matched as written. */
static hs_database_t *compile(const char *file, int literal, int *total, int *compiled) {
  size_t n;
  char *text = slurp(file, &n);
  const char **exprs = calloc(n + 1, sizeof *exprs);
  unsigned *flags = calloc(n + 1, sizeof *flags), *ids = calloc(n + 1, sizeof *ids);
  int count = 0, ok = 0;
  char *save = NULL;
  for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
    char *e = malloc(strlen(l) * 4 + 1), *o = e;
    unsigned f;
    if (literal) {
      for (const char *c = l; *c; c++) {
        if ((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9'))
          *o++ = *c;
        else
          o += sprintf(o, "\\x%02x", (unsigned char)*c);
      }
      *o = 0;
      f = HS_FLAG_CASELESS | HS_FLAG_SINGLEMATCH;
    } else {
      strcpy(e, l);
      f = HS_FLAG_PREFILTER | HS_FLAG_SINGLEMATCH | HS_FLAG_ALLOWEMPTY;
    }
    count++;
    hs_database_t *db;
    hs_compile_error_t *err;
    if (hs_compile(e, f, HS_MODE_BLOCK, NULL, &db, &err) != HS_SUCCESS) {
      fprintf(stderr, "hs_ref: %s line %d left out: %s\n", file, count, err->message);
      hs_free_compile_error(err);
      continue;
    }
    hs_free_database(db);
    exprs[ok] = e;
    flags[ok] = f;
    ids[ok] = (unsigned)ok;
    ok++;
  }
  hs_database_t *db;
  hs_compile_error_t *err;
  if (hs_compile_multi(exprs, flags, ids, (unsigned)ok, HS_MODE_BLOCK, NULL, &db, &err) !=
      HS_SUCCESS) {
    fprintf(stderr, "hs_ref: %s: %s\n", file, err->message);
    exit(1);
  }
  *total = count;
  *compiled = ok;
  return db;
}

/* MiB/s of one scan mode: per line (`per_line`) or the whole corpus in one call. */
static double measure(hs_database_t *db, const char *data, size_t len, int per_line) {
  hs_scratch_t *s = NULL;
  if (hs_alloc_scratch(db, &s) != HS_SUCCESS) {
    fprintf(stderr, "hs_ref: no scratch\n");
    exit(1);
  }
  double best = 1e300;
  for (int run = 0; run < 3; run++) {
    double t = cpu();
    int reps = 0;
    do {
      hits = 0;
      if (per_line) {
        const char *p = data, *end = data + len;
        while (p < end) {
          const char *nl = memchr(p, '\n', (size_t)(end - p));
          if (!nl)
            nl = end;
          hs_scan(db, p, (unsigned)(nl - p), 0, s, on_match, NULL);
          p = nl + 1;
        }
      } else {
        hs_scan(db, data, (unsigned)len, 0, s, on_match, NULL);
      }
      reps++;
    } while (cpu() - t < 0.5);
    double d = (cpu() - t) / reps;
    if (d < best)
      best = d;
  }
  hs_free_scratch(s);
  return (double)len / 1048576.0 / best;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: hs_ref KEYWORDS_FILE PATTERNS_FILE CORPUS_FILE\n");
    return 2;
  }
  if (hs_valid_platform() != HS_SUCCESS) {
    fprintf(stderr, "hs_ref: this CPU cannot run Hyperscan\n");
    return 1;
  }
  size_t len;
  char *data = slurp(argv[3], &len);
  int kw_total, kw_ok, re_total, re_ok;
  hs_database_t *kw = compile(argv[1], 1, &kw_total, &kw_ok);
  hs_database_t *re = compile(argv[2], 0, &re_total, &re_ok);
  double kw_line = measure(kw, data, len, 1);
  double kw_buf = measure(kw, data, len, 0);
  double re_line = measure(re, data, len, 1);
  double re_buf = measure(re, data, len, 0);
  printf("{\"version\": \"%s\", \"keywords\": %d, \"keywords_compiled\": %d, "
         "\"keywords_line_mib_s\": %.1f, \"keywords_buffer_mib_s\": %.1f, "
         "\"regexes\": %d, \"regexes_compiled\": %d, "
         "\"regexes_line_mib_s\": %.1f, \"regexes_buffer_mib_s\": %.1f}\n",
         hs_version(), kw_total, kw_ok, kw_line, kw_buf, re_total, re_ok, re_line, re_buf);
  return 0;
}
