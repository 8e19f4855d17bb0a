package fxgraph

/*
#include <stdint.h>
#include "fxgraph.h"

extern void goFxgraphMessage(void *user, char *node, char *kind, int64_t code, char *text);

static void fxg_on_message(void *user, const char *node, const char *kind, int64_t code, const char *text) {
	goFxgraphMessage(user, (char *)node, (char *)kind, code, (char *)text);
}

// Registers the Go callback with a cgo.Handle's value as its user data (0: none).
static FxgraphStatus fxg_set_callback(FxgraphEngine *engine, uintptr_t handle) {
	return fxgraph_set_message_callback(engine, handle ? fxg_on_message : NULL, (void *)handle);
}
*/
import "C"

import "runtime/cgo"

// setCallback registers (or, with 0, removes) the message callback holding handle h.
func setCallback(e *C.FxgraphEngine, h cgo.Handle) C.FxgraphStatus {
	return C.fxg_set_callback(e, C.uintptr_t(h))
}
