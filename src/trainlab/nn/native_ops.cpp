/* trainlab's C++ operators (see trainlab/native_build.py, TorchOpLibrary, and nn/native_layers.py).
 *
 * trainlab::layer_norm(x, weight?, bias?, eps, k) is layer norm over the last k dimensions of x:
 * the same two C kernels (native_norm.c) as the Python autograd.Function in nn/normalization.py,
 * called with the same arguments, behind an autograd node of torch's own (a C++ Function). At MNIST
 * sizes (128 × 256) the Python Function's apply, context, saved tensors and backward call cost more
 * than the kernels' difference to torch's; here they cost what torch.nn.LayerNorm's node costs.
 *
 * This file holds no arithmetic of layer norm's fast path: the kernels are not linked in but handed
 * over as addresses (trainlab_bind_norm_kernels, from the ctypes-loaded library), so both paths
 * run the very same machine code and agree to the last bit. The one formula here is the readable
 * form, for a differentiable backward (create_graph=True), as the Python Function does it:
 *     μ = mean(x),  σ² = mean((x − μ)²),  y = (x − μ)/√(σ² + ε)·γ + β     over the last k dims
 * differentiated by autograd.
 *
 * The operator expects what the Python side checked (native_layers.usable): CPU tensors, dense and
 * contiguous, float32 or float64, γ and β of x's dtype, no functorch transform and no torch.compile
 * tracing; it checks the dtype, contiguity and device again and refuses otherwise.
 */
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <vector>

namespace trainlab {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

template <typename T>
struct Kernels {  // the C kernels' signatures (native_norm.c), set by trainlab_bind_norm_kernels
    using Forward = void (*)(int64_t R, int64_t D, const T *x, const T *w, const T *b, double eps, T *y, T *mean,
                             T *rstd, int nthreads);
    using Backward = int (*)(int64_t R, int64_t D, const T *g, const T *x, const T *mean, const T *rstd, const T *w,
                             T *dx, T *dw, T *db, int nthreads);
    static Forward forward;
    static Backward backward;
};
template <typename T> typename Kernels<T>::Forward Kernels<T>::forward = nullptr;
template <typename T> typename Kernels<T>::Backward Kernels<T>::backward = nullptr;

template <typename T>
const T *data(const at::Tensor &t) {  // NULL for an absent γ, β or an unwanted gradient
    return t.defined() ? static_cast<const T *>(t.const_data_ptr()) : nullptr;
}

template <typename T>
T *mutable_data(const at::Tensor &t) {
    return t.defined() ? static_cast<T *>(t.mutable_data_ptr()) : nullptr;
}

at::Tensor value(const std::optional<at::Tensor> &t) {
    return t.has_value() ? *t : at::Tensor();
}

/* rows R and row length D of x normalized over its last k dimensions */
std::pair<int64_t, int64_t> rows_and_length(const at::Tensor &x, int64_t k) {
    int64_t d = 1;
    for (int64_t i = x.dim() - k; i < x.dim(); i++) d *= x.size(i);
    return {d == 0 ? 0 : x.numel() / d, d};
}

void check(const at::Tensor &x, const at::Tensor &w, const at::Tensor &b, int64_t k) {
    TORCH_CHECK(x.device().is_cpu() && x.layout() == at::kStrided && x.is_contiguous(),
                "trainlab::layer_norm takes a dense, contiguous CPU tensor");
    TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
                "trainlab::layer_norm takes float32 or float64, got ", x.scalar_type());
    TORCH_CHECK(k >= 1 && k <= x.dim(), "trainlab::layer_norm: k = ", k, " for a tensor of ", x.dim(), " dimensions");
    for (const at::Tensor *t : {&w, &b}) {
        TORCH_CHECK(!t->defined() || (t->scalar_type() == x.scalar_type() && t->device().is_cpu() &&
                                      t->is_contiguous() && t->numel() == rows_and_length(x, k).second),
                    "trainlab::layer_norm: γ and β must be contiguous CPU tensors of x's dtype, one value per "
                    "normalized position");
    }
}

/* the readable form, differentiable: the double backward's graph */
at::Tensor readable(const at::Tensor &x, const at::Tensor &w, const at::Tensor &b, double eps, int64_t k) {
    std::vector<int64_t> dims;
    for (int64_t i = x.dim() - k; i < x.dim(); i++) dims.push_back(i);
    const at::Tensor mu = x.mean(dims, /*keepdim=*/true);
    const at::Tensor var = x.sub(mu).square().mean(dims, /*keepdim=*/true);
    at::Tensor y = x.sub(mu).div(var.add(eps).sqrt());
    if (w.defined()) y = y.mul(w);
    if (b.defined()) y = y.add(b);
    return y;
}

class LayerNormFunction : public torch::autograd::Function<LayerNormFunction> {
  public:
    static at::Tensor forward(AutogradContext *ctx, const at::Tensor &x, const std::optional<at::Tensor> &weight,
                              const std::optional<at::Tensor> &bias, double eps, int64_t k) {
        const at::Tensor w = value(weight), b = value(bias);
        check(x, w, b, k);
        const auto [rows, d] = rows_and_length(x, k);
        at::Tensor y = at::empty_like(x);
        at::Tensor stats = at::empty({2, rows}, x.options());  // μ, 1/√(σ² + ε) per row, as torch saves them
        AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "trainlab::layer_norm", [&] {
            TORCH_CHECK(Kernels<scalar_t>::forward, "trainlab::layer_norm: the kernels are not bound");
            scalar_t *at_ = stats.mutable_data_ptr<scalar_t>();
            Kernels<scalar_t>::forward(rows, d, data<scalar_t>(x), data<scalar_t>(w), data<scalar_t>(b), eps,
                                       y.mutable_data_ptr<scalar_t>(), at_, at_ + rows, at::get_num_threads());
        });
        ctx->save_for_backward({x, w, b, stats});
        ctx->saved_data["eps"] = eps;
        ctx->saved_data["k"] = k;
        return y;
    }

    static variable_list backward(AutogradContext *ctx, variable_list grads) {
        const variable_list saved = ctx->get_saved_variables();
        const at::Tensor &x = saved[0], &w = saved[1], &b = saved[2], &stats = saved[3];
        const double eps = ctx->saved_data["eps"].toDouble();
        const int64_t k = ctx->saved_data["k"].toInt();
        // the autograd edges are the defined tensors among x, γ, β, in that order
        const size_t edge_w = 1, edge_b = w.defined() ? 2 : 1;
        const bool want_x = ctx->needs_input_grad(0), want_w = w.defined() && ctx->needs_input_grad(edge_w),
                   want_b = b.defined() && ctx->needs_input_grad(edge_b);
        at::Tensor dx, dw, db;
        if (at::GradMode::is_enabled()) {  // create_graph=True: differentiate the readable form
            std::vector<at::Tensor> inputs;
            if (want_x) inputs.push_back(x);
            if (want_w) inputs.push_back(w);
            if (want_b) inputs.push_back(b);
            const variable_list out = torch::autograd::grad({readable(x, w, b, eps, k)}, inputs, {grads[0]},
                                                            /*retain_graph=*/true, /*create_graph=*/true,
                                                            /*allow_unused=*/true);
            size_t i = 0;
            if (want_x) dx = out[i++];
            if (want_w) dw = out[i++];
            if (want_b) db = out[i++];
            return {dx, dw, db, at::Tensor(), at::Tensor()};
        }
        const at::Tensor g = grads[0].contiguous();
        const auto [rows, d] = rows_and_length(x, k);
        if (want_x) dx = at::empty_like(x);
        if (want_w) dw = at::empty_like(w);
        if (want_b) db = at::empty_like(b);
        int failed = 0;
        AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "trainlab::layer_norm backward", [&] {
            const scalar_t *at_ = data<scalar_t>(stats);
            failed = Kernels<scalar_t>::backward(rows, d, data<scalar_t>(g), data<scalar_t>(x), at_, at_ + rows,
                                                 data<scalar_t>(w), mutable_data<scalar_t>(dx),
                                                 mutable_data<scalar_t>(dw), mutable_data<scalar_t>(db),
                                                 at::get_num_threads());
        });
        TORCH_CHECK_WITH(OutOfMemoryError, !failed, "layer norm's backward could not allocate the sums for ∂L/∂γ, ",
                         "∂L/∂β (", 2 * d, " doubles per thread)");
        return {dx, dw, db, at::Tensor(), at::Tensor()};
    }
};

at::Tensor layer_norm(const at::Tensor &x, const std::optional<at::Tensor> &weight,
                      const std::optional<at::Tensor> &bias, double eps, int64_t k) {
    return LayerNormFunction::apply(x, weight, bias, eps, k);
}

}  // namespace trainlab

TORCH_LIBRARY(trainlab, m) {
    m.def("layer_norm(Tensor x, Tensor? weight, Tensor? bias, float eps, int k) -> Tensor");
}

TORCH_LIBRARY_IMPL(trainlab, CompositeImplicitAutograd, m) {
    m.impl("layer_norm", trainlab::layer_norm);
}

/* the C kernels of native_norm.c, by address (called through ctypes once the library is loaded) */
extern "C" void trainlab_bind_norm_kernels(void *forward32, void *backward32, void *forward64, void *backward64) {
    using trainlab::Kernels;
    Kernels<float>::forward = reinterpret_cast<Kernels<float>::Forward>(forward32);
    Kernels<float>::backward = reinterpret_cast<Kernels<float>::Backward>(backward32);
    Kernels<double>::forward = reinterpret_cast<Kernels<double>::Forward>(forward64);
    Kernels<double>::backward = reinterpret_cast<Kernels<double>::Backward>(backward64);
}
