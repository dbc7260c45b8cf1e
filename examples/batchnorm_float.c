/* A float-only batch norm kernel, as many are, audited through bncli_audit.h.
 * Build: cc -O2 -o batchnorm_float examples/batchnorm_float.c -lm
 * Run:   bncli audit --cmd ./batchnorm_float        (float64 cases: computed in float all the same)
 */
#include <math.h>

#include "bncli_audit.h"

/* x, dy: k rows of n features (row-major); two-pass variance. */
static void batchnorm(const float *x, const float *dy, const double *weight, const double *bias, float eps,
                      long k, long n, float *y, float *dx, float *dw, float *db) {
    for (long j = 0; j < n; j++) {
        float mean = 0, var = 0, sum_dy = 0, sum_dy_s = 0;
        for (long i = 0; i < k; i++) mean += x[i * n + j];
        mean /= k;
        for (long i = 0; i < k; i++) var += (x[i * n + j] - mean) * (x[i * n + j] - mean);
        float std = sqrtf(var / k + eps), w = (float)weight[j];
        for (long i = 0; i < k; i++) {
            sum_dy += dy[i * n + j];
            sum_dy_s += dy[i * n + j] * (x[i * n + j] - mean) / std;
        }
        for (long i = 0; i < k; i++) {
            float s = (x[i * n + j] - mean) / std;
            y[i * n + j] = w * s + (float)bias[j];
            dx[i * n + j] = w / std * (dy[i * n + j] - sum_dy / k - s * sum_dy_s / k);
        }
        dw[j] = sum_dy_s;
        db[j] = sum_dy;
    }
}

int main(int argc, char **argv) {
    bncli_case c = bncli_open(argc, argv);
    if (c.plane) bncli_fail("this kernel takes rows of features: --layout nc or nhwc");
    float *x = bncli_read_float(&c, "x"), *dy = bncli_read_float(&c, "dy");
    float *y = bncli_new_float(c.size), *dx = bncli_new_float(c.size);
    float *dw = bncli_new_float(c.features), *db = bncli_new_float(c.features);
    batchnorm(x, dy, c.weight, c.bias, (float)c.eps, c.count, c.features, y, dx, dw, db);
    bncli_write_float(&c, "y", y);
    bncli_write_float(&c, "dx", dx);
    bncli_write_float(&c, "dw", dw);
    bncli_write_float(&c, "db", db);
    return 0;
}
