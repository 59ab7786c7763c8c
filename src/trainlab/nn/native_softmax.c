/* trainlab's fused softmax, log-softmax, ELU/SELU and GELU kernels, and the one-pass backwards of
 * tanh, σ and SiLU (see trainlab/nn/native_softmax.py).
 *
 * Each softmax kernel runs over R rows of D contiguous values (the last dimension) and does a
 * row's whole formula in one call: the max, the exponentials and their sum, the scaling — where
 * the torch-op fast path runs five or six ops, each a pass over the tensor. The ELU kernels are
 * one elementwise pass each way, and so are GELU's (with an erf and a tanh of their own, below)
 * and the backwards of tanh, σ and SiLU.
 *
 * The exponential is our own, written as straight-line arithmetic that the compiler vectorizes
 * (libm's exp is a scalar call): Cody–Waite range reduction x = n·ln2 + r, |r| ≤ ln2/2, with
 * ln2 split in two (ln2 = C1 + C2, C1 with few bits so that n·C1 is exact); e^r from Cephes'
 * polynomial (float: r + r²·P(r), P minimax of degree 5) or the Taylor series (double, to r¹³);
 * 2^n built from its exponent bits. Every exponent here is ≤ 0 (z − max z, a log-probability),
 * which is the exponential's domain: 2^n is applied as 2^(n+25)·2^−25 (float), the first factor
 * a normal number, so that results in the subnormal range come out right (one rounding at the
 * end) for one extra multiply. The clamp of x keeps n in range; NaN passes through the clamp and
 * the arithmetic; e^−inf = 0. Max error: see native_softmax.py (measured by the tests against
 * float64/long double exp over a dense sweep).
 *
 * Reductions (max, Σ) are `omp simd` reductions: vectorized partial sums, so a row's sum is
 * associated differently from a scalar loop (and from torch), by a few ulps at most.
 *
 * The file is compiled once per element type: the first pass below defines the shared functions
 * and the types' exponentials and includes the file again for the kernels.
 */
#ifndef T
#include <math.h>
#include <stdint.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))

/* SPLIT(rows, work, nthreads, statement): run the statement over the row range [lo, hi) — split
 * into nthreads contiguous chunks on OpenMP threads (the process's runtime: torch's) when the
 * tensor has at least PARALLEL_MIN elements, else once over [0, rows) in the calling thread. Rows
 * are independent, so the numbers do not depend on the split. */
#define PARALLEL_MIN 32768
#ifdef _OPENMP
#include <omp.h>
#define SPLIT(rows, work, nthreads, ...)                                                 \
    if ((nthreads) > 1 && (work) >= PARALLEL_MIN) {                                      \
        _Pragma("omp parallel num_threads(nthreads)")                                    \
        {                                                                                \
            const int64_t t_ = omp_get_thread_num(), tt_ = omp_get_num_threads();       \
            const int64_t lo = (rows) * t_ / tt_, hi = (rows) * (t_ + 1) / tt_;          \
            __VA_ARGS__;                                                                 \
        }                                                                                \
    } else {                                                                             \
        const int64_t lo = 0, hi = (rows);                                               \
        __VA_ARGS__;                                                                     \
    }
#else
#define SPLIT(rows, work, nthreads, ...) { const int64_t lo = 0, hi = (rows); __VA_ARGS__; }
#endif

INLINE float bits_to_f32(uint32_t u) { float f; memcpy(&f, &u, sizeof f); return f; }
INLINE uint32_t f32_to_bits(float f) { uint32_t u; memcpy(&u, &f, sizeof u); return u; }
INLINE double bits_to_f64(uint64_t u) { double f; memcpy(&f, &u, sizeof f); return f; }
INLINE uint64_t f64_to_bits(double f) { uint64_t u; memcpy(&u, &f, sizeof u); return u; }

/* round to the nearest integer, as a float: adding 1.5·2²³ leaves no fraction bits (|x| < 2²²) */
INLINE float rint_f32(float x) { return (x + 0x1.8p23f) - 0x1.8p23f; }
INLINE double rint_f64(double x) { return (x + 0x1.8p52) - 0x1.8p52; }

/* 2^k for an integer-valued k with k + bias in [1, 2·bias]: k + bias + 2^(mantissa bits) holds
 * k + bias in its low mantissa bits, which the shift moves into the exponent field */
INLINE float pow2_f32(float k) { return bits_to_f32(f32_to_bits(k + (127.0f + 0x1p23f)) << 23); }
INLINE double pow2_f64(double k) { return bits_to_f64(f64_to_bits(k + (1023.0 + 0x1p52)) << 52); }

/* ---- float ----------------------------------------------------------------------------------- */
#define LOG2E_F32 1.44269504088896341f
#define C1_F32 0.693359375f            /* ln2 = C1 + C2; C1 has 9 bits, so n·C1 is exact */
#define C2_F32 -2.12194440e-4f

/* e^r − 1 for |r| ≤ ln2/2 (Cephes expf: r + r²·P(r), P minimax of degree 5) */
INLINE float expm1_reduced_f32(float r) {
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    return p * (r * r) + r;
}

/* e^x for x ≤ 0 (every exponent in these kernels is: z − max z, or a log-probability): x = n·ln2 + r,
 * e^x = ((1 + (e^r − 1))·2^(n+25))·2^−25. The first product is exact (a normal number, as n + 25 ≥
 * −125); the second rounds once, into the subnormals where e^x < 2^−126. Clamped to [−104, 0]:
 * e^−104 < 2^−150 rounds to 0; a positive x (never passed) gives 1. */
INLINE float exp_f32(float x) {
    x = x < -104.0f ? -104.0f : x;   /* NaN fails both tests and passes through */
    x = x > 0.0f ? 0.0f : x;
    const float n = rint_f32(x * LOG2E_F32);
    const float r = (x - n * C1_F32) - n * C2_F32;
    return ((1.0f + expm1_reduced_f32(r)) * pow2_f32(n + 25.0f)) * 0x1p-25f;
}

/* e^z − 1 for z ≤ 0 (ELU's negative side) with relative precision near 0: 2^n·(e^r − 1) + (2^n − 1),
 * both terms exact but for one rounding each (2^n − 1 is exact for n ≥ −24). Clamped at −30,
 * where e^z − 1 rounds to −1 (e^−30 < 2^−25). */
INLINE float expm1_neg_f32(float z) {
    z = z < -30.0f ? -30.0f : z;
    const float n = rint_f32(z * LOG2E_F32);
    const float r = (z - n * C1_F32) - n * C2_F32;
    const float s = pow2_f32(n);
    return s * expm1_reduced_f32(r) + (s - 1.0f);
}

/* ---- double ---------------------------------------------------------------------------------- */
#define LOG2E_F64 1.44269504088896340736
#define C1_F64 6.93145751953125e-1     /* ln2 = C1 + C2; C1 has 15 bits */
#define C2_F64 1.42860682030941723212e-6

/* e^r − 1 for |r| ≤ ln2/2: r + r²·P(r), P the Taylor series of (e^r − 1 − r)/r² to r¹¹ (the
 * first term left out, r¹⁴/14!, is below 2⁻⁵⁵·|r|); the leading r keeps relative precision near 0 */
INLINE double expm1_reduced_f64(double r) {
    double p = 1.0 / 6227020800.0;                  /* 1/13! */
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    return p * (r * r) + r;
}

/* e^x for x ≤ 0, as exp_f32: ((1 + (e^r − 1))·2^(n+55))·2^−55; clamped to [−746, 0] (e^−746 < 2^−1075) */
INLINE double exp_f64(double x) {
    x = x < -746.0 ? -746.0 : x;
    x = x > 0.0 ? 0.0 : x;
    const double n = rint_f64(x * LOG2E_F64);
    const double r = (x - n * C1_F64) - n * C2_F64;
    return ((1.0 + expm1_reduced_f64(r)) * pow2_f64(n + 55.0)) * 0x1p-55;
}

/* e^z − 1 for z ≤ 0, as expm1_neg_f32; clamped at −40 (e^−40 < 2^−54) */
INLINE double expm1_neg_f64(double z) {
    z = z < -40.0 ? -40.0 : z;
    const double n = rint_f64(z * LOG2E_F64);
    const double r = (z - n * C1_F64) - n * C2_F64;
    const double s = pow2_f64(n);
    return s * expm1_reduced_f64(r) + (s - 1.0);
}

/* tanh w for GELU's tanh approximation, from e^(−2|w|): |w| < 0.55, −m/(2 + m) with m = e^(−2|w|) − 1
 * from expm1_neg (relative precision near 0, where 1 − e^(−2|w|) would cancel); above, 1 − 2e/(1 + e)
 * with e = e^(−2|w|), whose error shrinks with e where tanh → 1 (what 1 − t² in the backward needs);
 * the sign of w put back. Large |w|: 1; NaN passes through. */
INLINE float tanh_f32(float w) {
    const float a = -2.0f * fabsf(w), m = expm1_neg_f32(a), e = exp_f32(a);
    const float t = fabsf(w) < 0.55f ? -m / (2.0f + m) : 1.0f - 2.0f * e / (1.0f + e);
    return copysignf(t, w);
}
INLINE double tanh_f64(double w) {
    const double a = -2.0 * fabs(w), m = expm1_neg_f64(a), e = exp_f64(a);
    const double t = fabs(w) < 0.55 ? -m / (2.0 + m) : 1.0 - 2.0 * e / (1.0 + e);
    return copysign(t, w);
}

/* erf(x), for GELU's Φ(z) = ½(1 + erf(z/√2)), as straight-line arithmetic (both branches are
 * evaluated and one is selected, so the loop vectorizes). |x| ≤ 0.9375: erf x = x + x·Q(x²), Q a
 * polynomial fitted (near-minimax, relative error) to erf(x)/x − 1. Above: erf x = 1 − erfc x with
 * erfc x = e^(−x² + L(x)), L a polynomial in u = (x − c)/h fitted to log(e^(x²)·erfc x), which is
 * smooth and slowly varying (erfc x itself falls by 8 orders of magnitude); the exponent is ≤ 0,
 * the exponential's domain. |x| is clamped where erf rounds to 1 (erfc x below half an ulp of 1:
 * 4 for float, 6 for double, just past the fitted piece [1.75, 5.9]); NaN passes through. The
 * measured error: see native_softmax.py. */
INLINE float erf_f32(float x) {
    const float s = x * x;
    float q = -5.927233141846955e-4f;            /* Q(s), s = x² ≤ 0.9375² */
    q = q * s + 4.980865865945816e-3f;
    q = q * s + -2.6758387684822083e-2f;
    q = q * s + 1.1281595379114151e-1f;
    q = q * s + -3.761247396469116e-1f;
    q = q * s + 1.2837915122509003e-1f;
    const float small = x * q + x;
    float a = fabsf(x);
    a = a > 4.0f ? 4.0f : a;
    const float u = (a - 2.46875f) * (1.0f / 1.53125f);   /* [0.9375, 4] -> [-1, 1] */
    float l = 2.4547537323087454e-3f;
    l = l * u + -1.4291207771748304e-3f;
    l = l * u + 1.3837390579283237e-2f;
    l = l * u + -3.952537477016449e-2f;
    l = l * u + 1.3396091759204865e-1f;
    l = l * u + -5.454872846603394e-1f;
    l = l * u + -1.5457416772842407f;
    const float large = copysignf(1.0f - exp_f32(l - a * a), x);
    return fabsf(x) <= 0.9375f ? small : large;
}

/* erf(x) for double, as erf_f32: Q of degree 11; above 0.9375, L in two pieces, [0.9375, 1.75] and
 * [1.75, 5.9] (selected like the branches); x² enters the exponent as hi + lo (lo = fma(a, a, −hi),
 * exact), e^(L − hi − lo) = e^(L − hi)·(1 − lo) to well below an ulp. */
INLINE double erf_f64(double x) {
    const double s = x * x;
    double q = -8.295841576715291e-10;
    q = q * s + 1.3964662532482722e-08;
    q = q * s + -1.6260104645439855e-07;
    q = q * s + 1.6453572950971671e-06;
    q = q * s + -1.4925190861275305e-05;
    q = q * s + 0.00012055316392561405;
    q = q * s + -0.0008548326626970754;
    q = q * s + 0.0052239776193964;
    q = q * s + -0.02686617064458276;
    q = q * s + 0.11283791670952525;
    q = q * s + -0.37612638903183704;
    q = q * s + 0.1283791670955126;
    const double small = x * q + x;
    double a = fabs(x);
    a = a > 6.0 ? 6.0 : a;
    double u = (a - 1.34375) * (1.0 / 0.40625);          /* [0.9375, 1.75] -> [-1, 1] */
    double la = 1.1849487477485105e-11;
    la = la * u + -1.4684620924703508e-10;
    la = la * u + 1.184517061559252e-09;
    la = la * u + -5.199519185702545e-09;
    la = la * u + -3.043666726565294e-08;
    la = la * u + 1.0692721818063051e-06;
    la = la * u + -1.6271002138852498e-05;
    la = la * u + 0.00019259626735708497;
    la = la * u + -0.002004857933872842;
    la = la * u + 0.019869805698272458;
    la = la * u + -0.22113716641183417;
    la = la * u + -1.0522686667365215;
    u = (a - 3.825) * (1.0 / 2.075);                      /* [1.75, 5.9] -> [-1, 1] */
    double lb = 7.739393727886811e-06;
    lb = lb * u + 3.967875817308135e-05;
    lb = lb * u + 9.374016625161312e-05;
    lb = lb * u + 0.000148871201494583;
    lb = lb * u + 8.944171956116513e-05;
    lb = lb * u + 0.00020939279269541902;
    lb = lb * u + -0.0004116321246135669;
    lb = lb * u + 0.0013636285761938472;
    lb = lb * u + -0.004131486529077774;
    lb = lb * u + 0.012396023744651784;
    lb = lb * u + -0.03779270610405855;
    lb = lb * u + 0.12339432477881822;
    lb = lb * u + -0.5105178573334888;
    lb = lb * u + -1.9455782060969473;
    const double l = a < 1.75 ? la : lb;
    const double hi = a * a, lo = fma(a, a, -hi);
    const double large = copysign(1.0 - exp_f64(l - hi) * (1.0 - lo), x);
    return fabs(x) <= 0.9375 ? small : large;
}

#define T float
#define NAME(kernel) trainlab_##kernel##_f32
#define EXP exp_f32
#define EXPM1_NEG expm1_neg_f32
#define ERF erf_f32
#define TANH tanh_f32
#define LOG logf
#include __FILE__
#undef T
#undef NAME
#undef EXP
#undef EXPM1_NEG
#undef ERF
#undef TANH
#undef LOG

#define T double
#define NAME(kernel) trainlab_##kernel##_f64
#define EXP exp_f64
#define EXPM1_NEG expm1_neg_f64
#define ERF erf_f64
#define TANH tanh_f64
#define LOG log
#include __FILE__

/* the elementary functions on their own (exp and expm1 for x ≤ 0), for the tests' error sweeps */
#define ELEMENTWISE(fn, T)                                                           \
    void trainlab_##fn(const T *restrict x, T *restrict y, int64_t n) {              \
        _Pragma("omp simd")                                                          \
        for (int64_t i = 0; i < n; i++) y[i] = fn(x[i]);                             \
    }
ELEMENTWISE(exp_f32, float)
ELEMENTWISE(exp_f64, double)
ELEMENTWISE(expm1_neg_f32, float)
ELEMENTWISE(expm1_neg_f64, double)
ELEMENTWISE(tanh_f32, float)
ELEMENTWISE(tanh_f64, double)
ELEMENTWISE(erf_f32, float)
ELEMENTWISE(erf_f64, double)
#undef ELEMENTWISE

int trainlab_native_softmax_version(void) { return 2; }

#else  /* the kernels, for element type T */

/* m = max_i z_i. A NaN is not propagated here, but it reaches the sum through e^(z − m) = NaN,
 * so its row becomes NaN as torch's does. */
INLINE T NAME(row_max)(const T *restrict z, int64_t d) {
    T m = -INFINITY;
#pragma omp simd reduction(max:m)
    for (int64_t i = 0; i < d; i++) m = z[i] > m ? z[i] : m;
    return m;
}

/* ---- softmax: y = e/Σe, e = e^(z − max z);  dz = y⊙g − y·⟨g, y⟩ ------------------------------ */
INLINE void NAME(softmax_forward_rows)(const T *restrict z, T *restrict y, int64_t lo, int64_t hi, int64_t d) {
    for (int64_t k = lo; k < hi; k++) {
        const T *restrict zk = z + k * d;
        T *restrict yk = y + k * d;
        const T m = NAME(row_max)(zk, d);
        T total = 0;
#pragma omp simd reduction(+:total)
        for (int64_t i = 0; i < d; i++) {
            const T e = EXP(zk[i] - m);
            yk[i] = e;
            total += e;
        }
        for (int64_t i = 0; i < d; i++) yk[i] /= total;
    }
}

INLINE void NAME(softmax_backward_rows)(const T *restrict y, const T *restrict g, T *restrict dz, int64_t lo,
                                        int64_t hi, int64_t d) {
    for (int64_t k = lo; k < hi; k++) {
        const T *restrict yk = y + k * d, *restrict gk = g + k * d;
        T *restrict dk = dz + k * d;
        T dot = 0;
#pragma omp simd reduction(+:dot)
        for (int64_t i = 0; i < d; i++) dot += gk[i] * yk[i];
        /* y⊙(g − ⟨g, y⟩): g − ⟨g, y⟩ rounds once where the terms cancel, so each dz is within
         * about an ulp of itself; y⊙g − y·⟨g, y⟩ would err by an ulp of the larger terms */
        for (int64_t i = 0; i < d; i++) dk[i] = yk[i] * (gk[i] - dot);
    }
}

/* ---- log-softmax: y = (z − m) − log Σe^(z − m);  dz = g − e^y·Σg ----------------------------- */
INLINE void NAME(log_softmax_forward_rows)(const T *restrict z, T *restrict y, int64_t lo, int64_t hi, int64_t d) {
    for (int64_t k = lo; k < hi; k++) {
        const T *restrict zk = z + k * d;
        T *restrict yk = y + k * d;
        const T m = NAME(row_max)(zk, d);
        T total = 0;
#pragma omp simd reduction(+:total)
        for (int64_t i = 0; i < d; i++) total += EXP(zk[i] - m);
        const T log_total = LOG(total);
        for (int64_t i = 0; i < d; i++) yk[i] = (zk[i] - m) - log_total;
    }
}

INLINE void NAME(log_softmax_backward_rows)(const T *restrict y, const T *restrict g, T *restrict dz, int64_t lo,
                                            int64_t hi, int64_t d) {
    for (int64_t k = lo; k < hi; k++) {
        const T *restrict yk = y + k * d, *restrict gk = g + k * d;
        T *restrict dk = dz + k * d;
        T sum = 0;
#pragma omp simd reduction(+:sum)
        for (int64_t i = 0; i < d; i++) sum += gk[i];
#pragma omp simd
        for (int64_t i = 0; i < d; i++) dk[i] = gk[i] - EXP(yk[i]) * sum;
    }
}

void NAME(softmax_forward)(const T *z, T *y, int64_t rows, int64_t d, int nthreads) {
    SPLIT(rows, rows * d, nthreads, NAME(softmax_forward_rows)(z, y, lo, hi, d))
}

void NAME(softmax_backward)(const T *y, const T *g, T *dz, int64_t rows, int64_t d, int nthreads) {
    SPLIT(rows, rows * d, nthreads, NAME(softmax_backward_rows)(y, g, dz, lo, hi, d))
}

void NAME(log_softmax_forward)(const T *z, T *y, int64_t rows, int64_t d, int nthreads) {
    SPLIT(rows, rows * d, nthreads, NAME(log_softmax_forward_rows)(z, y, lo, hi, d))
}

void NAME(log_softmax_backward)(const T *y, const T *g, T *dz, int64_t rows, int64_t d, int nthreads) {
    SPLIT(rows, rows * d, nthreads, NAME(log_softmax_backward_rows)(y, g, dz, lo, hi, d))
}

/* ---- ELU / SELU: y = λz for z > 0, λα(e^z − 1) otherwise;  dz = g·(λ if y > 0 else y + λα) ----
 * e^z − 1 is evaluated at min(z, 0) (the branch not taken must not overflow); a NaN z fails
 * z > 0 and stays NaN through e^z − 1. The backward works from y: y > 0 exactly where z > 0
 * (λ > 0), and y + λα = λαe^z on the other side; at z = 0 the slope is λα, PyTorch's choice. */
INLINE void NAME(elu_forward_range)(const T *restrict z, T *restrict y, int64_t lo, int64_t hi, T lam, T la) {
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) {
        const T zi = z[i];
        const T neg = la * EXPM1_NEG(zi > 0 ? (T)0 : zi);
        y[i] = zi > 0 ? lam * zi : neg;
    }
}

INLINE void NAME(elu_backward_range)(const T *restrict y, const T *restrict g, T *restrict dz, int64_t lo,
                                     int64_t hi, T lam, T la) {
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) dz[i] = g[i] * (y[i] > 0 ? lam : y[i] + la);
}

void NAME(elu_forward)(const T *z, T *y, int64_t n, double alpha, double scale, int nthreads) {
    const T lam = (T)scale, la = (T)(scale * alpha);
    SPLIT(n, n, nthreads, NAME(elu_forward_range)(z, y, lo, hi, lam, la))
}

void NAME(elu_backward)(const T *y, const T *g, T *dz, int64_t n, double alpha, double scale, int nthreads) {
    const T lam = (T)scale, la = (T)(scale * alpha);
    SPLIT(n, n, nthreads, NAME(elu_backward_range)(y, g, dz, lo, hi, lam, la))
}

/* ---- the backward passes of tanh, σ and GELU: one elementwise pass each, where the torch-op
 * fast paths run two to five ops. The forward values stay torch's (elementary functions). ---- */

/* tanh: dz = g − (g·y)·y, y = tanh z (tanh' = 1 − y²) */
INLINE void NAME(tanh_backward_range)(const T *restrict y, const T *restrict g, T *restrict dz, int64_t lo,
                                      int64_t hi) {
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) dz[i] = g[i] - (g[i] * y[i]) * y[i];
}

/* σ: dz = (y − y·y)·g, y = σ(z) (σ' = σ(1 − σ)) */
INLINE void NAME(sigmoid_backward_range)(const T *restrict y, const T *restrict g, T *restrict dz, int64_t lo,
                                         int64_t hi) {
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) dz[i] = (y[i] - y[i] * y[i]) * g[i];
}

/* SiLU: dz = ((y − y·s) + s)·g from s = σ(z) and y = z·s (d/dz zσ(z) = σ(1 + z(1 − σ)) = σ + y(1 − σ));
 * y − y·s first: for a large z, s = 1 and y − y·s = 0 exactly, where (s + y) − y·s loses s to y's rounding */
INLINE void NAME(silu_backward_range)(const T *restrict s, const T *restrict y, const T *restrict g,
                                      T *restrict dz, int64_t lo, int64_t hi) {
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) dz[i] = ((y[i] - y[i] * s[i]) + s[i]) * g[i];
}

/* GELU: y = z·Φ(z), Φ(z) = ½(1 + erf(z/√2)) (the readable form's arithmetic, z/√2 as z·(1/√2) as
 * torch); Φ is written out too, for the backward */
INLINE void NAME(gelu_forward_range)(const T *restrict z, T *restrict y, T *restrict cdf, int64_t lo, int64_t hi) {
    const T inv_sqrt_2 = (T)0.707106781186547524400844362105;
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) {
        const T zi = z[i];
        const T c = (T)0.5 * ((T)1 + ERF(zi * inv_sqrt_2));
        cdf[i] = c;
        y[i] = zi * c;
    }
}

/* GELU: dz = g·(Φ(z) + z·φ(z)), φ(z) = e^(−z²/2)/√(2π), from z and the saved Φ(z). The exponent
 * −z²/2 ≤ 0 is the exponential's domain (NaN stays NaN; z = ±inf gives ±inf·0 = NaN, as torch). */
INLINE void NAME(gelu_backward_range)(const T *restrict z, const T *restrict cdf, const T *restrict g,
                                      T *restrict dz, int64_t lo, int64_t hi) {
    const T inv_sqrt_2pi = (T)0.398942280401432677939946059934;
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) {
        const T zi = z[i];
        const T pdf = EXP(zi * zi * (T)-0.5) * inv_sqrt_2pi;
        dz[i] = (cdf[i] + zi * pdf) * g[i];
    }
}

/* GELU, tanh approximation: y = ½z(1 + t), t = tanh(√(2/π)(z + 0.044715z³)) (the torch-op fast
 * path's arithmetic, with the tanh above); t is written out too, for the backward */
INLINE void NAME(gelu_tanh_forward_range)(const T *restrict z, T *restrict y, T *restrict t, int64_t lo,
                                          int64_t hi) {
    const T sqrt_2_over_pi = (T)0.797884560802865355879892119869, k = (T)0.044715;
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) {
        const T zi = z[i];
        const T ti = TANH((zi * zi * zi * k + zi) * sqrt_2_over_pi);
        t[i] = ti;
        y[i] = (ti + (T)1) * zi * (T)0.5;
    }
}

/* GELU, tanh approximation y = ½z(1 + t), t = tanh(√(2/π)(z + 0.044715z³)), from z and the saved t:
 * dz = g·(½(1 + t) + ½z·(1 − t²)·√(2/π)(1 + 3·0.044715·z²)) */
INLINE void NAME(gelu_tanh_backward_range)(const T *restrict z, const T *restrict t, const T *restrict g,
                                           T *restrict dz, int64_t lo, int64_t hi) {
    const T sqrt_2_over_pi = (T)0.797884560802865355879892119869, k3 = (T)(3 * 0.044715);
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) {
        const T zi = z[i], ti = t[i];
        const T d_inner = (zi * zi * k3 + (T)1) * sqrt_2_over_pi;
        dz[i] = ((T)0.5 * (ti + (T)1) + (T)0.5 * zi * ((T)1 - ti * ti) * d_inner) * g[i];
    }
}

void NAME(tanh_backward)(const T *y, const T *g, T *dz, int64_t n, int nthreads) {
    SPLIT(n, n, nthreads, NAME(tanh_backward_range)(y, g, dz, lo, hi))
}

void NAME(sigmoid_backward)(const T *y, const T *g, T *dz, int64_t n, int nthreads) {
    SPLIT(n, n, nthreads, NAME(sigmoid_backward_range)(y, g, dz, lo, hi))
}

void NAME(silu_backward)(const T *s, const T *y, const T *g, T *dz, int64_t n, int nthreads) {
    SPLIT(n, n, nthreads, NAME(silu_backward_range)(s, y, g, dz, lo, hi))
}

void NAME(gelu_forward)(const T *z, T *y, T *cdf, int64_t n, int nthreads) {
    SPLIT(n, n, nthreads, NAME(gelu_forward_range)(z, y, cdf, lo, hi))
}

void NAME(gelu_backward)(const T *z, const T *cdf, const T *g, T *dz, int64_t n, int nthreads) {
    SPLIT(n, n, nthreads, NAME(gelu_backward_range)(z, cdf, g, dz, lo, hi))
}

void NAME(gelu_tanh_forward)(const T *z, T *y, T *t, int64_t n, int nthreads) {
    SPLIT(n, n, nthreads, NAME(gelu_tanh_forward_range)(z, y, t, lo, hi))
}

void NAME(gelu_tanh_backward)(const T *z, const T *t, const T *g, T *dz, int64_t n, int nthreads) {
    SPLIT(n, n, nthreads, NAME(gelu_tanh_backward_range)(z, t, g, dz, lo, hi))
}

#endif
