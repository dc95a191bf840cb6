// wmanifold.hpp -- small RAII wrappers over the C API, for C++17 programs.
//
// Copy this file next to your code. Handles are std::unique_ptr with deleters
// that call the matching wm_*_free, so nothing leaks on early returns or
// exceptions; a failing call throws wm::Error carrying the status and the
// library's wm_last_error() text.
//
//     auto m   = wm::make(wm_manifold_circle);
//     auto net = wm::make(wm_net_create, m.get(), 2, WM_COND_MANIFOLD);
//     wm::check(wm_net_dense(net.get(), 2, WM_ACT_NONE), "wm_net_dense");
#ifndef WMANIFOLD_HPP
#define WMANIFOLD_HPP

#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include "wmanifold.h"

namespace wm {

struct ManifoldDeleter {
    void operator()(wm_manifold *m) const noexcept { wm_manifold_free(m); }
};
struct NetDeleter {
    void operator()(wm_net *n) const noexcept { wm_net_free(n); }
};
struct OptimizerDeleter {
    void operator()(wm_optimizer *o) const noexcept { wm_optimizer_free(o); }
};

using Manifold = std::unique_ptr<wm_manifold, ManifoldDeleter>;
using Net = std::unique_ptr<wm_net, NetDeleter>;
// An optimizer points at its net: declare it after the net, so that it is
// destroyed first (members and locals are destroyed in reverse order).
using Optimizer = std::unique_ptr<wm_optimizer, OptimizerDeleter>;

class Error : public std::runtime_error {
public:
    Error(wm_status st, const std::string &what) : std::runtime_error(what), status_(st) {}
    wm_status status() const noexcept { return status_; }

private:
    wm_status status_;
};

// Throw wm::Error unless st is WM_OK. Reads wm_last_error() at once: it is
// thread-local and only valid until this thread's next failing call.
inline void check(wm_status st, const char *call) {
    if (st != WM_OK)
        throw Error(st, std::string(call) + ": " + wm_status_str(st) + ": " + wm_last_error());
}

namespace detail {
template <class T> struct Owner;
template <> struct Owner<wm_manifold> { using type = Manifold; };
template <> struct Owner<wm_net> { using type = Net; };
template <> struct Owner<wm_optimizer> { using type = Optimizer; };
}  // namespace detail

// Call a constructor of the form wm_status f(T **out, args...) and own the
// result: make(wm_manifold_circle), make(wm_net_load, "model.wm"), ...
template <class T, class... Params, class... Args>
typename detail::Owner<T>::type make(wm_status (*create)(T **, Params...), Args &&...args) {
    T *raw = nullptr;
    check(create(&raw, std::forward<Args>(args)...), "create");
    return typename detail::Owner<T>::type(raw);
}

}  // namespace wm

// ---- context inference for a batch: wm_infer_context_batch (one block) ----
#include <vector>

namespace wm {

// The context(s) that best explain a batch (batch.s is ignored): shared =
// true gives one context (s has dim values, loss one), false one per sample
// (s has n x dim, loss n). Throws wm::Error on failure.
struct ContextFit {
    std::vector<float> s;
    std::vector<float> loss;
};
inline ContextFit infer_context_batch(const wm_net *net, const wm_batch &batch, bool shared) {
    const int dim = wm_net_context_dim(net) > 0 ? wm_net_context_dim(net) : 0;
    const size_t rows = shared ? 1 : static_cast<size_t>(batch.n > 0 ? batch.n : 0);
    ContextFit fit{std::vector<float>(rows * static_cast<size_t>(dim) + 1), std::vector<float>(rows + 1)};
    check(wm_infer_context_batch(net, &batch, shared ? 1 : 0, fit.s.data(), fit.loss.data()),
          "wm_infer_context_batch");
    fit.s.resize(rows * static_cast<size_t>(dim));
    fit.loss.resize(rows);
    return fit;
}

}  // namespace wm

#endif  // WMANIFOLD_HPP
