package fxgraph

import (
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"fxgraph.example/player/wav"
)

var repo, _ = filepath.Abs("../../..")

// fxgraphCommand is the `fxgraph` command built beside the library.
func fxgraphCommand(t testing.TB) string {
	bin := filepath.Join(repo, "target", "release", "fxgraph")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: run `cargo build --release` at the repository's top first", bin)
	}
	return bin
}

func run(t testing.TB, name string, args ...string) {
	cmd := exec.Command(name, args...)
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

const gainGraph = `(sample_rate: 48000, channels: 2,
    nodes: { "gain": Gain(gain_db: 0.0) },
    edges: [("input", "gain"), ("gain", "output")])`

func offline() Options {
	o := DefaultOptions()
	o.Realtime = false
	return o
}

// The headline graph (a WebAssembly plugin, a limiter's latency) through Stream, in the Go player's buffers of
// 1000 frames, against `fxgraph render` of the same graph and input: the same bits. The graph computes in
// float32, and the f64 path rounds the input to float32 and returns float32 values exactly, so there is nothing
// to explain.
func TestStreamMatchesFxgraphRender(t *testing.T) {
	dir := t.TempDir()
	in, want := filepath.Join(dir, "in.wav"), filepath.Join(dir, "want.wav")
	bin := fxgraphCommand(t)
	run(t, bin, "render", "graphs/chain.ron", "--seconds", "3", "-o", in)
	run(t, bin, "render", "graphs/mastering.ron", "--threads", "1", "-i", in, "-o", want)

	input, err := wav.Read(in)
	if err != nil {
		t.Fatal(err)
	}
	e, err := Open(filepath.Join(repo, "graphs/mastering.ron"), offline())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	latency := e.LatencyFrames()
	if latency == 0 {
		t.Fatal("the headline graph's limiter has a latency")
	}
	frames := append(append([][2]float64{}, input.Frames...), make([][2]float64, latency)...)
	for at := 0; at < len(frames); at += 1000 {
		end := at + 1000
		if end > len(frames) {
			end = len(frames)
		}
		if n, _ := e.Stream(frames[at:end]); n != end-at || e.Err() != nil {
			t.Fatalf("Stream: %d frames, %v", n, e.Err())
		}
	}
	got := frames[latency:]
	reference, err := wav.Read(want)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(reference.Frames) {
		t.Fatalf("%d frames, render wrote %d", len(got), len(reference.Frames))
	}
	for i, f := range got {
		for c := 0; c < 2; c++ {
			if math.Float64bits(f[c]) != math.Float64bits(reference.Frames[i][c]) {
				t.Fatalf("frame %d channel %d: %v, render: %v", i, c, f[c], reference.Frames[i][c])
			}
		}
	}
}

func TestABadGraphIsAnErrorWithItsLocation(t *testing.T) {
	_, err := FromRON("(sample_rate: 48000, channels: 2,\n nodes: { \"g\": Gain(gain_db: 0.0 },\n edges: [])", "bad.ron", ".", offline())
	if !errors.Is(err, ErrGraph) || !strings.HasPrefix(err.Error(), "bad.ron:2:") {
		t.Fatalf("want a located graph error, got %v", err)
	}
	_, err = Open(filepath.Join(t.TempDir(), "missing.ron"), offline())
	if err == nil {
		t.Fatal("a missing file opened")
	}
}

func TestParametersAreChecked(t *testing.T) {
	e, err := FromRON(gainGraph, "gain.ron", ".", offline())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.Set("gain", "volume", 1); !errors.Is(err, ErrNoSuchParam) || !strings.Contains(err.Error(), "volume") {
		t.Fatalf("an unknown parameter: %v", err)
	}
	if err := e.Set("nope", "gain_db", 1); !errors.Is(err, ErrNoSuchNode) {
		t.Fatalf("an unknown node: %v", err)
	}
	if err := e.Set("gain", "gain_db", 1000); !errors.Is(err, ErrBadValue) {
		t.Fatalf("a value out of range: %v", err)
	}
	if err := e.Set("gain", "gain_db", -6); err != nil {
		t.Fatal(err)
	}
	if v, err := e.Get("gain", "gain_db"); err != nil || v != -6 {
		t.Fatalf("get: %v, %v", v, err)
	}
}

// One goroutine streams (the audio side) while another sets the gain (the control side): no error, no
// allocation on the audio side, and the changes are heard.
func TestSetFromOneGoroutineWhileAnotherStreams(t *testing.T) {
	e, err := FromRON(gainGraph, "gain.ron", ".", offline())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	stop := make(chan struct{})
	type peaks struct{ loudest, last float64 }
	result := make(chan peaks)
	var calls atomic.Int64
	before := Allocations()
	go func() {
		var p peaks
		buf := make([][2]float64, 480)
		for {
			select {
			case <-stop:
				result <- p
				return
			default:
			}
			for i := range buf {
				buf[i] = [2]float64{0.5, -0.5}
			}
			e.Stream(buf)
			if e.Err() != nil {
				t.Error(e.Err())
			}
			p.last = math.Abs(buf[len(buf)-1][0])
			p.loudest = math.Max(p.loudest, p.last)
			calls.Add(1)
		}
	}()
	for i := 0; i < 200; i++ {
		db := -20.0
		if i%2 == 1 {
			db = 0
		}
		if err := e.Set("gain", "gain_db", db); err != nil {
			t.Fatal(err)
		}
		if err := e.Update(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Microsecond)
	}
	if err := e.Set("gain", "gain_db", -20); err != nil {
		t.Fatal(err)
	}
	// 200 blocks after the last change (its smoothing lasts a few of them), however busy the machine.
	for then := calls.Load(); calls.Load() < then+200; {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	p := <-result
	after := Allocations()
	if after.AudioCalls != before.AudioCalls {
		t.Fatalf("%d allocations on the audio side", after.AudioCalls-before.AudioCalls)
	}
	if p.loudest < 0.49 || math.Abs(p.last-0.05) > 1e-6 {
		t.Fatalf("peaks: loudest %v (want 0.5), last %v (want 0.05 at -20 dB)", p.loudest, p.last)
	}
}

// testdata/logger.wasm logs "hello" at level 2 from every block: as JSON through Messages, then through an
// OnMessage callback; and the metrics name the node.
func TestMessagesAndMetrics(t *testing.T) {
	graph := `(sample_rate: 48000, channels: 2, nodes: { "talker": Wasm(path: "logger.wasm") },
        edges: [("input", "talker"), ("talker", "output")])`
	dir, _ := filepath.Abs("testdata")
	e, err := FromRON(graph, "talker.ron", dir, offline())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	buf := make([][2]float64, 1024) // two blocks of 512
	e.Stream(buf)
	msgs, err := e.Messages()
	if err != nil {
		t.Fatal(err)
	}
	want := Message{Node: "talker", Kind: "log", Code: 2, Text: "hello"}
	if len(msgs) != 2 || msgs[0] != want || msgs[1] != want {
		t.Fatalf("messages: %+v, want two of %+v", msgs, want)
	}
	var seen []Message
	if err := e.OnMessage(func(m Message) { seen = append(seen, m) }); err != nil {
		t.Fatal(err)
	}
	e.Stream(buf[:512])
	if err := e.Update(); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0] != want {
		t.Fatalf("callback: %+v, want one %+v", seen, want)
	}
	if msgs, err := e.Messages(); err != nil || len(msgs) != 0 {
		t.Fatalf("with a callback, Messages is empty: %v, %v", msgs, err)
	}
	m, err := e.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	nodes, _ := m["nodes"].([]any)
	if len(nodes) != 1 || nodes[0].(map[string]any)["name"] != "talker" {
		t.Fatalf("metrics for the one node, got %v", m["nodes"])
	}
}

// The Go player's path (Stream: [][2]float64 in place through cgo, one call a block) against the C example's
// (interleaved float32 calls made from C), on the reference chain, blocks of 512 frames. Run with
// `go test -bench . -benchtime 20000x`; each op is one block.
func BenchmarkStream(b *testing.B) {
	e, err := Open(filepath.Join(repo, "benches/reference.ron"), offline())
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	buf := make([][2]float64, 512)
	for i := range buf {
		buf[i] = [2]float64{0.3 * math.Sin(float64(i)*0.05), 0.3 * math.Cos(float64(i)*0.03)}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.Stream(buf)
	}
}

func BenchmarkCExamplePath(b *testing.B) {
	e, err := Open(filepath.Join(repo, "benches/reference.ron"), offline())
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	in, out := make([]float32, 1024), make([]float32, 1024)
	for i := 0; i < 512; i++ {
		in[2*i], in[2*i+1] = float32(0.3*math.Sin(float64(i)*0.05)), float32(0.3*math.Cos(float64(i)*0.03))
	}
	b.ResetTimer()
	if err := e.processFromC(in, out, b.N); err != nil {
		b.Fatal(err)
	}
}

// The two paths above in interleaved rounds (A B B A, 2000 blocks each), the median of time(Stream) /
// time(C) over 41 rounds reported as "stream/c": `go test -run X -bench StreamAgainstC -benchtime 1x ./fxgraph`.
func BenchmarkStreamAgainstC(b *testing.B) {
	e, err := Open(filepath.Join(repo, "benches/reference.ron"), offline())
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	const blocks = 2000
	buf := make([][2]float64, 512)
	in, out := make([]float32, 1024), make([]float32, 1024)
	for i := 0; i < 512; i++ {
		l, r := 0.3*math.Sin(float64(i)*0.05), 0.3*math.Cos(float64(i)*0.03)
		buf[i], in[2*i], in[2*i+1] = [2]float64{l, r}, float32(l), float32(r)
	}
	stream := func() time.Duration {
		t := time.Now()
		for i := 0; i < blocks; i++ {
			e.Stream(buf)
		}
		return time.Since(t)
	}
	fromC := func() time.Duration {
		t := time.Now()
		if err := e.processFromC(in, out, blocks); err != nil {
			b.Fatal(err)
		}
		return time.Since(t)
	}
	var ratios []float64
	for r := 0; r < 41; r++ {
		c1, s1, s2, c2 := fromC(), stream(), stream(), fromC()
		ratios = append(ratios, float64(s1+s2)/float64(c1+c2))
	}
	sort.Float64s(ratios)
	b.ReportMetric(ratios[len(ratios)/2], "stream/c")
	b.ReportMetric(ratios[len(ratios)/4], "p25")
	b.ReportMetric(ratios[3*len(ratios)/4], "p75")
}
