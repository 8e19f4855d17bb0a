// Command fxplay plays a WAV file through an fxgraph graph on a null device (a device that paces itself like a
// sound card and discards what it gets), or renders it to a WAV file, through the Go package fxgraph: what a Go
// player does with fxgraph.
//
//	fxplay [-render OUT.wav] [-fast] [-set NODE.PARAM=VALUE@SECONDS]... GRAPH.ron IN.wav
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"fxgraph.example/player/fxgraph"
	"fxgraph.example/player/wav"
)

// change is a parameter change at a time into the file.
type change struct {
	node, param string
	value       float64
	at          time.Duration
}

type changes []change

func (c *changes) String() string { return fmt.Sprint(*c) }

func (c *changes) Set(s string) error {
	key, rest, ok := strings.Cut(s, "=")
	node, param, ok2 := strings.Cut(key, ".")
	value, at, _ := strings.Cut(rest, "@")
	v, err := strconv.ParseFloat(value, 64)
	secs := 0.0
	if at != "" && err == nil {
		secs, err = strconv.ParseFloat(at, 64)
	}
	if !ok || !ok2 || err != nil {
		return fmt.Errorf("-set takes NODE.PARAM=VALUE or NODE.PARAM=VALUE@SECONDS, not %q", s)
	}
	*c = append(*c, change{node, param, v, time.Duration(secs * float64(time.Second))})
	return nil
}

// source streams a file's frames, then silence for the graph's latency, then ends.
type source struct {
	frames [][2]float64
	pos    int
	tail   int
}

func (s *source) Stream(out [][2]float64) (int, bool) {
	n := 0
	for n < len(out) && s.pos < len(s.frames)+s.tail {
		if s.pos < len(s.frames) {
			out[n] = s.frames[s.pos]
		} else {
			out[n] = [2]float64{}
		}
		n++
		s.pos++
	}
	return n, n > 0
}

func (s *source) Err() error { return nil }

func main() {
	output := flag.String("render", "", "render to this WAV file instead of playing")
	fast := flag.Bool("fast", false, "play on the null device as fast as it goes, not in real time")
	var sets changes
	flag.Var(&sets, "set", "change a parameter, NODE.PARAM=VALUE[@SECONDS] (repeatable)")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: fxplay [-render OUT.wav] [-fast] [-set NODE.PARAM=VALUE@SECONDS]... GRAPH.ron IN.wav")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), flag.Arg(1), *output, *fast, sets); err != nil {
		fmt.Fprintln(os.Stderr, "fxplay:", err)
		os.Exit(1)
	}
}

func run(graph, input, output string, fast bool, sets changes) error {
	if err := fxgraph.CheckABI(); err != nil {
		return err
	}
	in, err := wav.Read(input)
	if err != nil {
		return err
	}
	opts := fxgraph.DefaultOptions()
	opts.SampleRate = in.Rate
	opts.Realtime = output == "" && !fast
	engine, err := fxgraph.Open(graph, opts)
	if err != nil {
		return err
	}
	defer engine.Close()
	if engine.Channels() != 2 {
		return fmt.Errorf("%s has %d output channels; this player plays two", graph, engine.Channels())
	}
	_ = engine.OnMessage(func(m fxgraph.Message) { fmt.Fprintf(os.Stderr, "%s: %s %q\n", m.Node, m.Kind, m.Text) })
	latency := engine.LatencyFrames()
	src := &source{frames: in.Frames, tail: latency}
	stream := engine.Filter(src)

	// The device: a callback of 512 frames, paced like a sound card unless rendering or -fast.
	buf := make([][2]float64, 512)
	period := time.Duration(float64(len(buf)) / float64(in.Rate) * float64(time.Second))
	var out [][2]float64
	start := time.Now()
	played := 0
	for {
		now := time.Duration(float64(played) / float64(in.Rate) * float64(time.Second))
		for len(sets) > 0 && sets[0].at <= now {
			if err := engine.Set(sets[0].node, sets[0].param, sets[0].value); err != nil {
				return err
			}
			sets = sets[1:]
		}
		n, ok := stream.Stream(buf)
		if !ok {
			break
		}
		if err := stream.Err(); err != nil {
			return err
		}
		if output != "" {
			out = append(out, buf[:n]...)
		}
		played += n
		if played/len(buf)%20 == 0 {
			_ = engine.Update()
		}
		if output == "" && !fast {
			time.Sleep(time.Until(start.Add(time.Duration(played/len(buf)) * period)))
		}
	}
	_ = engine.Update()
	metrics, err := engine.Metrics()
	if err != nil {
		return err
	}
	fmt.Printf("%d frames at %d Hz through %s in %.2f s, latency %d frames, DSP load %.2f%%\n", len(in.Frames),
		in.Rate, graph, time.Since(start).Seconds(), latency, 100*metrics["dsp_load"].(float64))
	if output == "" {
		return nil
	}
	// The output from the latency on is aligned with the input.
	return wav.Write(output, &wav.Audio{Rate: in.Rate, Frames: out[latency:]})
}
