// Package fxgraph runs fxgraph effect graphs in a Go player, through fxgraph's C API (capi/include/fxgraph.h).
//
// An Engine is made from a graph file or RON text. Its Stream method processes a [][2]float64 in place, the
// layout a Go player streams, with no copy: use it as a filter after the decoder (Filter), or call it from the
// audio callback. Parameters, presets, graph swaps and bypass are control calls, safe from any goroutine while
// another one streams.
//
// Build the library first (cargo build --release at the repository's top); this package links
// target/release/libfxgraph_c.so.
package fxgraph

/*
#cgo CFLAGS: -I${SRCDIR}/../../../capi/include
#cgo LDFLAGS: -L${SRCDIR}/../../../target/release -lfxgraph_c -Wl,-rpath,${SRCDIR}/../../../target/release
#include <stdlib.h>
#include "fxgraph.h"
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"runtime/cgo"
	"sync"
	"unsafe"
)

// Status is an fxgraph status code. Every non-OK status is an error; errors.Is(err, fxgraph.ErrNoSuchParam)
// tells an *Error's status.
type Status int32

// The status codes of capi/include/fxgraph.h.
const (
	ErrNull          Status = C.FXGRAPH_ERR_NULL
	ErrInvalidHandle Status = C.FXGRAPH_ERR_INVALID_HANDLE
	ErrWrongSide     Status = C.FXGRAPH_ERR_WRONG_SIDE
	ErrBusy          Status = C.FXGRAPH_ERR_BUSY
	ErrArgument      Status = C.FXGRAPH_ERR_ARGUMENT
	ErrGraph         Status = C.FXGRAPH_ERR_GRAPH
	ErrNoSuchNode    Status = C.FXGRAPH_ERR_NO_SUCH_NODE
	ErrNoSuchParam   Status = C.FXGRAPH_ERR_NO_SUCH_PARAM
	ErrBadValue      Status = C.FXGRAPH_ERR_BAD_VALUE
	ErrPreset        Status = C.FXGRAPH_ERR_PRESET
	ErrNode          Status = C.FXGRAPH_ERR_NODE
	ErrBufferSmall   Status = C.FXGRAPH_ERR_BUFFER_TOO_SMALL
	ErrPanic         Status = C.FXGRAPH_ERR_PANIC
	ErrOther         Status = C.FXGRAPH_ERR_OTHER
)

func (s Status) Error() string { return C.GoString(C.fxgraph_status_name(C.FxgraphStatus(s))) }

// Error is a failed call: its status and fxgraph's message (for a bad graph: file, line, column and node).
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return e.Status.Error()
	}
	return e.Message
}

// Is makes errors.Is(err, fxgraph.ErrGraph) and the like work.
func (e *Error) Is(target error) bool {
	s, ok := target.(Status)
	return ok && s == e.Status
}

// Message is a message from a node of the graph: a plugin's log line ("log", Code its level) or event
// ("event", Code its code), a fault ("fault": the node is bypassed), or messages lost ("dropped", Code how many).
// Text is the plugin's, untrusted.
type Message struct {
	Node string
	Kind string
	Code int64
	Text string
}

// Options are how an engine runs; the zero value is not valid, start from DefaultOptions.
type Options struct {
	SampleRate  uint32  // the rate to prepare the graph at (the device's); 0: the graph's own
	MaxBlock    uint32  // the largest block nodes are called with
	Threads     uint32  // threads for the graph's parallel branches
	Realtime    bool    // plugins get a wall-clock deadline (a device); false for offline rendering
	Monitor     bool    // per-node timing and levels for Metrics
	CrossfadeMs float64 // the cross-fade of a graph swap
}

// DefaultOptions are the library's defaults: the graph's rate, blocks of 512, one thread, realtime, monitor on.
func DefaultOptions() Options {
	var o C.FxgraphOptions
	C.fxgraph_options_default(&o)
	return Options{uint32(o.sample_rate), uint32(o.max_block), uint32(o.threads), o.realtime != 0, o.monitor != 0,
		float64(o.crossfade_ms)}
}

func (o Options) c() C.FxgraphOptions {
	var c C.FxgraphOptions
	C.fxgraph_options_default(&c)
	c.sample_rate = C.uint32_t(o.SampleRate)
	c.max_block = C.uint32_t(o.MaxBlock)
	c.threads = C.uint32_t(o.Threads)
	c.realtime = 0
	if o.Realtime {
		c.realtime = 1
	}
	c.monitor = 0
	if o.Monitor {
		c.monitor = 1
	}
	c.crossfade_ms = C.double(o.CrossfadeMs)
	return c
}

// Engine is a running graph. Its control methods (Set, ApplyPreset, Load, Bypass, Metrics, ...) may be called
// from any goroutine, also while another one streams; Stream and Process from one goroutine at a time (the
// audio side). Close it when done.
type Engine struct {
	mu       sync.Mutex // the control side: one call at a time
	engine   *C.FxgraphEngine
	audio    *C.FxgraphAudio
	channels int
	callback cgo.Handle
	err      error // Stream's last error
}

// Open makes an engine from the graph file at path.
func Open(path string, o Options) (*Engine, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	return create(func(opts *C.FxgraphOptions, e **C.FxgraphEngine, a **C.FxgraphAudio, buf *C.char, n C.size_t) C.FxgraphStatus {
		return C.fxgraph_engine_new_from_file(cpath, opts, e, a, buf, n)
	}, o)
}

// FromRON makes an engine from graph text; name is the file name messages give, and relative paths in the graph
// are relative to baseDir.
func FromRON(ron, name, baseDir string, o Options) (*Engine, error) {
	cron, cname, cdir := C.CString(ron), C.CString(name), C.CString(baseDir)
	defer C.free(unsafe.Pointer(cron))
	defer C.free(unsafe.Pointer(cname))
	defer C.free(unsafe.Pointer(cdir))
	return create(func(opts *C.FxgraphOptions, e **C.FxgraphEngine, a **C.FxgraphAudio, buf *C.char, n C.size_t) C.FxgraphStatus {
		return C.fxgraph_engine_new_from_ron(cron, cname, cdir, opts, e, a, buf, n)
	}, o)
}

type newFunc func(*C.FxgraphOptions, **C.FxgraphEngine, **C.FxgraphAudio, *C.char, C.size_t) C.FxgraphStatus

func create(f newFunc, o Options) (*Engine, error) {
	opts := o.c()
	var e Engine
	buf := (*C.char)(C.malloc(4096))
	defer C.free(unsafe.Pointer(buf))
	if s := f(&opts, &e.engine, &e.audio, buf, 4096); s != C.FXGRAPH_OK {
		return nil, &Error{Status(s), C.GoString(buf)}
	}
	var out C.uint32_t
	C.fxgraph_audio_channels(e.audio, nil, &out, nil)
	e.channels = int(out)
	return &e, nil
}

// Close frees the engine. The engine must not be streaming.
func (e *Engine) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	C.fxgraph_audio_free(e.audio)
	C.fxgraph_engine_free(e.engine)
	if e.callback != 0 {
		e.callback.Delete()
		e.callback = 0
	}
}

// check turns a control call's status into an error carrying the engine's message. Call it with mu held.
func (e *Engine) check(s C.FxgraphStatus) error {
	if s == C.FXGRAPH_OK {
		return nil
	}
	var buf [1024]C.char
	C.fxgraph_last_error(e.engine, &buf[0], C.size_t(len(buf)), nil)
	return &Error{Status(s), C.GoString(&buf[0])}
}

// Process runs samples through the graph in place: the audio side. It allocates nothing, takes no lock and
// waits for nothing; the graph computes in float32, so the samples come back as float32 values. The graph's
// channels must be two (the layout's).
func (e *Engine) Process(samples [][2]float64) error {
	if len(samples) == 0 {
		return nil
	}
	p := (*C.double)(unsafe.Pointer(&samples[0][0]))
	if s := C.fxgraph_process_interleaved_f64(e.audio, p, p, C.size_t(len(samples)), 2); s != C.FXGRAPH_OK {
		return &Error{Status: Status(s)}
	}
	return nil
}

// Stream processes samples in place, as a Go player's streamer interface asks (n is always len(samples)); a
// failure is kept for Err and the samples are then silenced.
func (e *Engine) Stream(samples [][2]float64) (n int, ok bool) {
	if err := e.Process(samples); err != nil {
		e.err = err
		for i := range samples {
			samples[i] = [2]float64{}
		}
	}
	return len(samples), true
}

// Err is the last error Stream met.
func (e *Engine) Err() error { return e.err }

// Streamer is the Go player's audio source interface.
type Streamer interface {
	Stream(samples [][2]float64) (n int, ok bool)
	Err() error
}

// Filter streams src through the engine.
func (e *Engine) Filter(src Streamer) Streamer { return &filter{src, e} }

type filter struct {
	src Streamer
	e   *Engine
}

func (f *filter) Stream(samples [][2]float64) (int, bool) {
	n, ok := f.src.Stream(samples)
	f.e.Stream(samples[:n])
	return n, ok
}

func (f *filter) Err() error {
	if err := f.src.Err(); err != nil {
		return err
	}
	return f.e.Err()
}

// Channels is the graph's output channels.
func (e *Engine) Channels() int { return e.channels }

// LatencyFrames is the frames by which the output lags the input, for the graph playing now.
func (e *Engine) LatencyFrames() int {
	var l C.uint64_t
	C.fxgraph_audio_position(e.audio, &l, nil)
	return int(l)
}

// Reset clears every node's state (for a seek): an audio-side call.
func (e *Engine) Reset() error {
	if s := C.fxgraph_audio_reset(e.audio); s != C.FXGRAPH_OK {
		return &Error{Status: Status(s)}
	}
	return nil
}

func (e *Engine) control(f func() C.FxgraphStatus) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.check(f())
}

// Set sets a node's parameter to a number, with fxgraph's validation and smoothing; it reaches the audio side
// at its next block.
func (e *Engine) Set(node, param string, value float64) error {
	cn, cp := C.CString(node), C.CString(param)
	defer C.free(unsafe.Pointer(cn))
	defer C.free(unsafe.Pointer(cp))
	return e.control(func() C.FxgraphStatus { return C.fxgraph_set(e.engine, cn, cp, C.double(value)) })
}

// SetText sets a parameter that takes a name (a filter's type).
func (e *Engine) SetText(node, param, value string) error {
	cn, cp, cv := C.CString(node), C.CString(param), C.CString(value)
	defer C.free(unsafe.Pointer(cn))
	defer C.free(unsafe.Pointer(cp))
	defer C.free(unsafe.Pointer(cv))
	return e.control(func() C.FxgraphStatus { return C.fxgraph_set_text(e.engine, cn, cp, cv) })
}

// Get is a parameter's value (for a parameter with named choices, the index of the current one).
func (e *Engine) Get(node, param string) (float64, error) {
	cn, cp := C.CString(node), C.CString(param)
	defer C.free(unsafe.Pointer(cn))
	defer C.free(unsafe.Pointer(cp))
	var v C.double
	err := e.control(func() C.FxgraphStatus { return C.fxgraph_get(e.engine, cn, cp, &v) })
	return float64(v), err
}

// ApplyPreset applies the preset presets/NAME.ron beside the graph.
func (e *Engine) ApplyPreset(name string) error {
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	return e.control(func() C.FxgraphStatus { return C.fxgraph_apply_preset(e.engine, cn) })
}

// Load swaps in the graph file at path while audio plays (cross-faded; Update finishes the swap).
func (e *Engine) Load(path string) error {
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	return e.control(func() C.FxgraphStatus { return C.fxgraph_load_file(e.engine, cp) })
}

// Bypass bypasses a node (on) or brings it back.
func (e *Engine) Bypass(node string, on bool) error {
	cn := C.CString(node)
	defer C.free(unsafe.Pointer(cn))
	flag := C.int32_t(0)
	if on {
		flag = 1
	}
	return e.control(func() C.FxgraphStatus { return C.fxgraph_bypass(e.engine, cn, flag) })
}

// Update runs the control side once: finishes swaps, replaces faulted plugins, delivers messages. Call it
// every 10 to 100 ms while audio plays.
func (e *Engine) Update() error {
	return e.control(func() C.FxgraphStatus { return C.fxgraph_update(e.engine) })
}

// text calls a function that writes text into a buffer, growing the buffer as it asks. Call it with mu held.
func (e *Engine) text(f func(buf *C.char, n C.size_t, needed *C.size_t) C.FxgraphStatus) (string, error) {
	size := C.size_t(4096)
	for {
		buf := (*C.char)(C.malloc(size))
		var needed C.size_t
		s := f(buf, size, &needed)
		out := C.GoString(buf)
		C.free(unsafe.Pointer(buf))
		if s == C.FXGRAPH_ERR_BUFFER_TOO_SMALL && needed > size {
			size = needed
			continue
		}
		return out, e.check(s)
	}
}

// Metrics is the monitor's report (per-node timing, DSP load, levels), as fxgraph's JSON decoded.
func (e *Engine) Metrics() (map[string]any, error) {
	e.mu.Lock()
	text, err := e.text(func(b *C.char, n C.size_t, need *C.size_t) C.FxgraphStatus {
		return C.fxgraph_metrics_json(e.engine, b, n, need)
	})
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal([]byte(text), &m)
}

// Messages are the node messages received since the last call (none once OnMessage is set).
func (e *Engine) Messages() ([]Message, error) {
	e.mu.Lock()
	text, err := e.text(func(b *C.char, n C.size_t, need *C.size_t) C.FxgraphStatus {
		return C.fxgraph_messages_json(e.engine, b, n, need)
	})
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	// Each kind is a name ("Fault") or a name with its number ({"Log": 2}).
	var raw []struct {
		Node string          `json:"node"`
		Kind json.RawMessage `json:"kind"`
		Text string          `json:"text"`
	}
	if err := json.Unmarshal([]byte(text), &raw); err != nil {
		return nil, err
	}
	out := make([]Message, len(raw))
	for i, r := range raw {
		out[i] = Message{Node: r.Node, Text: r.Text}
		var name string
		var coded map[string]int64
		if json.Unmarshal(r.Kind, &name) == nil {
			out[i].Kind = lower(name)
		} else if json.Unmarshal(r.Kind, &coded) == nil {
			for k, v := range coded {
				out[i].Kind, out[i].Code = lower(k), v
			}
		}
	}
	return out, nil
}

func lower(s string) string {
	if s == "" {
		return s
	}
	return string(s[0]|0x20) + s[1:]
}

// OnMessage calls f with each node message from now on, on the goroutine of the control call that receives it
// (Update, Metrics). f must not call the engine's methods (they would wait for the call that runs f).
// nil removes it.
func (e *Engine) OnMessage(f func(Message)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var h cgo.Handle
	if f != nil {
		h = cgo.NewHandle(f)
	}
	err := e.check(setCallback(e.engine, h))
	if err != nil {
		if h != 0 {
			h.Delete()
		}
		return err
	}
	if e.callback != 0 {
		e.callback.Delete()
	}
	e.callback = h
	return nil
}

// AllocStats are the library's allocation counts: AudioCalls is the allocations and frees made by audio-side
// work, 0 by contract.
type AllocStats struct {
	AllocatedTotal, Live, Calls, AudioCalls uint64
}

// Allocations reads the library's counting allocator.
func Allocations() AllocStats {
	var s C.FxgraphAllocStats
	C.fxgraph_alloc_stats(&s)
	return AllocStats{uint64(s.allocated_total), uint64(s.live), uint64(s.calls), uint64(s.audio_calls)}
}

// ABIVersion is the loaded library's ABI version (major << 16 | minor).
func ABIVersion() uint32 { return uint32(C.fxgraph_abi_version()) }

// CheckABI reports whether the loaded library serves this package's ABI.
func CheckABI() error {
	v := ABIVersion()
	if v>>16 != C.FXGRAPH_ABI_MAJOR || v&0xffff < C.FXGRAPH_ABI_MINOR {
		return fmt.Errorf("libfxgraph_c has ABI %d.%d; this package needs %d.%d or a later minor version",
			v>>16, v&0xffff, C.FXGRAPH_ABI_MAJOR, C.FXGRAPH_ABI_MINOR)
	}
	return nil
}

//export goFxgraphMessage
func goFxgraphMessage(user unsafe.Pointer, node, kind *C.char, code C.int64_t, text *C.char) {
	f := cgo.Handle(uintptr(user)).Value().(func(Message))
	f(Message{Node: C.GoString(node), Kind: C.GoString(kind), Code: int64(code), Text: C.GoString(text)})
}
