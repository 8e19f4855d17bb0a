// Package wav reads 16-bit PCM and 32-bit float WAV files into [][2]float64 and writes 32-bit float ones: just
// what the example player needs.
package wav

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// Audio is stereo frames at a rate (a mono file is doubled; channels beyond two are dropped).
type Audio struct {
	Rate   uint32
	Frames [][2]float64
}

// Read reads a WAV file.
func Read(path string) (*Audio, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(data) < 12 || string(data[:4]) != "RIFF" || string(data[8:12]) != "WAVE" {
		return nil, fmt.Errorf("%s: not a WAV file", path)
	}
	var format, channels, bits uint16
	var rate uint32
	r := bytes.NewReader(data[12:])
	for {
		var head struct {
			ID   [4]byte
			Size uint32
		}
		if err := binary.Read(r, binary.LittleEndian, &head); err != nil {
			return nil, fmt.Errorf("%s: no data chunk", path)
		}
		body := make([]byte, head.Size)
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, fmt.Errorf("%s: truncated %q chunk", path, head.ID[:])
		}
		if head.Size%2 == 1 {
			_, _ = r.ReadByte()
		}
		switch string(head.ID[:]) {
		case "fmt ":
			if len(body) < 16 {
				return nil, fmt.Errorf("%s: short fmt chunk", path)
			}
			format = binary.LittleEndian.Uint16(body)
			channels = binary.LittleEndian.Uint16(body[2:])
			rate = binary.LittleEndian.Uint32(body[4:])
			bits = binary.LittleEndian.Uint16(body[14:])
			if format == 0xFFFE && len(body) >= 26 {
				format = binary.LittleEndian.Uint16(body[24:])
			}
		case "data":
			return decode(path, body, format, channels, bits, rate)
		}
	}
}

func decode(path string, body []byte, format, channels, bits uint16, rate uint32) (*Audio, error) {
	pcm16, float32le := format == 1 && bits == 16, format == 3 && bits == 32
	if channels == 0 || !(pcm16 || float32le) {
		return nil, errors.New(path + ": only 16-bit PCM and 32-bit float WAV files are read here")
	}
	width := int(bits / 8)
	n := len(body) / (width * int(channels))
	a := &Audio{Rate: rate, Frames: make([][2]float64, n)}
	sample := func(i int) float64 {
		if pcm16 {
			return float64(float32(int16(binary.LittleEndian.Uint16(body[2*i:]))) / 32768)
		}
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(body[4*i:])))
	}
	for f := 0; f < n; f++ {
		left := sample(f * int(channels))
		right := left
		if channels > 1 {
			right = sample(f*int(channels) + 1)
		}
		a.Frames[f] = [2]float64{left, right}
	}
	return a, nil
}

// Write writes stereo 32-bit float WAV.
func Write(path string, a *Audio) error {
	var b bytes.Buffer
	data := uint32(len(a.Frames) * 8)
	b.WriteString("RIFF")
	_ = binary.Write(&b, binary.LittleEndian, 36+data)
	b.WriteString("WAVEfmt ")
	_ = binary.Write(&b, binary.LittleEndian, []uint32{16})
	_ = binary.Write(&b, binary.LittleEndian, []uint16{3, 2})
	_ = binary.Write(&b, binary.LittleEndian, []uint32{a.Rate, a.Rate * 8})
	_ = binary.Write(&b, binary.LittleEndian, []uint16{8, 32})
	b.WriteString("data")
	_ = binary.Write(&b, binary.LittleEndian, data)
	for _, f := range a.Frames {
		_ = binary.Write(&b, binary.LittleEndian, []float32{float32(f[0]), float32(f[1])})
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}
