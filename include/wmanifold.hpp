// wmanifold.hpp -- RAII wrappers over libwmanifold's C API, for C++11 and later
// (make test-hpp builds its test as C++11, 14, 17 and 20).
//
// Installed beside wmanifold.h by `make install`, so `#include <wmanifold.hpp>`
// with the flags of `pkg-config --cflags --libs wmanifold`. Header-only: it
// adds nothing to the library's ABI.
//
// Handles are std::unique_ptr with deleters that call the matching wm_*_free,
// so nothing leaks on early returns or exceptions. Every C call that creates a
// handle has a wrapper here that returns the owner and throws wm::Error on
// failure; the error names the C call that failed, carries its status and the
// library's wm_last_error() text:
//
//     auto m   = wm::manifold_circle();
//     auto net = wm::net_create(m.get(), 2);          // WM_COND_MANIFOLD
//     wm::check(wm_net_dense(net.get(), 2, WM_ACT_NONE), "wm_net_dense");
//     auto loaded = wm::net_load("model.wm");         // throws "wm_net_load: ..."
//
// The generic form takes the C constructor itself and names it the same way:
//     auto c = wm::make(wm_manifold_circle);
//     auto n = wm::make(wm_net_load, "model.wm");     // throws "wm_net_load: ..."
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

// A failed call: status() is its wm_status, call() the C function's name, and
// what() reads "CALL: STATUS TEXT: wm_last_error()".
class Error : public std::runtime_error {
public:
    Error(wm_status st, const std::string &call, const std::string &what)
        : std::runtime_error(what), status_(st), call_(call) {}
    Error(wm_status st, const std::string &what) : Error(st, std::string(), what) {}
    wm_status status() const noexcept { return status_; }
    const std::string &call() const noexcept { return call_; }

private:
    wm_status status_;
    std::string call_;
};

// Throw wm::Error unless st is WM_OK; `call` names the C function. Reads
// wm_last_error() at once: it is thread-local and only valid until this
// thread's next failing call.
inline void check(wm_status st, const char *call) {
    if (st != WM_OK)
        throw Error(st, call, std::string(call) + ": " + wm_status_str(st) + ": " + wm_last_error());
}

// ---- every C call that creates a handle ---------------------------------------

inline Manifold manifold_point() {
    wm_manifold *m = nullptr;
    check(wm_manifold_point(&m), "wm_manifold_point");
    return Manifold(m);
}
inline Manifold manifold_line() {
    wm_manifold *m = nullptr;
    check(wm_manifold_line(&m), "wm_manifold_line");
    return Manifold(m);
}
inline Manifold manifold_circle() {
    wm_manifold *m = nullptr;
    check(wm_manifold_circle(&m), "wm_manifold_circle");
    return Manifold(m);
}
inline Manifold manifold_fourier(int harmonics) {
    wm_manifold *m = nullptr;
    check(wm_manifold_fourier(&m, harmonics), "wm_manifold_fourier");
    return Manifold(m);
}
inline Manifold manifold_bspline(int n_control, int degree, bool periodic = false) {
    wm_manifold *m = nullptr;
    check(wm_manifold_bspline(&m, n_control, degree, periodic ? 1 : 0), "wm_manifold_bspline");
    return Manifold(m);
}
// A x B; the result owns copies, so a and b may be released afterwards.
inline Manifold manifold_product(const wm_manifold *a, const wm_manifold *b) {
    wm_manifold *m = nullptr;
    check(wm_manifold_product(&m, a, b), "wm_manifold_product");
    return Manifold(m);
}
// fn must stay callable, with user valid, while the manifold or any net on it lives.
inline Manifold manifold_custom(int dim, int n_basis, const int *periodic, wm_basis_fn fn,
                                void *user = nullptr) {
    wm_manifold *m = nullptr;
    check(wm_manifold_custom(&m, dim, n_basis, periodic, fn, user), "wm_manifold_custom");
    return Manifold(m);
}
inline Manifold manifold_clone(const wm_manifold *src) {
    wm_manifold *m = nullptr;
    check(wm_manifold_clone(&m, src), "wm_manifold_clone");
    return Manifold(m);
}
inline Net net_create(const wm_manifold *m, int n_inputs, wm_conditioning cond = WM_COND_MANIFOLD) {
    wm_net *n = nullptr;
    check(wm_net_create(&n, m, n_inputs, cond), "wm_net_create");
    return Net(n);
}
// A net from the bytes of a model file (wm_net_load_buffer).
inline Net net_load_buffer(const void *buf, size_t len) {
    wm_net *n = nullptr;
    check(wm_net_load_buffer(&n, buf, len), "wm_net_load_buffer");
    return Net(n);
}
inline Net net_load_buffer_custom(const void *buf, size_t len, wm_basis_fn fn, void *user = nullptr) {
    wm_net *n = nullptr;
    check(wm_net_load_buffer_custom(&n, buf, len, fn, user), "wm_net_load_buffer_custom");
    return Net(n);
}
// The bytes wm_net_save would write (wm_net_save_buffer), as a std::string.
// The C buffer is owned at once, so a std::bad_alloc from the copy frees it.
struct BufferDeleter {
    void operator()(void *p) const noexcept { wm_free(p); }
};
inline std::string net_save_buffer(const wm_net *net) {
    void *buf = nullptr;
    size_t len = 0;
    check(wm_net_save_buffer(net, &buf, &len), "wm_net_save_buffer");
    const std::unique_ptr<void, BufferDeleter> owned(buf);
    return std::string(static_cast<const char *>(buf), len);
}
// An independent deep copy of net (wm_net_clone).
inline Net net_clone(const wm_net *src) {
    wm_net *n = nullptr;
    check(wm_net_clone(&n, src), "wm_net_clone");
    return Net(n);
}
// The net as a readable table (wm_net_summary).
inline std::string net_summary(const wm_net *net) {
    std::string text(4096, '\0');
    for (;;) {
        check(wm_net_summary(net, &text[0], text.size()), "wm_net_summary");
        const size_t len = std::char_traits<char>::length(text.c_str());
        if (len + 1 < text.size()) {
            text.resize(len);
            return text;
        }
        text.assign(text.size() * 4, '\0');
    }
}
inline Net net_load(const std::string &path) {
    wm_net *n = nullptr;
    check(wm_net_load(&n, path.c_str()), "wm_net_load");
    return Net(n);
}
inline Net net_load_custom(const std::string &path, wm_basis_fn fn, void *user = nullptr) {
    wm_net *n = nullptr;
    check(wm_net_load_custom(&n, path.c_str(), fn, user), "wm_net_load_custom");
    return Net(n);
}
// The optimizer keeps a pointer to net, which must outlive it.
inline Optimizer optimizer_create(wm_net *net, const wm_opt_config &cfg) {
    wm_optimizer *o = nullptr;
    check(wm_optimizer_create(&o, net, &cfg), "wm_optimizer_create");
    return Optimizer(o);
}

// A checkpoint loaded by wm_optimizer_load: the net, and the optimizer on it
// (declared after the net, so destroyed first).
struct Checkpoint {
    Net net;
    Optimizer opt;
};
inline Checkpoint optimizer_load(const std::string &path, wm_basis_fn fn = nullptr,
                                 void *user = nullptr) {
    wm_optimizer *o = nullptr;
    wm_net *n = nullptr;
    check(wm_optimizer_load(&o, &n, path.c_str(), fn, user), "wm_optimizer_load");
    Checkpoint c;
    c.net.reset(n);
    c.opt.reset(o);
    return c;
}

// ---- the generic form -----------------------------------------------------------

namespace detail {
template <class T> struct Owner;
template <> struct Owner<wm_manifold> { using type = Manifold; };
template <> struct Owner<wm_net> { using type = Net; };
template <> struct Owner<wm_optimizer> { using type = Optimizer; };

// Function pointers compare equal only to themselves, so a constructor's name
// can be looked up by its address. (Casts to void (*)(void) are the portable
// way to hold any function pointer.)
using AnyFn = void (*)(void);
template <class F> AnyFn any_fn(F *f) noexcept { return reinterpret_cast<AnyFn>(f); }

inline const char *constructor_name(AnyFn f) noexcept {
    static const struct {
        AnyFn fn;
        const char *name;
    } table[] = {
        {any_fn(&wm_manifold_point), "wm_manifold_point"},
        {any_fn(&wm_manifold_line), "wm_manifold_line"},
        {any_fn(&wm_manifold_circle), "wm_manifold_circle"},
        {any_fn(&wm_manifold_fourier), "wm_manifold_fourier"},
        {any_fn(&wm_manifold_bspline), "wm_manifold_bspline"},
        {any_fn(&wm_manifold_product), "wm_manifold_product"},
        {any_fn(&wm_manifold_custom), "wm_manifold_custom"},
        {any_fn(&wm_manifold_clone), "wm_manifold_clone"},
        {any_fn(&wm_net_create), "wm_net_create"},
        {any_fn(&wm_net_clone), "wm_net_clone"},
        {any_fn(&wm_net_load_buffer), "wm_net_load_buffer"},
        {any_fn(&wm_net_load_buffer_custom), "wm_net_load_buffer_custom"},
        {any_fn(&wm_net_load), "wm_net_load"},
        {any_fn(&wm_net_load_custom), "wm_net_load_custom"},
        {any_fn(&wm_optimizer_create), "wm_optimizer_create"},
    };
    for (const auto &e : table)
        if (e.fn == f) return e.name;
    return "a wm_* constructor";  // one this header predates
}
}  // namespace detail

// Call a constructor of the form wm_status f(T **out, args...) and own the
// result: make(wm_manifold_circle), make(wm_net_load, "model.wm"), ...
// A failure throws wm::Error naming f ("wm_net_load: ...").
template <class T, class... Params, class... Args>
typename detail::Owner<T>::type make(wm_status (*create)(T **, Params...), Args &&...args) {
    T *raw = nullptr;
    const wm_status st = create(&raw, std::forward<Args>(args)...);
    if (st != WM_OK) check(st, detail::constructor_name(detail::any_fn(create)));
    return typename detail::Owner<T>::type(raw);
}

}  // namespace wm

// ---- context inference for a batch: wm_infer_context_batch ----
#include <vector>

namespace wm {

// The context(s) that best explain a batch (batch.s is ignored): shared =
// true gives one context (s has dim values, loss one), false one per sample
// (s has n x dim, loss n). Throws wm::Error naming wm_infer_context_batch.
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
