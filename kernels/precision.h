// precision.h — the element type of the CPU kernels and the model.
//
// The CPU kernels and the GPT-2 model are compiled twice: once in float (what tessera trains
// with) and once in double (TESSERA_F64, used only by the finite-difference tests, where float
// rounding would hide a wrong gradient). Public symbols of the double build carry a _f64 suffix
// through TS_REAL(), so both builds can be linked into one test binary.
#ifndef TESSERA_PRECISION_H
#define TESSERA_PRECISION_H

#ifdef TESSERA_F64
typedef double real;
#define TS_REAL(name) name##_f64
#else
typedef float real;
#define TS_REAL(name) name
#endif

#endif
