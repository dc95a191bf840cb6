// test_hpp.cpp -- include/wmanifold.hpp: every wrapper of a handle-creating C
// call owns what it creates, and a failure throws wm::Error naming that call.
//
// Prints one line per failed check and "hpp: N passed, M failed"; exits 1 on
// any failure. Run by `make test-hpp` (part of `make test`).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <malloc.h>
#include <new>
#include <type_traits>
#include <unistd.h>

#include "wmanifold.hpp"

// The owners move and never copy (a copy would free twice); moving never throws.
static_assert(!std::is_copy_constructible<wm::Net>::value && !std::is_copy_assignable<wm::Net>::value,
              "wm::Net copies");
static_assert(std::is_nothrow_move_constructible<wm::Manifold>::value &&
                  std::is_nothrow_move_constructible<wm::Net>::value &&
                  std::is_nothrow_move_constructible<wm::Optimizer>::value &&
                  std::is_nothrow_move_assignable<wm::Optimizer>::value,
              "an owner's move can throw");
static_assert(std::is_nothrow_move_constructible<wm::Checkpoint>::value, "wm::Checkpoint's move can throw");
static_assert(std::is_base_of<std::runtime_error, wm::Error>::value, "wm::Error is not a runtime_error");

// Armed (non-zero), the next operator new of at least this many bytes throws
// std::bad_alloc: a wrapper holding C memory while it allocates must free it.
static std::size_t fail_new_from = 0;
void *operator new(std::size_t n) {
    if (fail_new_from && n >= fail_new_from) {
        fail_new_from = 0;
        throw std::bad_alloc();
    }
    if (void *p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void operator delete(void *p) noexcept { std::free(p); }
void operator delete(void *p, std::size_t) noexcept { std::free(p); }

namespace {

int passed = 0, failed = 0;

void expect(bool ok, const std::string &what) {
    if (ok) {
        passed++;
    } else {
        failed++;
        std::printf("FAIL %s\n", what.c_str());
    }
}

// f() must throw wm::Error with this status whose call() is `call` and whose
// message starts with "call: " and carries the library's text.
void expect_throws(const char *call, wm_status status, const std::function<void()> &f) {
    try {
        f();
        expect(false, std::string(call) + ": no exception");
    } catch (const wm::Error &e) {
        const std::string what = e.what();
        const std::string prefix = std::string(call) + ": ";
        expect(e.call() == call, std::string(call) + ": call() is '" + e.call() + "'");
        expect(what.compare(0, prefix.size(), prefix) == 0,
               std::string(call) + ": message '" + what + "' does not start with '" + prefix + "'");
        expect(e.status() == status, std::string(call) + ": status " + wm_status_str(e.status()) +
                                         ", want " + wm_status_str(status));
        expect(what.find(wm_last_error()) != std::string::npos && *wm_last_error(),
               std::string(call) + ": message '" + what + "' lacks wm_last_error()");
    }
}

void line_basis(const float *s, float *c, void *) {
    c[0] = 1.0f - s[0];
    c[1] = s[0];
}

void bad_basis(const float *, float *c, void *) { c[0] = c[1] = NAN; }

std::string temp_path(const char *name) {
    const char *dir = std::getenv("TMPDIR");
    return std::string(dir && *dir ? dir : "/tmp") + "/wm_test_hpp_" + std::to_string(::getpid()) +
           "_" + name;
}

}  // namespace

int main() {
    const std::string missing = temp_path("missing.wm");
    const std::string model = temp_path("model.wm");
    const std::string ckpt = temp_path("ckpt.wm");

    // The case: make(wm_net_load, ...) used to throw "create: ...".
    expect_throws("wm_net_load", WM_EIO, [&] { wm::make(wm_net_load, missing.c_str()); });
    expect_throws("wm_net_load", WM_EIO, [&] { wm::net_load(missing); });

    // Every named wrapper, failing, names its own call.
    expect_throws("wm_manifold_fourier", WM_EINVAL, [] { wm::manifold_fourier(0); });
    expect_throws("wm_manifold_bspline", WM_EINVAL, [] { wm::manifold_bspline(2, 3); });
    expect_throws("wm_manifold_product", WM_EINVAL, [] { wm::manifold_product(nullptr, nullptr); });
    expect_throws("wm_manifold_custom", WM_EINVAL, [] { wm::manifold_custom(1, 2, nullptr, bad_basis); });
    expect_throws("wm_manifold_clone", WM_EINVAL, [] { wm::manifold_clone(nullptr); });
    expect_throws("wm_net_create", WM_EINVAL, [] { wm::net_create(nullptr, 2); });
    expect_throws("wm_net_clone", WM_EINVAL, [] { wm::net_clone(nullptr); });
    expect_throws("wm_net_clone", WM_EINVAL, [] { wm::make(wm_net_clone, nullptr); });
    expect_throws("wm_net_summary", WM_EINVAL, [] { wm::net_summary(nullptr); });
    expect_throws("wm_net_load_custom", WM_EIO, [&] { wm::net_load_custom(missing, line_basis); });
    expect_throws("wm_optimizer_load", WM_EIO, [&] { wm::optimizer_load(missing); });

    // ... and so does make() with each C constructor.
    expect_throws("wm_manifold_fourier", WM_EINVAL, [] { wm::make(wm_manifold_fourier, 0); });
    expect_throws("wm_manifold_bspline", WM_EINVAL, [] { wm::make(wm_manifold_bspline, 2, 3, 0); });
    expect_throws("wm_manifold_product", WM_EINVAL,
                  [] { wm::make(wm_manifold_product, nullptr, nullptr); });
    expect_throws("wm_manifold_custom", WM_EINVAL,
                  [] { wm::make(wm_manifold_custom, 1, 2, nullptr, bad_basis, nullptr); });
    expect_throws("wm_manifold_clone", WM_EINVAL, [] { wm::make(wm_manifold_clone, nullptr); });
    expect_throws("wm_net_create", WM_EINVAL,
                  [] { wm::make(wm_net_create, nullptr, 2, WM_COND_MANIFOLD); });
    expect_throws("wm_net_load_custom", WM_EIO,
                  [&] { wm::make(wm_net_load_custom, missing.c_str(), line_basis, nullptr); });

    // The successful paths own what they create (ASan/valgrind see any leak).
    try {
        std::vector<wm::Manifold> ms;
        ms.push_back(wm::manifold_point());
        ms.push_back(wm::manifold_line());
        ms.push_back(wm::manifold_circle());
        ms.push_back(wm::manifold_fourier(2));
        ms.push_back(wm::manifold_bspline(5, 3, true));
        ms.push_back(wm::manifold_product(ms[1].get(), ms[2].get()));
        ms.push_back(wm::manifold_custom(1, 2, nullptr, line_basis));
        ms.push_back(wm::manifold_clone(ms[5].get()));
        ms.push_back(wm::make(wm_manifold_circle));
        const int dims[] = {0, 1, 1, 1, 1, 2, 1, 2, 1};
        for (size_t i = 0; i < ms.size(); i++)
            expect(ms[i] && wm_manifold_dim(ms[i].get()) == dims[i],
                   "manifold " + std::to_string(i) + " has the wrong dim");

        wm::Net net = wm::net_create(ms[2].get(), 2);
        wm::check(wm_net_dense(net.get(), 2, WM_ACT_NONE), "wm_net_dense");

        // An optimizer on a net without parameters: the state error names its call.
        wm_opt_config cfg = wm_opt_default(WM_OPT_ADAM);
        expect_throws("wm_optimizer_create", WM_ESTATE, [&] { wm::optimizer_create(net.get(), cfg); });
        expect_throws("wm_optimizer_create", WM_ESTATE,
                      [&] { wm::make(wm_optimizer_create, net.get(), &cfg); });
        expect_throws("wm_net_init", WM_ESTATE, [] {
            auto m = wm::manifold_line();
            auto empty = wm::net_create(m.get(), 1);
            wm::check(wm_net_init(empty.get(), 1), "wm_net_init");  // no layers
        });

        wm::check(wm_net_init(net.get(), 7), "wm_net_init");
        wm::Optimizer opt = wm::optimizer_create(net.get(), cfg);
        wm::Optimizer opt2 = wm::make(wm_optimizer_create, net.get(), &cfg);
        const float x[4] = {1, 0, 0, 1}, s[2] = {0.25f, 0.75f};
        const int32_t y[2] = {0, 1};
        wm_batch b{};
        b.n = 2;
        b.x = x;
        b.s = s;
        b.labels = y;
        wm::check(wm_step(opt.get(), &b, nullptr), "wm_step");
        wm::check(wm_net_save(net.get(), model.c_str()), "wm_net_save");
        wm::check(wm_optimizer_save(opt.get(), ckpt.c_str()), "wm_optimizer_save");

        wm::Net loaded = wm::net_load(model);
        wm::Net loaded2 = wm::make(wm_net_load, model.c_str());
        const std::string bytes = wm::net_save_buffer(net.get());
        wm::Net fromb = wm::net_load_buffer(bytes.data(), bytes.size());
        expect_throws("wm_net_load_buffer", WM_EFORMAT,
                      [&] { wm::net_load_buffer(bytes.data(), bytes.size() / 2); });
        expect_throws("wm_net_load_buffer", WM_EFORMAT,
                      [&] { wm::make(wm_net_load_buffer, bytes.data(), bytes.size() - 1); });
        expect_throws("wm_net_load_buffer_custom", WM_EINVAL,
                      [&] { wm::net_load_buffer_custom(bytes.data(), bytes.size(), nullptr); });
        float fb[2];
        wm::check(wm_infer(fromb.get(), x, s, 1, fb), "wm_infer");
        wm::Net twin = wm::net_clone(net.get());
        const std::string table = wm::net_summary(twin.get());
        expect(table.find("total parameters:") != std::string::npos, "net_summary lacks the total");
        wm::Checkpoint c = wm::optimizer_load(ckpt);
        expect(loaded && loaded2 && c.net && c.opt, "loading returned empty handles");
        expect(wm_optimizer_steps(c.opt.get()) == 1, "the checkpoint lost its step count");
        float a[2], a2[2];
        wm::check(wm_infer(net.get(), x, s, 1, a), "wm_infer");
        wm::check(wm_infer(c.net.get(), x, s, 1, a2), "wm_infer");
        expect(std::memcmp(a, a2, sizeof a) == 0, "the checkpoint's net infers differently");

        // A custom-manifold net round-trips through net_load_custom.
        wm::Net cnet = wm::net_create(ms[6].get(), 2);
        wm::check(wm_net_dense(cnet.get(), 2, WM_ACT_NONE), "wm_net_dense");
        wm::check(wm_net_init(cnet.get(), 3), "wm_net_init");
        wm::check(wm_net_save(cnet.get(), model.c_str()), "wm_net_save");
        expect_throws("wm_net_load", WM_EINVAL, [&] { wm::net_load(model); });  // basis needed
        wm::Net cl = wm::net_load_custom(model, line_basis);
        wm::Net cl2 = wm::make(wm_net_load_custom, model.c_str(), line_basis, nullptr);
        wm::Checkpoint none = wm::optimizer_load(ckpt, line_basis);  // fn ignored: not custom
        expect(cl && cl2 && none.net, "custom loads returned empty handles");
    } catch (const wm::Error &e) {
        expect(false, std::string("unexpected wm::Error: ") + e.what());
    }
    std::remove(model.c_str());
    std::remove(ckpt.c_str());

    // The graph layers and per-layer placement (issue 14) from C++: a small
    // residual CNN, FiLM on a point conv; a bad call throws with its name.
    try {
        wm::Manifold c = wm::manifold_circle();
        wm::Net g = wm::net_create(c.get(), 2 * 4 * 4);
        wm::check(wm_net_input_shape(g.get(), 2, 4, 4), "wm_net_input_shape");
        wm::check(wm_net_conv2d(g.get(), 4, 3, 1, 1, WM_ACT_RELU), "wm_net_conv2d");
        wm::check(wm_net_groupnorm(g.get(), 2), "wm_net_groupnorm");
        wm::check(wm_net_film(g.get()), "wm_net_film");
        wm::check(wm_net_residual(g.get(), 0, WM_ACT_RELU), "wm_net_residual");
        wm::check(wm_net_global_avgpool(g.get()), "wm_net_global_avgpool");
        wm::check(wm_net_dense(g.get(), 4, WM_ACT_TANH), "wm_net_dense");
        wm::check(wm_net_layernorm(g.get()), "wm_net_layernorm");
        wm::check(wm_net_dropout(g.get(), 0.1f), "wm_net_dropout");
        wm::check(wm_net_dense(g.get(), 3, WM_ACT_NONE), "wm_net_dense");
        wm::check(wm_net_set_layer_manifold(g.get(), 0, 0), "wm_net_set_layer_manifold");
        expect_throws("wm_net_groupnorm", WM_EINVAL,
                      [&] { wm::check(wm_net_groupnorm(g.get(), 2), "wm_net_groupnorm"); });
        wm::check(wm_net_init(g.get(), 1), "wm_net_init");
        expect(wm_net_n_layers(g.get()) == 9, "graph net layers");
        expect(wm::net_summary(g.get()).find("groupnorm") != std::string::npos, "summary names groupnorm");
    } catch (const wm::Error &e) {
        expect(false, std::string("unexpected wm::Error: ") + e.what());
    }

    // A C buffer held while the wrapper allocates its std::string: when that
    // allocation throws, the C buffer is freed (it leaked: the heap grew by
    // the model's size per failed call).
    try {
        wm::Manifold c = wm::manifold_circle();
        wm::Net big = wm::net_create(c.get(), 64);
        wm::check(wm_net_dense(big.get(), 512, WM_ACT_RELU), "wm_net_dense");
        wm::check(wm_net_init(big.get(), 1), "wm_net_init");
        const size_t len = wm::net_save_buffer(big.get()).size();
        const struct mallinfo2 before = mallinfo2();
        int threw = 0;
        for (int i = 0; i < 4; i++) {
            fail_new_from = len;
            try {
                wm::net_save_buffer(big.get());
            } catch (const std::bad_alloc &) {
                threw++;
            }
        }
        fail_new_from = 0;
        const struct mallinfo2 after = mallinfo2();
        const size_t used0 = before.uordblks + before.hblkhd, used1 = after.uordblks + after.hblkhd;
        if (threw == 0) {  // valgrind replaces operator new, ours included: it never throws there
            std::printf("skip net_save_buffer under a failing allocation: operator new is not this "
                        "program's (valgrind?)\n");
        } else {
            expect(threw == 4, "net_save_buffer: the armed allocation threw " + std::to_string(threw) +
                                   " times of 4");
            expect(used1 < used0 + len, "net_save_buffer leaks its C buffer when std::string throws (heap +" +
                                            std::to_string(used1 - used0) + " bytes, model " +
                                            std::to_string(len) + ")");
        }
    } catch (const wm::Error &e) {
        expect(false, std::string("unexpected wm::Error: ") + e.what());
    }

    // check() names what it is given.
    try {
        wm::check(WM_EINVAL, "wm_net_dense");
        expect(false, "check(WM_EINVAL) did not throw");
    } catch (const wm::Error &e) {
        expect(e.call() == "wm_net_dense" && std::strncmp(e.what(), "wm_net_dense: ", 14) == 0,
               std::string("check: ") + e.what());
    }

    std::printf("hpp: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
