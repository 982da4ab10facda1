/*
 * prometheus.h — a strict parser of the Prometheus text exposition format (0.0.4), for tests
 * of the metrics plugin. It refuses what Prometheus would refuse, and a little more that an
 * exporter should never write:
 *  - every line is "# HELP name text", "# TYPE name type", another "# comment", or a sample
 *    "name{label="value",...} value [timestamp]" (names [a-zA-Z_:][a-zA-Z0-9_:]*, label names
 *    [a-zA-Z_][a-zA-Z0-9_]*, label values with only the escapes \\ \" \n, values strtod-able or
 *    +Inf / -Inf / NaN); the text ends with a newline;
 *  - one TYPE per family, before any of its samples; a family's samples are contiguous; a
 *    sample's family is its name, or for a histogram the name less _bucket / _sum / _count;
 *  - a histogram's buckets per label set have increasing le, cumulative (non-decreasing)
 *    counts, end with le="+Inf", whose count equals the series' _count; _sum is present.
 * Include after check.h.
 */
#ifndef KOFKA_TEST_PROMETHEUS_H
#define KOFKA_TEST_PROMETHEUS_H

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROM_NAME 128
#define PROM_LABELS 512
#define PROM_FAMILIES 64

/** One sample line. */
typedef struct prom_sample {
    char name[PROM_NAME];       /* metric name as written */
    char labels[PROM_LABELS];   /* canonical labels without le: name=value\x1f... (unescaped) */
    char le[32];                /* the le label, "" when none */
    double value;
    int family;                 /* index into prom_doc.families */
} prom_sample;

/** A # TYPE'd family. */
typedef struct prom_family {
    char name[PROM_NAME];
    char type[16];
    int helped;                 /* a # HELP line was seen */
    int closed;                 /* another family's samples came after this one's */
} prom_family;

typedef struct prom_doc {
    prom_sample *samples;
    size_t count, cap;
    prom_family families[PROM_FAMILIES];
    size_t nfamilies;
    char error[320];            /* "line N: why" when parsing failed */
} prom_doc;

static inline void prom_free(prom_doc *d) { free(d->samples); memset(d, 0, sizeof *d); }

static inline int prom_fail(prom_doc *d, int line, const char *why, const char *at) {
    snprintf(d->error, sizeof d->error, "line %d: %s (at \"%.60s\")", line, why, at);
    return -1;
}

static inline int prom_name_char(int c, int first, int colon) {
    return isalpha(c) || c == '_' || (colon && c == ':') || (!first && isdigit(c));
}

/** Reads a metric or label name at *p into out; 0 on success. */
static inline int prom_read_name(const char **p, char *out, size_t size, int colon) {
    const char *s = *p;
    size_t n = 0;
    if (!prom_name_char((unsigned char)*s, 1, colon)) return -1;
    while (prom_name_char((unsigned char)s[n], n == 0, colon)) n++;
    if (n >= size) return -1;
    memcpy(out, s, n);
    out[n] = '\0';
    *p = s + n;
    return 0;
}

/** Parses a value: a float, +Inf, -Inf or NaN, ending at a space or the end of the line. */
static inline int prom_read_value(const char **p, double *v) {
    const char *s = *p;
    if (strncmp(s, "+Inf", 4) == 0) { *v = INFINITY; *p = s + 4; }
    else if (strncmp(s, "-Inf", 4) == 0) { *v = -INFINITY; *p = s + 4; }
    else if (strncmp(s, "NaN", 3) == 0) { *v = NAN; *p = s + 3; }
    else {
        char *end;
        if (!*s || isspace((unsigned char)*s)) return -1;
        *v = strtod(s, &end);
        if (end == s) return -1;
        *p = end;
    }
    return (**p == '\0' || **p == ' ' || **p == '\n') ? 0 : -1;
}

static inline int prom_family_of(prom_doc *d, const char *name) {
    for (size_t i = 0; i < d->nfamilies; i++)
        if (strcmp(d->families[i].name, name) == 0) return (int)i;
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    for (size_t k = 0; k < 3; k++) {
        size_t n = strlen(name), m = strlen(suffixes[k]);
        if (n <= m || strcmp(name + n - m, suffixes[k]) != 0) continue;
        for (size_t i = 0; i < d->nfamilies; i++)
            if (strlen(d->families[i].name) == n - m && strncmp(d->families[i].name, name, n - m) == 0 &&
                (strcmp(d->families[i].type, "histogram") == 0 || (k > 0 && strcmp(d->families[i].type, "summary") == 0)))
                return (int)i;
    }
    return -1;
}

static inline prom_sample *prom_find(const prom_doc *d, const char *name, const char *labels, const char *le) {
    for (size_t i = 0; i < d->count; i++)
        if (strcmp(d->samples[i].name, name) == 0 && strcmp(d->samples[i].labels, labels) == 0 &&
            strcmp(d->samples[i].le, le ? le : "") == 0)
            return &d->samples[i];
    return NULL;
}

/** Checks every histogram's buckets, in file order. */
static inline int prom_check_histograms(prom_doc *d) {
    for (size_t i = 0; i < d->count; i++) {
        prom_sample *s = &d->samples[i];
        size_t n = strlen(s->name);
        if (strcmp(d->families[s->family].type, "histogram") != 0 || n < 7 || strcmp(s->name + n - 7, "_bucket") != 0)
            continue;
        /* the first bucket of its label set: walk the set from here */
        int first = 1;
        for (size_t j = 0; j < i; j++)
            if (strcmp(d->samples[j].name, s->name) == 0 && strcmp(d->samples[j].labels, s->labels) == 0) first = 0;
        if (!first) continue;
        double le_prev = -INFINITY, count_prev = 0, inf = NAN;
        for (size_t j = i; j < d->count; j++) {
            prom_sample *b = &d->samples[j];
            if (strcmp(b->name, s->name) != 0 || strcmp(b->labels, s->labels) != 0) continue;
            if (!b->le[0]) { snprintf(d->error, sizeof d->error, "%s bucket without le", b->name); return -1; }
            double le = strcmp(b->le, "+Inf") == 0 ? INFINITY : strtod(b->le, NULL);
            if (!(le > le_prev)) { snprintf(d->error, sizeof d->error, "%s: le=\"%s\" does not increase", b->name, b->le); return -1; }
            if (b->value < count_prev) {
                snprintf(d->error, sizeof d->error, "%s: bucket le=\"%s\" (%g) is below the one before (%g): not cumulative",
                         b->name, b->le, b->value, count_prev);
                return -1;
            }
            le_prev = le;
            count_prev = b->value;
            if (isinf(le)) inf = b->value;
        }
        if (!isinf(le_prev)) { snprintf(d->error, sizeof d->error, "%s: the buckets do not end with le=\"+Inf\"", s->name); return -1; }
        char base[PROM_NAME], name[PROM_NAME + 8];
        snprintf(base, sizeof base, "%.*s", (int)(n - 7), s->name);
        snprintf(name, sizeof name, "%s_count", base);
        prom_sample *c = prom_find(d, name, s->labels, NULL);
        if (!c || c->value != inf) {
            snprintf(d->error, sizeof d->error, "%s: le=\"+Inf\" (%g) differs from %s (%g)", s->name, inf, name, c ? c->value : -1.0);
            return -1;
        }
        snprintf(name, sizeof name, "%s_sum", base);
        if (!prom_find(d, name, s->labels, NULL)) { snprintf(d->error, sizeof d->error, "%s: no %s", s->name, name); return -1; }
    }
    return 0;
}

/** Parses text into d (zero it first); 0, or -1 with d->error. */
static inline int prom_parse(const char *text, prom_doc *d) {
    int line = 0, current = -1;
    const char *p = text;
    if (!*text) return prom_fail(d, 0, "empty text", text);
    if (text[strlen(text) - 1] != '\n') return prom_fail(d, 0, "the text does not end with a newline", text);
    while (*p) {
        line++;
        const char *eol = strchr(p, '\n');
        const char *start = p;
        if (*p == '\n') { p++; continue; }
        if (*p == '#') {
            char name[PROM_NAME];
            if (strncmp(p, "# HELP ", 7) == 0 || strncmp(p, "# TYPE ", 7) == 0) {
                int help = p[2] == 'H';
                p += 7;
                if (prom_read_name(&p, name, sizeof name, 1) != 0 || *p != ' ') return prom_fail(d, line, "bad name in HELP/TYPE", start);
                p++;
                int f = -1;
                for (size_t i = 0; i < d->nfamilies; i++) if (strcmp(d->families[i].name, name) == 0) f = (int)i;
                if (help) {
                    for (const char *q = p; q < eol; q++)
                        if (*q == '\\' && q[1] != '\\' && q[1] != 'n') return prom_fail(d, line, "bad escape in HELP", start);
                    if (f >= 0 && d->families[f].helped) return prom_fail(d, line, "second HELP for a family", start);
                } else {
                    size_t n = (size_t)(eol - p);
                    char type[16];
                    if (n >= sizeof type) return prom_fail(d, line, "bad TYPE", start);
                    memcpy(type, p, n); type[n] = '\0';
                    if (strcmp(type, "counter") && strcmp(type, "gauge") && strcmp(type, "histogram") &&
                        strcmp(type, "summary") && strcmp(type, "untyped"))
                        return prom_fail(d, line, "unknown TYPE", start);
                    if (f >= 0 && d->families[f].type[0]) return prom_fail(d, line, "second TYPE for a family", start);
                    if (f < 0) {
                        if (d->nfamilies == PROM_FAMILIES) return prom_fail(d, line, "too many families", start);
                        f = (int)d->nfamilies++;
                        snprintf(d->families[f].name, PROM_NAME, "%s", name);
                    }
                    snprintf(d->families[f].type, sizeof d->families[f].type, "%s", type);
                }
                if (f < 0) {
                    if (d->nfamilies == PROM_FAMILIES) return prom_fail(d, line, "too many families", start);
                    f = (int)d->nfamilies++;
                    snprintf(d->families[f].name, PROM_NAME, "%s", name);
                }
                if (help) d->families[f].helped = 1;
            }
            p = eol + 1;
            continue;
        }
        prom_sample s;
        memset(&s, 0, sizeof s);
        if (prom_read_name(&p, s.name, sizeof s.name, 1) != 0) return prom_fail(d, line, "bad metric name", start);
        size_t used = 0;
        if (*p == '{') {
            p++;
            while (*p != '}') {
                char lname[PROM_NAME], lvalue[PROM_LABELS];
                size_t n = 0;
                if (prom_read_name(&p, lname, sizeof lname, 0) != 0) return prom_fail(d, line, "bad label name", start);
                if (p[0] != '=' || p[1] != '"') return prom_fail(d, line, "label without =\"", start);
                p += 2;
                while (*p != '"') {
                    if (*p == '\n' || !*p) return prom_fail(d, line, "unterminated label value", start);
                    char c = *p++;
                    if (c == '\\') {
                        if (*p == '\\') c = '\\';
                        else if (*p == '"') c = '"';
                        else if (*p == 'n') c = '\n';
                        else return prom_fail(d, line, "bad escape in a label value", start);
                        p++;
                    }
                    if (n + 1 >= sizeof lvalue) return prom_fail(d, line, "label value too long", start);
                    lvalue[n++] = c;
                }
                lvalue[n] = '\0';
                p++;
                if (strcmp(lname, "le") == 0) snprintf(s.le, sizeof s.le, "%.31s", lvalue);
                else {
                    int w = snprintf(s.labels + used, sizeof s.labels - used, "%s=%s\x1f", lname, lvalue);
                    if (w < 0 || (size_t)w >= sizeof s.labels - used) return prom_fail(d, line, "labels too long", start);
                    used += (size_t)w;
                }
                if (*p == ',') p++;
                else if (*p != '}') return prom_fail(d, line, "expected , or } after a label", start);
            }
            p++;
        }
        if (*p != ' ') return prom_fail(d, line, "expected a space before the value", start);
        p++;
        if (prom_read_value(&p, &s.value) != 0) return prom_fail(d, line, "bad value", start);
        if (*p == ' ') {   /* an optional timestamp (integer ms) */
            p++;
            char *end;
            (void)strtoll(p, &end, 10);
            if (end == p) return prom_fail(d, line, "bad timestamp", start);
            p = end;
        }
        if (*p != '\n') return prom_fail(d, line, "junk after the value", start);
        p++;
        s.family = prom_family_of(d, s.name);
        if (s.family < 0 || !d->families[s.family].type[0]) return prom_fail(d, line, "sample before its family's TYPE", start);
        if (d->families[s.family].closed) return prom_fail(d, line, "samples of a family are not contiguous", start);
        if (current >= 0 && current != s.family) d->families[current].closed = 1;
        current = s.family;
        if (strcmp(d->families[s.family].type, "histogram") == 0 && strstr(s.name, "_bucket") && !s.le[0])
            return prom_fail(d, line, "a histogram bucket without le", start);
        if (prom_find(d, s.name, s.labels, s.le)) return prom_fail(d, line, "a sample repeated", start);
        if (d->count == d->cap) {
            size_t cap = d->cap ? 2 * d->cap : 64;
            prom_sample *ns = realloc(d->samples, cap * sizeof *ns);
            if (!ns) return prom_fail(d, line, "out of memory", start);
            d->samples = ns;
            d->cap = cap;
        }
        d->samples[d->count++] = s;
    }
    return prom_check_histograms(d);
}

/** The value of the sample name{k1="v1",...} (label pairs given as name, value, ..., NULL; no le),
 *  or -1 when there is none. */
static inline double prom_get(const prom_doc *d, const char *name, ...) {
    char labels[PROM_LABELS] = "";
    size_t used = 0;
    va_list ap;
    va_start(ap, name);
    for (const char *k = va_arg(ap, const char *); k; k = va_arg(ap, const char *)) {
        const char *v = va_arg(ap, const char *);
        int w = snprintf(labels + used, sizeof labels - used, "%s=%s\x1f", k, v);
        if (w > 0) used += (size_t)w;
    }
    va_end(ap);
    prom_sample *s = prom_find(d, name, labels, NULL);
    return s ? s->value : -1;
}

/** The sum of every sample named name (over all its label sets). */
static inline double prom_total(const prom_doc *d, const char *name) {
    double t = 0;
    for (size_t i = 0; i < d->count; i++) if (strcmp(d->samples[i].name, name) == 0) t += d->samples[i].value;
    return t;
}

/** Reads a whole file into a malloc'd NUL-terminated string (NULL if it cannot be read). */
static inline char *prom_read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        if (r == 0) break;
        n += r;
    }
    fclose(f);
    if (buf) buf[n] = '\0';
    return buf;
}

#endif /* KOFKA_TEST_PROMETHEUS_H */
