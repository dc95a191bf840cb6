// infer_context.cpp -- context inference from C++: recover an unknown context.
//
// A line-manifold regression y = W(s) x whose slope moves with s: W(0) = 1,
// W(1) = 3. Given inputs and targets made at an unknown s, find s, for the
// whole batch and for each sample. Exits 0 when every answer is within 1e-3.
#include <cmath>
#include <cstdio>
#include <vector>

#include "wmanifold.hpp"

int main() {
    try {
        auto m = wm::make(wm_manifold_line);
        auto net = wm::make(wm_net_create, m.get(), 1, WM_COND_MANIFOLD);
        wm::check(wm_net_dense(net.get(), 1, WM_ACT_NONE), "wm_net_dense");
        wm::check(wm_net_set_loss(net.get(), WM_LOSS_MSE), "wm_net_set_loss");
        wm::check(wm_net_init(net.get(), 1), "wm_net_init");
        const float w0 = 1.0f, w1 = 3.0f, zero = 0.0f;
        wm::check(wm_net_set_control_point(net.get(), 0, 0, &w0, &zero), "set P0");
        wm::check(wm_net_set_control_point(net.get(), 0, 1, &w1, &zero), "set P1");
        const std::vector<float> truth = {0.15f, 0.4f, 0.4f, 0.9f};
        std::vector<float> x = {1.0f, -2.0f, 0.5f, 1.5f}, t(4);
        for (size_t i = 0; i < x.size(); i++)
            t[i] = (1.0f + 2.0f * truth[i]) * x[i];          // y at the sample's s
        wm_batch batch{4, x.data(), nullptr, nullptr, t.data()};
        int bad = 0;
        wm::ContextFit each = wm::infer_context_batch(net.get(), batch, false);
        for (size_t i = 0; i < truth.size(); i++) {
            std::printf("sample %zu: s = %.4f (true %.2f), loss %.2e\n", i, each.s[i], truth[i], each.loss[i]);
            bad += std::fabs(each.s[i] - truth[i]) > 1e-3f;
        }
        batch.n = 2;                                          // samples 1 and 2 share s = 0.4
        batch.x += 1, batch.targets += 1;
        wm::ContextFit one = wm::infer_context_batch(net.get(), batch, true);
        std::printf("shared: s = %.4f (true 0.40), loss %.2e\n", one.s[0], one.loss[0]);
        bad += std::fabs(one.s[0] - 0.4f) > 1e-3f;
        batch.targets = nullptr;                              // an MSE net needs targets
        try {
            wm::infer_context_batch(net.get(), batch, true);
            bad++;
        } catch (const wm::Error &e) {
            std::printf("without targets: %s\n", e.what());
            bad += e.status() != WM_EINVAL;
        }
        return bad ? 1 : 0;
    } catch (const wm::Error &e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
}
