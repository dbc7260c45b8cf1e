/* Build: cc -O2 -o batchnorm examples/batchnorm.c -lm   Run: bncli audit --cmd ./batchnorm
 *
 * Batch norm (training mode) for bncli audit's --cmd protocol, layout nc: reads DIR/x.csv,
 * DIR/dy.csv and DIR/params.json, writes DIR/y.csv, dx.csv, dw.csv, db.csv. Two-pass
 * variance; computes in double for float64 cases and in float for float32 ones.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *slurp(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "cannot open %s\n", path); exit(1); }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    char *text = malloc(size + 1);
    if (fread(text, 1, size, f) != (size_t)size) { fprintf(stderr, "cannot read %s\n", path); exit(1); }
    text[size] = 0;
    fclose(f);
    return text;
}

/* The numbers of a JSON array following "key": (crude: finds the key, then strtod's). */
static int json_numbers(const char *json, const char *key, double *out, int max) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\"", key);
    const char *p = strstr(json, pattern);
    if (!p) return 0;
    p = strchr(p + strlen(pattern), ':') + 1;
    int count = 0;
    int array = strchr(p, '[') && strchr(p, '[') < strchr(p, ',') ? 1 : 0;
    if (array) p = strchr(p, '[') + 1;
    while (count < max) {
        char *end;
        double v = strtod(p, &end);
        if (end == p) break;
        out[count++] = v;
        p = end;
        while (*p == ' ' || *p == ',') p++;
        if (!array || *p == ']') break;
    }
    return count;
}

static double *read_csv(const char *dir, const char *name, int k, int n) {
    char *text = slurp(dir, name), *p = text;
    double *a = malloc(sizeof(double) * k * n);
    for (int i = 0; i < k * n; i++) {
        char *end;
        a[i] = strtod(p, &end);
        if (end == p) { fprintf(stderr, "%s: expected %d numbers, found %d\n", name, k * n, i); exit(1); }
        p = end;
        while (*p == ',' || *p == '\n' || *p == '\r' || *p == ' ') p++;
    }
    free(text);
    return a;
}

static void write_csv(const char *dir, const char *name, const double *a, int k, int n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < k; i++)
        for (int j = 0; j < n; j++) fprintf(f, "%.17g%c", a[i * n + j], j + 1 < n ? ',' : '\n');
    fclose(f);
}

/* One column, strided by n, in the precision T. */
#define COLUMN(T, SQRT)                                                                          \
    static void column_##T(const double *x, const double *dy, double w, double b, double eps,   \
                           int k, int n, int j, double *y, double *dx, double *dw, double *db) { \
        T mean = 0, var = 0, sg = 0, sgs = 0;                                                    \
        for (int i = 0; i < k; i++) mean += (T)x[i * n + j];                                     \
        mean /= (T)k;                                                                            \
        for (int i = 0; i < k; i++) { T d = (T)x[i * n + j] - mean; var += d * d; }              \
        var /= (T)k;                                                                             \
        T std = SQRT(var + (T)eps);                                                              \
        for (int i = 0; i < k; i++) {                                                            \
            T s = ((T)x[i * n + j] - mean) / std;                                                \
            sg += (T)dy[i * n + j];                                                              \
            sgs += (T)dy[i * n + j] * s;                                                         \
        }                                                                                        \
        for (int i = 0; i < k; i++) {                                                            \
            T s = ((T)x[i * n + j] - mean) / std;                                                \
            y[i * n + j] = (T)w * s + (T)b;                                                      \
            dx[i * n + j] = ((T)w / std) * ((T)dy[i * n + j] - sg / (T)k - s * sgs / (T)k);      \
        }                                                                                        \
        dw[j] = sgs;                                                                             \
        db[j] = sg;                                                                              \
    }
COLUMN(double, sqrt)
COLUMN(float, sqrtf)

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: batchnorm DIR\n"); return 2; }
    const char *dir = argv[1];
    char *params = slurp(dir, "params.json");
    if (!strstr(params, "\"layout\": \"nc\"")) { fprintf(stderr, "only --layout nc is supported\n"); return 1; }
    double shape[2], eps;
    if (json_numbers(params, "shape", shape, 2) != 2) { fprintf(stderr, "params.json: no shape\n"); return 1; }
    int k = (int)shape[0], n = (int)shape[1];
    double *w = malloc(sizeof(double) * n), *b = malloc(sizeof(double) * n);
    if (json_numbers(params, "weight", w, n) != n || json_numbers(params, "bias", b, n) != n ||
        json_numbers(params, "eps", &eps, 1) != 1) {
        fprintf(stderr, "params.json: weight, bias or eps missing\n");
        return 1;
    }
    int single = strstr(params, "\"dtype\": \"float32\"") != NULL;
    double *x = read_csv(dir, "x.csv", k, n), *dy = read_csv(dir, "dy.csv", k, n);
    double *y = malloc(sizeof(double) * k * n), *dx = malloc(sizeof(double) * k * n);
    double *dw = malloc(sizeof(double) * n), *db = malloc(sizeof(double) * n);
    for (int j = 0; j < n; j++) {
        if (single) column_float(x, dy, w[j], b[j], eps, k, n, j, y, dx, dw, db);
        else column_double(x, dy, w[j], b[j], eps, k, n, j, y, dx, dw, db);
    }
    write_csv(dir, "y.csv", y, k, n);
    write_csv(dir, "dx.csv", dx, k, n);
    write_csv(dir, "dw.csv", dw, 1, n);
    write_csv(dir, "db.csv", db, 1, n);
    return 0;
}
