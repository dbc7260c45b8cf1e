/* bncli_audit.h: the file side of `bncli audit --cmd` for C and C++ programs, in one header.
 *
 * bncli runs the program once per case with one argument, a folder holding x.npy, dy.npy and
 * params.json; the program writes y, dx, dw, db there. This header reads and writes those
 * files, so that a --cmd program is its kernel plus a dozen lines:
 *
 *     #include "bncli_audit.h"
 *
 *     int main(int argc, char **argv) {
 *         bncli_case c = bncli_open(argc, argv);          // params.json: shape, eps, weight, bias
 *         double *x = bncli_read_double(&c, "x"), *dy = bncli_read_double(&c, "dy");
 *         double *y = bncli_new_double(c.size), *dx = bncli_new_double(c.size);
 *         double *dw = bncli_new_double(c.features), *db = bncli_new_double(c.features);
 *         my_kernel(x, dy, c.weight, c.bias, c.eps, c.count, c.features, y, dx, dw, db);
 *         bncli_write_double(&c, "y", y);                 // y, dx: x's shape; dw, db: one per feature
 *         ...
 *     }
 *
 * Element (sample i, feature j) of x, dy, y and dx sits at bncli_index(&c, i, j) whatever the
 * layout (nc, nchw, nhwc); i runs over c.count samples (N, or N·H·W), j over c.features.
 * Arrays are read as float or double whatever the case's dtype (c.is_float32 says which it is).
 *
 * Every function here either succeeds or prints one line on stderr and exits with status 1:
 * bncli reports that line as the case's ERROR. C99, also C++; header-only (all static inline);
 * little-endian hosts (x86, ARM). Reads .npy versions 1 to 3 of '<f4' or '<f8' in C order.
 */
#ifndef BNCLI_AUDIT_H
#define BNCLI_AUDIT_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BNCLI_MAX_DIMS 4

typedef struct {
    const char *dir;
    char name[64];   /* the case, e.g. "unit" */
    char dtype[16];  /* "float64" or "float32" */
    char layout[8];  /* "nc", "nchw" or "nhwc" */
    int is_float32;
    int ndim;
    long shape[BNCLI_MAX_DIMS];
    long count;    /* samples per feature: N for nc, N·H·W for nchw and nhwc */
    long features; /* C */
    long size;     /* count · features, the elements of x */
    long plane;    /* nchw: H·W, a channel's samples lie in planes of that many; 0 otherwise */
    double eps;
    double *weight, *bias; /* one value per feature */
} bncli_case;

#if defined(__GNUC__) || defined(__clang__)
#define BNCLI_FAILS __attribute__((noreturn, format(printf, 1, 2)))
#else
#define BNCLI_FAILS
#endif

static inline BNCLI_FAILS void bncli_fail(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fputs("bncli_audit.h: ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
    exit(1);
}

static inline void *bncli_alloc(size_t bytes) {
    void *memory = malloc(bytes ? bytes : 1);
    if (!memory) bncli_fail("out of memory (%lu bytes)", (unsigned long)bytes);
    return memory;
}

static inline double *bncli_new_double(long length) { return (double *)bncli_alloc(sizeof(double) * length); }
static inline float *bncli_new_float(long length) { return (float *)bncli_alloc(sizeof(float) * length); }

/* Offset of sample i, feature j in an array of the case's layout. */
static inline long bncli_index(const bncli_case *c, long i, long j) {
    if (c->plane) return (i / c->plane * c->features + j) * c->plane + i % c->plane;
    return i * c->features + j; /* nc, nhwc: the feature varies fastest */
}

static inline FILE *bncli_file(const bncli_case *c, const char *file, const char *mode) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", c->dir, file);
    FILE *f = fopen(path, mode);
    if (!f) bncli_fail("cannot open %s: %s", path, strerror(errno));
    return f;
}


/* ------------------------------------------------------------------ params.json
 * A parser for the one flat object bncli writes; its strings, numbers and arrays of numbers. */

static inline const char *bncli_skip_space(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    return p;
}

static inline const char *bncli_json_string(const char *p, char *out, size_t room, const char *key) {
    size_t length = 0;
    if (*p != '"') bncli_fail("params.json: \"%s\": expected a string at '%.20s'", key, p);
    for (p++; *p != '"'; p++) {
        if (*p == '\0') bncli_fail("params.json: \"%s\": a string is not closed", key);
        if (*p == '\\' && p[1]) p++; /* bncli's names are plain ASCII: an escape keeps its character */
        if (length + 1 < room) out[length++] = *p;
    }
    out[length] = '\0';
    return p + 1;
}

static inline const char *bncli_json_number(const char *p, double *out, const char *key) {
    char *end;
    *out = strtod(p, &end); /* JSON's numbers are a subset of strtod's: 1e-05, -0.5, 4.9e-324 */
    if (end == p) bncli_fail("params.json: \"%s\": expected a number at '%.20s'", key, p);
    return end;
}

/* An array of numbers into *out (allocated), its length into *length. */
static inline const char *bncli_json_numbers(const char *p, double **out, long *length, const char *key) {
    long room = 16;
    if (*p != '[') bncli_fail("params.json: \"%s\": expected an array at '%.20s'", key, p);
    *out = bncli_new_double(room);
    *length = 0;
    for (p = bncli_skip_space(p + 1); *p != ']';) {
        if (*length == room) {
            double *grown = bncli_new_double(room *= 2);
            memcpy(grown, *out, sizeof(double) * *length);
            free(*out);
            *out = grown;
        }
        p = bncli_skip_space(bncli_json_number(p, *out + (*length)++, key));
        if (*p == ',') p = bncli_skip_space(p + 1);
        else if (*p != ']') bncli_fail("params.json: \"%s\": expected ',' or ']' at '%.20s'", key, p);
    }
    return p + 1;
}

/* Past a value this header does not use, to the ',' or '}' that ends it. */
static inline const char *bncli_json_skip(const char *p, const char *key) {
    char ignored[2];
    for (int depth = 0; *p; p++) {
        if (*p == '"') p = bncli_json_string(p, ignored, sizeof ignored, key) - 1;
        else if (*p == '[' || *p == '{') depth++;
        else if ((*p == ']' || *p == '}') && depth-- == 0) break;
        else if (*p == ',' && depth == 0) break;
    }
    return p;
}

static inline char *bncli_slurp(FILE *f) {
    size_t size = 0, room = 4096, got;
    char *text = (char *)bncli_alloc(room);
    while ((got = fread(text + size, 1, room - size - 1, f)) > 0) {
        size += got;
        if (size + 1 == room) {
            char *grown = (char *)bncli_alloc(room *= 2);
            memcpy(grown, text, size);
            free(text);
            text = grown;
        }
    }
    fclose(f);
    text[size] = '\0';
    return text;
}

static inline void bncli_parse_params(bncli_case *c, const char *json) {
    double *shape = NULL;
    long dims = 0, weights = -1, biases = -1;
    int has_eps = 0;
    const char *p = bncli_skip_space(json);
    if (*p != '{') bncli_fail("params.json: not a JSON object");
    for (p = bncli_skip_space(p + 1); *p != '}'; p = bncli_skip_space(p)) {
        char key[64];
        p = bncli_skip_space(bncli_json_string(p, key, sizeof key, "(a key)"));
        if (*p != ':') bncli_fail("params.json: expected ':' after \"%s\"", key);
        p = bncli_skip_space(p + 1);
        if (!strcmp(key, "case")) p = bncli_json_string(p, c->name, sizeof c->name, key);
        else if (!strcmp(key, "dtype")) p = bncli_json_string(p, c->dtype, sizeof c->dtype, key);
        else if (!strcmp(key, "layout")) p = bncli_json_string(p, c->layout, sizeof c->layout, key);
        else if (!strcmp(key, "shape")) p = bncli_json_numbers(p, &shape, &dims, key);
        else if (!strcmp(key, "weight")) p = bncli_json_numbers(p, &c->weight, &weights, key);
        else if (!strcmp(key, "bias")) p = bncli_json_numbers(p, &c->bias, &biases, key);
        else if (!strcmp(key, "eps")) p = bncli_json_number(p, &c->eps, key), has_eps = 1;
        else p = bncli_json_skip(p, key);
        p = bncli_skip_space(p);
        if (*p == ',') p = bncli_skip_space(p + 1);
        else if (*p != '}') bncli_fail("params.json: expected ',' or '}' after \"%s\"", key);
    }
    if (!shape || weights < 0 || biases < 0 || !has_eps || !c->dtype[0] || !c->layout[0])
        bncli_fail("params.json: needs dtype, layout, shape, eps, weight and bias");

    c->is_float32 = !strcmp(c->dtype, "float32");
    if (!c->is_float32 && strcmp(c->dtype, "float64"))
        bncli_fail("params.json: dtype \"%s\"; this header reads float64 and float32", c->dtype);
    int four_d = !strcmp(c->layout, "nchw") || !strcmp(c->layout, "nhwc");
    if (!four_d && strcmp(c->layout, "nc")) bncli_fail("params.json: unknown layout \"%s\"", c->layout);
    if (dims != (four_d ? 4 : 2))
        bncli_fail("params.json: a shape of %ld dimensions for layout %s", dims, c->layout);
    c->ndim = (int)dims;
    c->size = 1;
    for (int d = 0; d < c->ndim; d++) {
        if (shape[d] < 1 || shape[d] != (double)(long)shape[d])
            bncli_fail("params.json: shape has %g; expected whole numbers >= 1", shape[d]);
        c->size *= c->shape[d] = (long)shape[d];
    }
    free(shape);
    int channels_first = !strcmp(c->layout, "nchw");
    c->features = c->shape[channels_first ? 1 : c->ndim - 1];
    c->plane = channels_first ? c->shape[2] * c->shape[3] : 0;
    c->count = c->size / c->features;
    if (weights != c->features || biases != c->features)
        bncli_fail("params.json: %ld weights and %ld biases for %ld features", weights, biases, c->features);
}

/* The case in the folder bncli appends as the last argument: params.json read, x and dy not yet. */
static inline bncli_case bncli_open(int argc, char **argv) {
    const unsigned one = 1;
    if (*(const unsigned char *)&one != 1) bncli_fail("this header writes little-endian .npy files only");
    if (argc < 2) bncli_fail("usage: %s [ARGS] DIR (bncli audit --cmd appends DIR)", argc ? argv[0] : "program");
    bncli_case c;
    memset(&c, 0, sizeof c);
    c.dir = argv[argc - 1];
    char *json = bncli_slurp(bncli_file(&c, "params.json", "rb"));
    bncli_parse_params(&c, json);
    free(json);
    return c;
}

/* ------------------------------------------------------------------ .npy */

/* The value of 'key': in a .npy header's dictionary, or fail naming the file. */
static inline const char *bncli_npy_field(const char *header, const char *key, const char *file) {
    const char *p = strstr(header, key);
    if (!p) bncli_fail("%s: no %s in its header", file, key);
    p = bncli_skip_space(p + strlen(key));
    if (*p != ':') bncli_fail("%s: no %s in its header", file, key);
    return bncli_skip_space(p + 1);
}

/* NAME.npy's elements as stored (C order, the case's shape), their width into *width. */
static inline void *bncli_read_npy(const bncli_case *c, const char *name, size_t *width) {
    char file[64];
    unsigned char start[12];
    snprintf(file, sizeof file, "%s.npy", name);
    FILE *f = bncli_file(c, file, "rb");
    if (fread(start, 1, 10, f) != 10 || memcmp(start, "\x93NUMPY", 6))
        bncli_fail("%s: not a .npy file", file);
    size_t length = start[8] | (size_t)start[9] << 8;
    if (start[6] == 2 || start[6] == 3) { /* versions 2 and 3: a 4-byte header length */
        if (fread(start + 10, 1, 2, f) != 2) bncli_fail("%s: truncated header", file);
        length |= (size_t)start[10] << 16 | (size_t)start[11] << 24;
    } else if (start[6] != 1) {
        bncli_fail("%s: .npy version %d; this header reads versions 1 to 3", file, start[6]);
    }
    char *header = (char *)bncli_alloc(length + 1);
    if (fread(header, 1, length, f) != length) bncli_fail("%s: truncated header", file);
    header[length] = '\0';

    const char *descr = bncli_npy_field(header, "'descr'", file);
    if (!strncmp(descr, "'<f8'", 5)) *width = 8;
    else if (!strncmp(descr, "'<f4'", 5)) *width = 4;
    else {
        const char *close = *descr == '\'' ? strchr(descr + 1, '\'') : NULL;
        int shown = close ? (int)(close - descr + 1) : 12;
        bncli_fail("%s: dtype %.*s; this header reads '<f8' and '<f4' only", file, shown, descr);
    }
    if (strncmp(bncli_npy_field(header, "'fortran_order'", file), "False", 5))
        bncli_fail("%s: Fortran order; this header reads C order only", file);
    const char *shape = bncli_npy_field(header, "'shape'", file), *p;
    long extents[BNCLI_MAX_DIMS + 1];
    int dims = 0;
    if (*shape != '(') bncli_fail("%s: cannot read the shape in its header", file);
    for (p = bncli_skip_space(shape + 1); *p != ')';) {
        char *end;
        extents[dims] = strtol(p, &end, 10);
        if (end == p || dims++ == BNCLI_MAX_DIMS) bncli_fail("%s: cannot read the shape in its header", file);
        p = bncli_skip_space(end);
        if (*p == ',') p = bncli_skip_space(p + 1);
    }
    int same = dims == c->ndim;
    for (int d = 0; same && d < dims; d++) same = extents[d] == c->shape[d];
    if (!same) bncli_fail("%s: shape %.*s, not the shape in params.json", file, (int)(p - shape + 1), shape);
    free(header);

    void *values = bncli_alloc(*width * c->size);
    size_t got = fread(values, *width, c->size, f);
    fclose(f);
    if (got != (size_t)c->size) bncli_fail("%s: truncated: %lu of %ld elements", file, (unsigned long)got, c->size);
    return values;
}

/* NAME.npy as elements of width bytes (4: float, 8: double), converted if stored in the other. */
static inline void *bncli_read_as(const bncli_case *c, const char *name, size_t width) {
    size_t stored;
    void *raw = bncli_read_npy(c, name, &stored);
    if (stored == width) return raw;
    void *converted = bncli_alloc(width * c->size);
    for (long e = 0; e < c->size; e++) {
        if (width == 8) ((double *)converted)[e] = ((const float *)raw)[e];
        else ((float *)converted)[e] = (float)((const double *)raw)[e];
    }
    free(raw);
    return converted;
}

/* x or dy, as double or float whatever the case's dtype. */
static inline double *bncli_read_double(const bncli_case *c, const char *name) {
    return (double *)bncli_read_as(c, name, sizeof(double));
}
static inline float *bncli_read_float(const bncli_case *c, const char *name) {
    return (float *)bncli_read_as(c, name, sizeof(float));
}

/* NAME.npy from values of width bytes: y and dx in x's shape, dw and db one per feature. */
static inline void bncli_write_npy(const bncli_case *c, const char *name, const void *values, size_t width) {
    int per_feature = !strcmp(name, "dw") || !strcmp(name, "db");
    if (!per_feature && strcmp(name, "y") && strcmp(name, "dx"))
        bncli_fail("cannot write \"%s\": bncli reads y, dx, dw and db", name);
    char file[64], shape[128] = "", header[320];
    snprintf(file, sizeof file, "%s.npy", name);
    if (per_feature) snprintf(shape, sizeof shape, "%ld,", c->features);
    for (int d = 0; !per_feature && d < c->ndim; d++)
        snprintf(shape + strlen(shape), sizeof shape - strlen(shape), d ? ", %ld" : "%ld", c->shape[d]);
    int length = snprintf(header, sizeof header, "{'descr': '<f%d', 'fortran_order': False, 'shape': (%s), }",
                          (int)width, shape);
    while ((10 + length + 1) % 64) header[length++] = ' '; /* numpy aligns the data to 64 bytes */
    header[length++] = '\n';
    long elements = per_feature ? c->features : c->size;
    unsigned char start[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, /* version 1.0: a 2-byte header length */
                               (unsigned char)length, (unsigned char)(length >> 8)};
    FILE *f = bncli_file(c, file, "wb");
    int written = fwrite(start, 1, 10, f) == 10 && fwrite(header, 1, length, f) == (size_t)length &&
                  fwrite(values, width, elements, f) == (size_t)elements;
    if (fclose(f) != 0 || !written) bncli_fail("%s: cannot write: %s", file, strerror(errno));
}

/* y, dx, dw or db, from double or float values. */
static inline void bncli_write_double(const bncli_case *c, const char *name, const double *values) {
    bncli_write_npy(c, name, values, sizeof(double));
}
static inline void bncli_write_float(const bncli_case *c, const char *name, const float *values) {
    bncli_write_npy(c, name, values, sizeof(float));
}

#endif /* BNCLI_AUDIT_H */
