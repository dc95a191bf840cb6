// train.cpp -- libwmanifold from C++17: a circle-manifold classifier of
// rotated points, with RAII handles (wmanifold.hpp, installed beside
// wmanifold.h) and exceptions that name the failing call.
//
// The task: two Gaussian blobs at (-1, 0) and (+1, 0), the whole picture
// rotated by the angle 2 pi s. Which blob a point belongs to depends on s, so
// the network's weights must turn with s: a circle manifold W(s).
//
//   train [--steps N] [--seed S] [--threads T]
//
// Exits 0 when the net has learned the task (held-out accuracy above 90%),
// many-threaded inference agrees with one thread, and a bad call throws.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "wmanifold.hpp"

namespace {

struct Data {
    std::vector<float> x, s;  // n x 2 points, n contexts
    std::vector<int32_t> y;   // n labels
    int n = 0;
};

Data rotated_points(int n, std::mt19937 &rng) {
    const double pi = std::acos(-1.0);
    std::normal_distribution<float> noise(0.0f, 0.3f);
    std::uniform_real_distribution<float> unit(0.0f, 1.0f);
    Data d;
    d.n = n;
    for (int i = 0; i < n; i++) {
        const int32_t label = unit(rng) < 0.5f ? 0 : 1;
        const float s = unit(rng);
        const float px = (label ? 1.0f : -1.0f) + noise(rng), py = noise(rng);
        const float a = static_cast<float>(2 * pi * s);
        d.x.push_back(px * std::cos(a) - py * std::sin(a));
        d.x.push_back(px * std::sin(a) + py * std::cos(a));
        d.s.push_back(s);
        d.y.push_back(label);
    }
    return d;
}

wm_batch batch_of(const Data &d) {
    wm_batch b{};
    b.n = d.n;
    b.x = d.x.data();
    b.s = d.s.data();
    b.labels = d.y.data();
    return b;
}

// Inference from several threads at once, each with its own caller-owned
// workspace (wm_infer_ws never allocates); returns the outputs.
std::vector<float> infer_threaded(const wm_net *net, const Data &d, int n_threads) {
    const int n_out = wm_net_n_outputs(net);
    std::vector<float> out(static_cast<size_t>(d.n) * n_out);
    std::vector<std::thread> pool;
    std::vector<wm_status> status(n_threads, WM_OK);
    const int chunk = (d.n + n_threads - 1) / n_threads;
    for (int t = 0; t < n_threads; t++) {
        pool.emplace_back([&, t] {
            const int lo = std::min(d.n, t * chunk), hi = std::min(d.n, lo + chunk);
            std::vector<unsigned char> ws(wm_infer_workspace_size(net, chunk));
            status[t] = wm_infer_ws(net, &d.x[2 * lo], &d.s[lo], hi - lo,
                                    &out[static_cast<size_t>(lo) * n_out], ws.data(), ws.size());
        });
    }
    for (auto &th : pool) th.join();
    for (wm_status st : status) wm::check(st, "wm_infer_ws");
    return out;
}

int usage(const char *argv0, int code) {
    std::printf("usage: %s [--steps N] [--seed S] [--threads T]\n"
                "Train a circle-manifold classifier of rotated points and check it.\n",
                argv0);
    return code;
}

}  // namespace

int main(int argc, char **argv) {
    int steps = 300, threads = 4;
    unsigned seed = 1;
    for (int i = 1; i < argc; i++) {
        const bool has_value = i + 1 < argc;
        if (!std::strcmp(argv[i], "--steps") && has_value) steps = std::atoi(argv[++i]);
        else if (!std::strcmp(argv[i], "--seed") && has_value) seed = std::strtoul(argv[++i], nullptr, 10);
        else if (!std::strcmp(argv[i], "--threads") && has_value) threads = std::atoi(argv[++i]);
        else return usage(argv[0], std::strcmp(argv[i], "--help") ? 2 : 0);
    }
    if (steps < 1 || threads < 1) return usage(argv[0], 2);

    try {
        std::printf("libwmanifold %s\n", wm_version());
        std::mt19937 rng(seed);

        // The net keeps its own copy of the manifold, so m can go right away.
        wm::Net net;
        {
            auto m = wm::manifold_circle();
            net = wm::net_create(m.get(), 2, WM_COND_MANIFOLD);
        }
        wm::check(wm_net_dense(net.get(), 16, WM_ACT_TANH), "wm_net_dense");
        wm::check(wm_net_dense(net.get(), 2, WM_ACT_NONE), "wm_net_dense");
        wm::check(wm_net_init(net.get(), seed), "wm_net_init");

        wm_opt_config cfg = wm_opt_default(WM_OPT_ADAM);
        cfg.lr = 0.02f;
        auto opt = wm::optimizer_create(net.get(), cfg);  // after net: freed first

        const Data test = rotated_points(1000, rng);
        const wm_batch test_batch = batch_of(test);
        float loss0 = 0, acc0 = 0;
        wm::check(wm_evaluate(net.get(), &test_batch, &loss0, &acc0), "wm_evaluate");

        for (int t = 0; t < steps; t++) {
            const Data d = rotated_points(64, rng);
            const wm_batch b = batch_of(d);
            float loss = 0;
            wm::check(wm_step(opt.get(), &b, &loss), "wm_step");
            if (t % 100 == 0) std::printf("step %4d  loss %.4f\n", t, loss);
        }
        float loss1 = 0, acc1 = 0;
        wm::check(wm_evaluate(net.get(), &test_batch, &loss1, &acc1), "wm_evaluate");
        std::printf("held-out: loss %.4f -> %.4f, accuracy %.3f -> %.3f\n", loss0, loss1, acc0,
                    acc1);

        // Threads, each with its own workspace, must agree with plain wm_infer.
        std::vector<float> serial(static_cast<size_t>(test.n) * 2);
        wm::check(wm_infer(net.get(), test.x.data(), test.s.data(), test.n, serial.data()),
                  "wm_infer");
        const bool same = infer_threaded(net.get(), test, threads) == serial;
        std::printf("%d-thread inference %s single-thread\n", threads,
                    same ? "matches" : "DIFFERS FROM");

        // Errors arrive as exceptions with the library's explanation.
        bool threw = false;
        try {
            const float bad_s = NAN;
            float out[2];
            wm::check(wm_infer(net.get(), test.x.data(), &bad_s, 1, out), "wm_infer");
        } catch (const wm::Error &e) {
            threw = e.status() == WM_EINVAL && std::strlen(e.what()) > 0;
            std::printf("a NaN context is refused: %s\n", e.what());
        }

        const bool ok = acc1 > 0.9f && loss1 < loss0 && same && threw;
        std::printf("%s\n", ok ? "OK" : "FAILED");
        return ok ? 0 : 1;
    } catch (const wm::Error &e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
