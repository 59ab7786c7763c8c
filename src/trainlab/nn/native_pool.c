/* trainlab's max-pool kernels (see trainlab/nn/pooling.py and trainlab/nn/native_layers.py).
 *
 * Max-pooling with a k × k window and stride k (no padding, dilation 1, floor mode: rows and
 * columns past the last whole window are not pooled) over P planes of H × W values: the output
 * plane is ⌊H/k⌋ × ⌊W/k⌋.
 *
 * Forward, per window: its values in row-major order, kept as PyTorch's CPU kernel keeps them,
 *     m = −∞, at = 0;   for each value v at position p:  if (v > m or v is NaN) { m = v; at = p }
 * so the output is torch's and so is the position the gradient goes to (the first maximum; with a
 * NaN, the last NaN).
 * Backward: ∂L/∂x is 0 + g at each window's position (as torch adds g into zeros: a −0 becomes
 * +0), +0 elsewhere (also in the rows and columns that were not pooled). The positions are found again from x, by the same scan: one pass that reads
 * x and writes ∂L/∂x, where keeping them from the forward (a byte per window) made the forward
 * twice as slow as the maximum alone.
 *
 * Threads: at least PARALLEL_MIN input values are split over nthreads OpenMP threads by planes.
 * The file is compiled once per element type: the first pass below defines the type and includes
 * the file again for the kernels.
 */
#ifndef T
#include <stdint.h>
#include <string.h>

#define PARALLEL_MIN 65536

#ifdef _OPENMP
/* PLANES(P, n, nthreads) { body }: the body for each plane p, over threads when n values are many */
#define PLANES(P, n, nthreads)                                                          \
    const int par_ = (n) >= PARALLEL_MIN && (nthreads) > 1, nt_ = (nthreads);            \
    _Pragma("omp parallel for num_threads(nt_) schedule(static) if (par_)")               \
    for (int64_t p = 0; p < (P); p++)
#else
#define PLANES(P, n, nthreads) for (int64_t p = 0; p < (P); p++)
#endif

#define T float
#define BITS uint32_t
#define NAME(kernel) trainlab_##kernel##_f32
#include __FILE__
#undef T
#undef BITS
#undef NAME

#define T double
#define BITS uint64_t
#define NAME(kernel) trainlab_##kernel##_f64
#include __FILE__
#undef T
#undef BITS
#undef NAME

int trainlab_native_pool_version(void) { return 1; }

#else  /* the kernels, for element type T */

/* the scan's step as an operation: b wins over a if greater, or if it is NaN. The scan of a window
 * is a left fold of it, and the fold is associative, so for k = 2 the window is folded as a tree,
 * (v0 ∘ v1) ∘ (v2 ∘ v3): the same maximum and position as the scan in row-major order. Without a
 * NaN in the window a step is b > a ? b : a, one max instruction; a window with a NaN (rare, and
 * a predictable branch) takes the scan itself. */
#define WINS(b, a) (((b) > (a)) | ((b) != (b)))
#define HAS_NAN(v0, v1, v2, v3) __builtin_expect(((v0) != (v0)) | ((v1) != (v1)) | ((v2) != (v2)) | ((v3) != (v3)), 0)

static inline T NAME(pick)(T a, T b) { return b > a ? b : a; }

/* the scan of a window with a NaN: its value (that NaN) and position */
static T NAME(scan2)(T v0, T v1, T v2, T v3, int *at) {
    T m = v0;
    int p = 0;
    if (WINS(v1, m)) { m = v1; p = 1; }
    if (WINS(v2, m)) { m = v2; p = 2; }
    if (WINS(v3, m)) { m = v3; p = 3; }
    *at = p;
    return m;
}

/* the window's position of its maximum, 0 .. 3 */
static inline int NAME(position2)(T v0, T v1, T v2, T v3) {
    if (HAS_NAN(v0, v1, v2, v3)) {
        int p;
        NAME(scan2)(v0, v1, v2, v3, &p);
        return p;
    }
    const int right_top = v1 > v0, right_bottom = v3 > v2;
    const int low = NAME(pick)(v2, v3) > NAME(pick)(v0, v1);
    return 2 * low + ((low & right_bottom) | ((1 - low) & right_top));
}

/* one row of windows, k = 2: the maxima */
static void NAME(pool2_row)(int64_t wo, const T *restrict r0, const T *restrict r1, T *restrict o) {
    for (int64_t j = 0; j < wo; j++) {
        const T v0 = r0[2 * j], v1 = r0[2 * j + 1], v2 = r1[2 * j], v3 = r1[2 * j + 1];
        if (HAS_NAN(v0, v1, v2, v3)) {
            int p;
            o[j] = NAME(scan2)(v0, v1, v2, v3, &p);
            continue;
        }
        o[j] = NAME(pick)(NAME(pick)(v0, v1), NAME(pick)(v2, v3));
    }
}

/* the same row backward: g at each window's position in ∂L/∂x, +0 elsewhere (selected bitwise, so
 * g is copied exactly and the zeros are +0 whatever g is) */
static void NAME(pool2_row_backward)(int64_t wo, const T *restrict r0, const T *restrict r1, const T *restrict g,
                                     T *restrict d0, T *restrict d1) {
    for (int64_t j = 0; j < wo; j++) {
        const int p = NAME(position2)(r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1]);
        const T gj = g[j] + (T)0;  /* as torch's 0 + g: −0 becomes +0 */
        BITS v;
        memcpy(&v, &gj, sizeof v);
        BITS out[4] = {v & -(BITS)(p == 0), v & -(BITS)(p == 1), v & -(BITS)(p == 2), v & -(BITS)(p == 3)};
        memcpy(d0 + 2 * j, out, 2 * sizeof v);
        memcpy(d1 + 2 * j, out + 2, 2 * sizeof v);
    }
}

/* one window, any k: its maximum and position */
static T NAME(window)(const T *restrict x, int64_t W, int64_t k, int64_t *at) {
    T m = x[0];
    int64_t p = 0;
    for (int64_t di = 0; di < k; di++)
        for (int64_t dj = 0; dj < k; dj++) {
            const T v = x[di * W + dj];
            if (v > m || v != v) {
                m = v;
                p = di * k + dj;
            }
        }
    *at = p;
    return m;
}

void NAME(max_pool2d_forward)(int64_t P, int64_t H, int64_t W, int64_t k, const T *x, T *y, int nthreads) {
    const int64_t ho = H / k, wo = W / k;
    PLANES(P, P * H * W, nthreads) {
        const T *xp = x + p * H * W;
        T *yp = y + p * ho * wo;
        for (int64_t i = 0; i < ho; i++) {
            if (k == 2) {
                NAME(pool2_row)(wo, xp + 2 * i * W, xp + (2 * i + 1) * W, yp + i * wo);
            } else {
                int64_t at;
                for (int64_t j = 0; j < wo; j++) yp[i * wo + j] = NAME(window)(xp + i * k * W + j * k, W, k, &at);
            }
        }
    }
}

void NAME(max_pool2d_backward)(int64_t P, int64_t H, int64_t W, int64_t k, const T *g, const T *x, T *dx,
                               int nthreads) {
    const int64_t ho = H / k, wo = W / k;
    PLANES(P, P * H * W, nthreads) {
        const T *xp = x + p * H * W, *gp = g + p * ho * wo;
        T *d = dx + p * H * W;
        if (k == 2 && W % 2 == 0) {
            for (int64_t i = 0; i < ho; i++)
                NAME(pool2_row_backward)(wo, xp + 2 * i * W, xp + (2 * i + 1) * W, gp + i * wo, d + 2 * i * W,
                                         d + (2 * i + 1) * W);
            if (H % 2) memset(d + (H - 1) * W, 0, (size_t)W * sizeof(T));
        } else {
            memset(d, 0, (size_t)(H * W) * sizeof(T));
            for (int64_t i = 0; i < ho; i++)
                for (int64_t j = 0; j < wo; j++) {
                    int64_t at;
                    NAME(window)(xp + i * k * W + j * k, W, k, &at);
                    d[(i * k + at / k) * W + j * k + at % k] = gp[i * wo + j] + (T)0;
                }
        }
    }
}

#undef WINS
#undef HAS_NAN
#endif
