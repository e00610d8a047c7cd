// backend_cuda.h — the CUDA backend (C interface; the implementation is CUDA C++ in *.cu).
//
// Built when CMake finds the CUDA toolkit (TESSERA_CUDA=auto|on|off); TESSERA_HAVE_CUDA is then
// defined for every target that links tessera_cuda.
#ifndef TESSERA_BACKEND_CUDA_H
#define TESSERA_BACKEND_CUDA_H

#include "base/common.h"
#include "kernels/backend.h"
#include "kernels/registry.h"

#ifdef __cplusplus
extern "C" {
#endif

// Number of usable CUDA devices (0 when there is no driver, no device, or the runtime fails).
int backend_cuda_device_count(void);

// Create a CUDA backend on `device` with activations and compute parameters in act_dtype
// (TS_BF16: bf16 with fp32 master weights, moments, gradients and loss; TS_F32: everything in
// fp32, for checking against the CPU). Gradients, master weights and moments are fp32 either
// way. Each backend has its own context (stream, scratch, cuBLASLt handles), freed with it by
// be->destroy; all backends of a process use one device. Errors (no device, out of memory,
// cuBLASLt failure): one line, TS_ERR_INPUT when the user asked for something the machine
// cannot do, TS_ERR_SYSTEM otherwise.
ts_status backend_cuda_create(const backend **out, ts_dtype act_dtype, int device);

// the registry's entry (kernels/registry.h): probe = backend_cuda_device_count
extern const backend_entry backend_entry_cuda;

#ifdef __cplusplus
}
#endif

#endif
