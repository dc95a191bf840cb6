/**
 * @file wmanifold_mpi.h
 * @brief libwmanifold_mpi: data-parallel training of libwmanifold nets on MPI.
 *
 * Every rank of a communicator holds a net of the same architecture and an
 * optimizer of the same settings; each feeds its own shard of a global batch
 * to wm_mpi_step, which all-reduces the gradient (wm_net_n_params floats,
 * weighted by shard sizes, in buckets started while the backward pass still
 * runs) so that every rank applies the update one process would compute from the whole
 * batch, to float rounding, and the ranks stay bitwise equal to each other.
 *
 *     MPI_Init(&argc, &argv);
 *     ... build net and opt the same way on every rank ...
 *     wm_mpi_broadcast(net, opt, 0, MPI_COMM_WORLD);      // start equal
 *     for (...) wm_mpi_step(opt, &my_shard, MPI_COMM_WORLD, &loss);
 *     wm_mpi_check(net, MPI_COMM_WORLD);                  // still equal?
 *     if (rank == 0) wm_optimizer_save(opt, "ckpt.wmn");  // checkpoint
 *
 * Link with -lwmanifold_mpi -lwmanifold and your MPI (pkg-config
 * wmanifold_mpi). The core library knows nothing of MPI.
 *
 * Conventions (those of wmanifold.h, plus): every call here is collective:
 * each rank of comm must make it, in the same order, with the same root.
 * Errors are collective too: the ranks agree on one status before anything
 * changes, so every rank returns the same status (the lowest failing rank's)
 * and wm_last_error() on every rank names that rank and its reason; on
 * failure no rank has changed its net or optimizer. Calls on one comm must
 * come from one thread per rank at a time (the MPI thread level
 * MPI_THREAD_FUNNELED is enough).
 */
#ifndef WMANIFOLD_MPI_H
#define WMANIFOLD_MPI_H

#include <mpi.h>

#include "wmanifold.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Copy rank root's parameters (and, if opt != NULL, its optimizer's
 * moments and step count) to every other rank of comm, so that training
 * starts (or resumes from a checkpoint that only root loaded) from the same
 * point everywhere. net: an initialised net on every rank, all of the same
 * architecture (layers, sizes, manifold), compared before anything is
 * copied. opt: NULL on every rank, or on every rank an optimizer on net of
 * the same kind. The settings (lr, betas, ...) are not copied: create the
 * optimizers alike. Allocates a buffer of the parameters' size on the
 * other ranks for the duration of the call.
 * Returns WM_OK, WM_EINVAL (NULL net, opt NULL on some ranks only, root out
 * of range, architectures or optimizer kinds that differ between ranks),
 * WM_ESTATE (a net not initialised), WM_ENOMEM, WM_EIO (an MPI call failed);
 * the same on every rank. */
WM_API wm_status wm_mpi_broadcast(wm_net *net, wm_optimizer *opt, int root, MPI_Comm comm);

/** The bucket size wm_mpi_step uses: 256 KiB of gradient per non-blocking
 * all-reduce (docs/distributed.md: what the cost model and the per-layer
 * backward times measured for the demo MLP say about the choice). */
#define WM_MPI_BUCKET_BYTES ((size_t)256 * 1024)

/** One data-parallel step: wm_grad on this rank's shard, the gradient
 * all-reduced (MPI_SUM) weighted by shard sizes (rank r scales its
 * shard-mean gradient by n_r / N, N = the sum of all n_r, so the sum is the
 * mean over the global batch), then wm_apply on every rank. The all-reduce
 * overlaps the backward pass: it is cut into buckets of
 * WM_MPI_BUCKET_BYTES (see wm_mpi_step_buckets), each started with
 * MPI_Iallreduce as soon as the backward pass has finished its part. The result is,
 * to float rounding, what wm_step on the concatenation of the shards in
 * rank order gives one process (docs/distributed.md derives the bound),
 * and bitwise the same on every rank. Shards may differ in size, and a
 * rank may pass shard->n = 0 (its arrays may then be NULL): it contributes
 * no weight and still takes part. loss_out (may be NULL) receives the mean
 * loss over the global batch, before the update, on every rank.
 * Costs, besides the gradient's 4 x wm_net_n_params bytes, two small
 * non-blocking all-reduces started before the pass (N; the bucket size,
 * parameter count and a hash of the architecture, compared) and one small MPI_Allreduce after it (32
 * bytes: N, the loss and the status).
 * Returns WM_OK, WM_EINVAL (NULL opt or shard, n < 0, any rank's bad shard
 * as wm_step judges it, no samples on any rank), WM_ENUMERIC (a non-finite
 * loss on some rank, or a non-finite update), WM_ENOMEM, WM_EIO (an MPI call
 * failed); the same on every rank, with nothing changed. */
WM_API wm_status wm_mpi_step(wm_optimizer *opt, const wm_batch *shard, MPI_Comm comm,
                             float *loss_out);

/** wm_mpi_step with a chosen bucket size. The backward pass (wm_grad_notify)
 * hands over each layer's gradient block as soon as it is final, last layer
 * first; consecutive blocks are gathered into a bucket until it holds at
 * least bucket_bytes, and the first layer's block always closes one; each
 * bucket is then scaled by n_r / N and its in-place MPI_Iallreduce started,
 * so the last layers' gradients travel while the first layers are still
 * differentiated. All are waited for before wm_apply. A bucket never splits
 * a layer (one over 2^30 floats goes as several requests); at most 64
 * requests are in flight, a 65th waits for the oldest. bucket_bytes = 1: a
 * bucket per layer; bucket_bytes >= 4 x wm_net_n_params: one bucket,
 * started when the pass ends; bucket_bytes = 0: no buckets, one blocking
 * MPI_Allreduce of the whole buffer after the pass. Every element is
 * summed by MPI over the same ranks' terms whatever the cut, so on 2 ranks
 * (a + b = b + a) the result is bitwise that of bucket_bytes = 0; on more
 * ranks MPI may group one element's sum differently for messages of other
 * sizes, within 2 u sum_r |term_r| (docs/distributed.md); the ranks
 * stay bitwise equal to each other in every case. bucket_bytes, the
 * number of parameters and the architecture (the layers, their sizes and
 * placement, which fix where buckets are cut; the optimizer's kind) must be
 * the same on every rank: all are compared before any bucket starts. A rank with an empty shard, or whose shard fails its
 * checks, sends zeros in the same buckets, so every request completes
 * before a collective failure is returned.
 * Returns as wm_mpi_step, and WM_EINVAL when bucket_bytes, the number of
 * parameters or the architecture differs between ranks. */
WM_API wm_status wm_mpi_step_buckets(wm_optimizer *opt, const wm_batch *shard, MPI_Comm comm,
                                     float *loss_out, size_t bucket_bytes);

/** Whether every rank's parameters are bitwise equal to rank 0's: a 64-bit
 * hash (FNV-1a over the wm_net_params bytes and their count) compared
 * across ranks; two collectives of a few bytes, one pass over the
 * parameters. Returns WM_OK if all agree, WM_ESTATE naming the first rank
 * (lowest number) whose parameters differ from rank 0's, WM_EINVAL (NULL
 * net on some rank), WM_EIO (an MPI call failed); the same on every rank.
 * Nets that are not initialised count as 0 parameters. */
WM_API wm_status wm_mpi_check(const wm_net *net, MPI_Comm comm);

#ifdef __cplusplus
}
#endif

#endif /* WMANIFOLD_MPI_H */
