/* Build: cc -O2 -o batchnorm examples/batchnorm.c -lm   Run: bncli audit --cmd ./batchnorm
 *
 * Batch norm (training mode) for bncli audit's --cmd protocol, every layout (nc, nchw, nhwc),
 * through bncli_audit.h: reads x.npy, dy.npy and params.json, writes y, dx, dw, db as .npy.
 * Two-pass variance; computes in double for float64 cases and in float for float32 ones.
 * Valid C99 and C++.
 */
#include <math.h>

#include "bncli_audit.h"

/* The case in the precision T: x and dy read as T, the four results written as T. */
#define BATCHNORM_IN(T, SQRT)                                                                   \
    static void batchnorm_##T(const bncli_case *c) {                                            \
        T *x = bncli_read_##T(c, "x"), *dy = bncli_read_##T(c, "dy");                           \
        T *y = bncli_new_##T(c->size), *dx = bncli_new_##T(c->size);                            \
        T *dw = bncli_new_##T(c->features), *db = bncli_new_##T(c->features);                   \
        const T k = (T)c->count;                                                                \
        for (long j = 0; j < c->features; j++) {                                                \
            T mean = 0, var = 0, sum_dy = 0, sum_dy_s = 0;                                      \
            for (long i = 0; i < c->count; i++) mean += x[bncli_index(c, i, j)];                \
            mean /= k;                                                                          \
            for (long i = 0; i < c->count; i++) {                                               \
                T d = x[bncli_index(c, i, j)] - mean;                                           \
                var += d * d;                                                                   \
            }                                                                                   \
            var /= k;                                                                           \
            T std = SQRT(var + (T)c->eps), w = (T)c->weight[j], b = (T)c->bias[j];              \
            for (long i = 0; i < c->count; i++) {                                               \
                long e = bncli_index(c, i, j);                                                  \
                sum_dy += dy[e];                                                                \
                sum_dy_s += dy[e] * ((x[e] - mean) / std);                                      \
            }                                                                                   \
            for (long i = 0; i < c->count; i++) {                                               \
                long e = bncli_index(c, i, j);                                                  \
                T s = (x[e] - mean) / std;                                                      \
                y[e] = w * s + b;                                                               \
                dx[e] = (w / std) * (dy[e] - sum_dy / k - s * sum_dy_s / k);                    \
            }                                                                                   \
            dw[j] = sum_dy_s;                                                                   \
            db[j] = sum_dy;                                                                     \
        }                                                                                       \
        bncli_write_##T(c, "y", y);                                                             \
        bncli_write_##T(c, "dx", dx);                                                           \
        bncli_write_##T(c, "dw", dw);                                                           \
        bncli_write_##T(c, "db", db);                                                           \
    }
BATCHNORM_IN(double, sqrt)
BATCHNORM_IN(float, sqrtf)

int main(int argc, char **argv) {
    bncli_case c = bncli_open(argc, argv);
    if (c.is_float32) batchnorm_float(&c);
    else batchnorm_double(&c);
    return 0;
}
