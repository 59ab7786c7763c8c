/* trainlab's one-pass optimizer kernels (see trainlab/optim/native.py).
 *
 * Each exported function takes a list of tensors as arrays of data pointers and element counts and
 * runs one optimizer rule over every element in a single pass: θ, g and each state are read once,
 * θ and each state written once. The arithmetic is the fast path's (ScaleByAdam.update_many,
 * Momentum, ScaleByAdagrad, ScaleByRms), operation for operation and in its order, on numbers of
 * the tensors' type; the scalars arrive as doubles computed by the caller as the fast path computes
 * them and are rounded to that type once, as PyTorch rounds a Python number for a float tensor.
 * Built with -ffp-contract=off, so no a·b + c becomes a fused multiply-add the fast path lacks.
 *
 * Shared by every rule: sign (−1 with maximize, else 1: g ← sign·g, exact) and coupled weight
 * decay (g ← g + λθ, a separate loop so that λ = 0 adds nothing, not even 0·θ).
 *
 * The file is compiled once per element type: the first pass below defines the type and includes
 * the file again for the kernels.
 */
#ifndef T
#include <math.h>
#include <stdint.h>

#define INLINE static inline __attribute__((always_inline))

/* SPLIT(n, nthreads, statement): run the statement over the element range [lo, hi) — for a tensor
 * of at least PARALLEL_MIN elements split into nthreads contiguous chunks on OpenMP threads (the
 * process's runtime: torch's), else once over [0, n) in the calling thread. The statement calls
 * a rule's loop with its flags as constants, so each chunk runs the same vectorized loop; an
 * elementwise rule gives the same numbers whatever the split. */
#define PARALLEL_MIN 32768
#ifdef _OPENMP
#include <omp.h>
#define SPLIT(n, nthreads, ...)                                                          \
    if ((nthreads) > 1 && (n) >= PARALLEL_MIN) {                                         \
        _Pragma("omp parallel num_threads(nthreads)")                                    \
        {                                                                                \
            const int64_t t_ = omp_get_thread_num(), tt_ = omp_get_num_threads();       \
            const int64_t lo = (n) * t_ / tt_, hi = (n) * (t_ + 1) / tt_;                \
            __VA_ARGS__;                                                                 \
        }                                                                                \
    } else {                                                                             \
        const int64_t lo = 0, hi = (n);                                                  \
        __VA_ARGS__;                                                                     \
    }
#else
#define SPLIT(n, nthreads, ...) { const int64_t lo = 0, hi = (n); __VA_ARGS__; }
#endif

#define T float
#define NAME(rule) trainlab_##rule##_f32
#define SQRT sqrtf
#include __FILE__
#undef T
#undef NAME
#undef SQRT

#define T double
#define NAME(rule) trainlab_##rule##_f64
#define SQRT sqrt
#include __FILE__

int trainlab_native_version(void) { return 3; }

#else  /* the kernels, for element type T */

/* the gradient the rule sees: sign·g, plus λθ with coupled weight decay */
INLINE T NAME(grad)(T g, T theta, T sign, T lam, const int coupled) {
    g = sign * g;
    return coupled ? g + lam * theta : g;
}

/* ---- Adam / AdamW ------------------------------------------------------------------------------
 * θ ← θ·shrink (AdamW: 1 − lr·λ, else exactly 1)
 * m ← lerp(m, g, 1 − β₁)            torch.lerp: m + w·(g − m) for w < 0.5, else g − (g − m)·(1 − w)
 * v ← v·β₂ + (1 − β₂)·g·g
 * v̄ = max(v_max, v) with AMSGrad (stored), else v
 * den = √v̄ + ε_term  (inside: √(v̄ + ε_term))
 * θ ← θ + scale·(m/den)             scale = −lr·√c₂/c₁ */
INLINE void NAME(adam_tensor)(T *restrict p, const T *restrict gp, T *restrict m, T *restrict v,
                              T *restrict vmax, int64_t n, T w, T b2, T c2, T eps, T scale, T sign,
                              T lam, T shrink, const int coupled, const int ams, const int inside,
                              const int low_weight) {
    for (int64_t i = 0; i < n; i++) {
        const T g = NAME(grad)(gp[i], p[i], sign, lam, coupled);
        const T theta = p[i] * shrink;
        const T mi = low_weight ? m[i] + w * (g - m[i]) : g - (g - m[i]) * ((T)1 - w);
        T vi = v[i] * b2;
        vi = vi + c2 * g * g;
        m[i] = mi;
        v[i] = vi;
        if (ams) {
            vi = (vmax[i] > vi || vmax[i] != vmax[i]) ? vmax[i] : vi;  /* torch.maximum keeps NaN */
            vmax[i] = vi;
        }
        const T den = inside ? SQRT(vi + eps) : SQRT(vi) + eps;
        p[i] = theta + scale * (mi / den);
    }
}

void NAME(adam)(int64_t count, T **ps, T **gs, T **ms, T **vs, T **vmaxs, const int64_t *sizes,
                double b1, double b2, double eps_term, double scale, int inside, int negate,
                int coupled, double lam, double shrink, int nthreads) {
    const T w = (T)(1.0 - b1), b2_ = (T)b2, c2 = (T)(1.0 - b2), eps = (T)eps_term, scale_ = (T)scale;
    const T sign = negate ? (T)-1 : (T)1, lam_ = (T)lam, shrink_ = (T)shrink;
    const int low = fabs((double)w) < 0.5, ams = vmaxs != 0;
    for (int64_t k = 0; k < count; k++) {
        T *vmax = ams ? vmaxs[k] : 0;
        /* each flag combination gets its own copy of the loop, with the flags as constants */
#define ADAM(C, A, I, L) NAME(adam_tensor)(ps[k] + lo, gs[k] + lo, ms[k] + lo, vs[k] + lo, vmax ? vmax + lo : 0, \
                                           hi - lo, w, b2_, c2, eps, scale_, sign, lam_, shrink_, C, A, I, L)
        SPLIT(sizes[k], nthreads,
        if (low) {
            if (coupled) { if (ams) { if (inside) ADAM(1, 1, 1, 1); else ADAM(1, 1, 0, 1); }
                           else { if (inside) ADAM(1, 0, 1, 1); else ADAM(1, 0, 0, 1); } }
            else { if (ams) { if (inside) ADAM(0, 1, 1, 1); else ADAM(0, 1, 0, 1); }
                   else { if (inside) ADAM(0, 0, 1, 1); else ADAM(0, 0, 0, 1); } }
        } else {
            if (coupled) { if (ams) { if (inside) ADAM(1, 1, 1, 0); else ADAM(1, 1, 0, 0); }
                           else { if (inside) ADAM(1, 0, 1, 0); else ADAM(1, 0, 0, 0); } }
            else { if (ams) { if (inside) ADAM(0, 1, 1, 0); else ADAM(0, 1, 0, 0); }
                   else { if (inside) ADAM(0, 0, 1, 0); else ADAM(0, 0, 0, 0); } }
        })
#undef ADAM
    }
}

/* ---- SGD ---------------------------------------------------------------------------------------
 * with PyTorch-form momentum: buf ← buf·μ + (1 − d)·g (buf ← g at the first step);
 * u = g + μ·buf (Nesterov) or buf; without momentum u = g.   θ ← θ + scale·u, scale = −lr */
INLINE void NAME(sgd_tensor)(T *restrict p, const T *restrict gp, T *restrict buf, int64_t n, T mu,
                             T keep, T scale, T sign, T lam, const int coupled, const int momentum,
                             const int first, const int nesterov) {
    for (int64_t i = 0; i < n; i++) {
        const T g = NAME(grad)(gp[i], p[i], sign, lam, coupled);
        T u = g;
        if (momentum) {
            T b;
            if (first) {
                b = g;
            } else {
                b = buf[i] * mu;
                b = b + keep * g;
            }
            buf[i] = b;
            u = nesterov ? g + mu * b : b;
        }
        p[i] = p[i] + scale * u;
    }
}

void NAME(sgd)(int64_t count, T **ps, T **gs, T **bufs, const int64_t *sizes, double mu, double dampening,
               double scale, int nesterov, int first, int negate, int coupled, double lam, int nthreads) {
    const T mu_ = (T)mu, keep = (T)(1.0 - dampening), scale_ = (T)scale;
    const T sign = negate ? (T)-1 : (T)1, lam_ = (T)lam;
    for (int64_t k = 0; k < count; k++) {
#define SGD(C, M, F, N) NAME(sgd_tensor)(ps[k] + lo, gs[k] + lo, bufs ? bufs[k] + lo : 0, hi - lo, mu_, keep, \
                                         scale_, sign, lam_, C, M, F, N)
        SPLIT(sizes[k], nthreads,
        if (!bufs) { if (coupled) SGD(1, 0, 0, 0); else SGD(0, 0, 0, 0); }
        else if (first) { if (coupled) { if (nesterov) SGD(1, 1, 1, 1); else SGD(1, 1, 1, 0); }
                          else { if (nesterov) SGD(0, 1, 1, 1); else SGD(0, 1, 1, 0); } }
        else { if (coupled) { if (nesterov) SGD(1, 1, 0, 1); else SGD(1, 1, 0, 0); }
               else { if (nesterov) SGD(0, 1, 0, 1); else SGD(0, 1, 0, 0); } })
#undef SGD
    }
}

/* ---- Adagrad -----------------------------------------------------------------------------------
 * r ← r + g·g;  den = √r + ε (inside: √(r + ε)), from the new r, or from the old one with notes
 * 003's variant (include_current = 0);  θ ← θ + scale·(g/den), scale = −lr/(1 + (t − 1)·decay) */
INLINE void NAME(adagrad_tensor)(T *restrict p, const T *restrict gp, T *restrict r, int64_t n, T eps,
                                 T scale, T sign, T lam, const int coupled, const int inside,
                                 const int include_current) {
    for (int64_t i = 0; i < n; i++) {
        const T g = NAME(grad)(gp[i], p[i], sign, lam, coupled);
        const T old = r[i], acc = old + g * g;
        const T seen = include_current ? acc : old;
        const T den = inside ? SQRT(seen + eps) : SQRT(seen) + eps;
        r[i] = acc;
        p[i] = p[i] + scale * (g / den);
    }
}

void NAME(adagrad)(int64_t count, T **ps, T **gs, T **rs, const int64_t *sizes, double eps, double scale,
                   int inside, int include_current, int negate, int coupled, double lam, int nthreads) {
    const T eps_ = (T)eps, scale_ = (T)scale, sign = negate ? (T)-1 : (T)1, lam_ = (T)lam;
    for (int64_t k = 0; k < count; k++) {
#define ADAGRAD(C, I, N) NAME(adagrad_tensor)(ps[k] + lo, gs[k] + lo, rs[k] + lo, hi - lo, eps_, scale_, sign, \
                                              lam_, C, I, N)
        SPLIT(sizes[k], nthreads,
        if (coupled) { if (inside) { if (include_current) ADAGRAD(1, 1, 1); else ADAGRAD(1, 1, 0); }
                       else { if (include_current) ADAGRAD(1, 0, 1); else ADAGRAD(1, 0, 0); } }
        else { if (inside) { if (include_current) ADAGRAD(0, 1, 1); else ADAGRAD(0, 1, 0); }
               else { if (include_current) ADAGRAD(0, 0, 1); else ADAGRAD(0, 0, 0); } })
#undef ADAGRAD
    }
}

/* ---- RMSprop (not centered, no momentum) -------------------------------------------------------
 * r ← r·ρ + (1 − ρ)·g·g;  den = √r + ε (inside: √(r + ε));  θ ← θ + scale·(g/den), scale = −lr */
INLINE void NAME(rmsprop_tensor)(T *restrict p, const T *restrict gp, T *restrict r, int64_t n, T rho,
                                 T c, T eps, T scale, T sign, T lam, const int coupled, const int inside) {
    for (int64_t i = 0; i < n; i++) {
        const T g = NAME(grad)(gp[i], p[i], sign, lam, coupled);
        T ri = r[i] * rho;
        ri = ri + c * g * g;
        r[i] = ri;
        const T den = inside ? SQRT(ri + eps) : SQRT(ri) + eps;
        p[i] = p[i] + scale * (g / den);
    }
}

void NAME(rmsprop)(int64_t count, T **ps, T **gs, T **rs, const int64_t *sizes, double rho, double eps,
                   double scale, int inside, int negate, int coupled, double lam, int nthreads) {
    const T rho_ = (T)rho, c = (T)(1.0 - rho), eps_ = (T)eps, scale_ = (T)scale;
    const T sign = negate ? (T)-1 : (T)1, lam_ = (T)lam;
    for (int64_t k = 0; k < count; k++) {
#define RMSPROP(C, I) NAME(rmsprop_tensor)(ps[k] + lo, gs[k] + lo, rs[k] + lo, hi - lo, rho_, c, eps_, scale_, \
                                           sign, lam_, C, I)
        SPLIT(sizes[k], nthreads,
        if (coupled) { if (inside) RMSPROP(1, 1); else RMSPROP(1, 0); }
        else { if (inside) RMSPROP(0, 1); else RMSPROP(0, 0); })
#undef RMSPROP
    }
}

#endif
