package fxgraph

/*
#include "fxgraph.h"

// The C example's path, for BenchmarkStream to compare with: `blocks` calls of interleaved float from C.
static FxgraphStatus fxg_bench_c(FxgraphAudio *audio, const float *in, float *out, size_t frames, size_t blocks) {
	for (size_t b = 0; b < blocks; b++) {
		FxgraphStatus s = fxgraph_process_interleaved_f32(audio, in, out, frames, 2);
		if (s != FXGRAPH_OK) {
			return s;
		}
	}
	return FXGRAPH_OK;
}
*/
import "C"

import "unsafe"

// processFromC runs blocks calls of the f32 interleaved process from C, as the C example makes them.
func (e *Engine) processFromC(in, out []float32, blocks int) error {
	s := C.fxg_bench_c(e.audio, (*C.float)(unsafe.Pointer(&in[0])), (*C.float)(unsafe.Pointer(&out[0])),
		C.size_t(len(in)/2), C.size_t(blocks))
	if s != C.FXGRAPH_OK {
		return &Error{Status: Status(s)}
	}
	return nil
}
