// nccl.h — the "nccl" communicator: collectives on GPU memory through NCCL, bootstrapped over
// the MPI communicator.
//
// STATUS: interface and design only. Nothing implements comm_nccl_create yet; no source file
// includes this header, and tessera does not link NCCL. It records how the comm struct of
// comm.h maps onto NCCL so that the CUDA trainer and the reducer can be written against it.
//
// ---- creation ------------------------------------------------------------------------------
// comm_nccl_create(&c, bootstrap, device, stream):
//   bootstrap  an "mpi" communicator (comm_mpi_create) spanning the same ranks; used once, to
//              agree on an ncclUniqueId, and kept for the host-side work (status agreement,
//              checkpoints) that stays on MPI.
//   device     the CUDA device of this rank (cudaSetDevice is the caller's business; the trainer
//              takes OMPI_COMM_WORLD_LOCAL_RANK modulo the device count).
//   stream     the cudaStream_t the trainer computes on, passed as void * so that this header
//              needs no CUDA include. Collectives are enqueued on an internal stream that first
//              waits on an event recorded on `stream`, so they run after the gradients they
//              read have been written and overlap with the compute enqueued afterwards.
// Steps: rank 0 calls ncclGetUniqueId; the 128-byte id goes to every rank with
// bootstrap->broadcast (our point-to-point broadcast, so start-up has the same deadline as any
// collective); every rank then calls ncclCommInitRankConfig(&nc, size, id, rank, &config) with
// config.blocking = 0, so that initialization returns at once and is polled against the
// bootstrap's timeout_s with ncclCommGetAsyncError (ncclInProgress until done); a peer that
// never joins is given up with ncclCommAbort, like a collective that misses its deadline.
// c->rank and c->size are the MPI ones; c->name is "nccl".
//
// ---- buffers ---------------------------------------------------------------------------------
// Every buf passed to start() and the blocking calls is DEVICE memory (cudaMalloc) on `device`;
// n and dtype mean what they mean in comm.h, and the chunking of reduce-scatter / all-gather is
// comm_chunk's. NCCL's own reduce-scatter and all-gather want equal counts per rank, so a chunk
// layout with n % size != 0 is done as size ncclReduce / ncclBroadcast calls (one per root,
// count = that root's chunk) inside one ncclGroupStart/ncclGroupEnd, or with a padded scratch
// buffer when n is large; an even split goes straight to ncclReduceScatter / ncclAllGather with
// the in-place offsets NCCL documents (recvbuff = sendbuff + rank * count).
// all_reduce_max_i32 and broadcast of host data (the trainer's agreement and config broadcasts)
// stay on the bootstrap MPI communicator: they are tiny and their buffers live on the host.
//
// ---- requests --------------------------------------------------------------------------------
// start():  ncclGroupStart(); the NCCL call(s) on the internal stream; ncclGroupEnd(); then
//           cudaEventRecord(req->done_event, internal stream). Several starts in a row may be
//           grouped by the caller's bucket loop; NCCL orders them by stream order, and every
//           rank enqueues them in the same order (the same rule as the MPI tags).
// test():   cudaEventQuery(req->done_event): cudaSuccess -> done (release the request);
//           cudaErrorNotReady -> not yet; then the deadline check below.
// wait():   test() in a loop with a short sleep (cudaEventSynchronize has no timeout); the time
//           spent goes to stats.wait_s. A caller that only needs ordering on the GPU can skip
//           wait() and make its compute stream wait on the event instead.
//
// ---- deadlines ---------------------------------------------------------------------------------
// A request not done by start + timeout_s: poll ncclCommGetAsyncError (a remote rank's failure
// or a network error shows there as ncclRemoteError / ncclSystemError); on expiry log one line
// like the MPI backend ("all-reduce (sum) at step 12: waited 30.0 s for ...: peer lost") naming
// the peer when NCCL's error says which (else "a peer": a ring collective on the GPU does not
// tell which rank stalled), write the status file (reason peer_lost, exit 75), call
// ncclCommAbort (which unblocks the kernels spinning on the lost peer, so the process can exit
// and the GPU is usable by the next run), mark the communicator failed and return TS_ERR_PEER.
// Later calls return TS_ERR_PEER at once; finalize calls ncclCommDestroy only when not failed.
//
// ---- bytes -------------------------------------------------------------------------------------
// NCCL does not report traffic, so stats.bytes_sent/recv are computed from the algorithm's
// formula for the bytes each rank puts on its links, with s the element size and c_k the
// length of chunk k: ring all-reduce sends (2n - c_r - c_{r+1}) s and receives
// (2n - c_{r-1} - c_r) s (on average 2 (p-1)/p n s), reduce-scatter (n - c_r) s / (n - c_{r-1}) s,
// all-gather (n - c_{r+1}) s / (n - c_r) s, broadcast n s to and from each rank but the root /
// the last in the chain. These are the ring's counts, identical to the MPI backend's ring; NCCL
// may pick a tree for small messages, so for those the figures are the ring-equivalent volume,
// not the exact wire bytes.
//
// ---- determinism -------------------------------------------------------------------------------
// NCCL's sums are deterministic for a fixed world size, message size, NCCL version, topology
// and NCCL_ALGO / NCCL_PROTO; the backend pins NCCL_ALGO=Ring and NCCL_PROTO=Simple when the
// config asks for bit-reproducible runs, so a resumed run reduces in the same order.
#ifndef TESSERA_NCCL_H
#define TESSERA_NCCL_H

#include "collectives/comm.h"

// Create the NCCL communicator for this rank (see above). On failure *out is NULL and the
// status says why (TS_ERR_PEER when a peer did not join within bootstrap->timeout_s).
// Not implemented yet: there is no definition of this function in tessera.
ts_status comm_nccl_create(comm **out, comm *bootstrap, int device, void *stream);

#endif
