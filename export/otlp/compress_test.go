package otlp

import (
	"bytes"
	stdgzip "compress/gzip"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/logpump/logpump/event"
	"github.com/logpump/logpump/export"
)

// TestCRC32Combine: the CRC of two pieces joined, from theirs, is the CRC
// of the joined bytes, for lengths from none to several MiB.
func TestCRC32Combine(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range [][2]int{{0, 0}, {0, 5}, {5, 0}, {1, 1}, {3, 1000}, {100_000, 65_537}, {7, 4 << 20}} {
		a, b := make([]byte, n[0]), make([]byte, n[1])
		for i := range a {
			a[i] = byte(rng.Uint32())
		}
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		want := crc32.ChecksumIEEE(append(append([]byte(nil), a...), b...))
		if got := crc32Combine(crc32.ChecksumIEEE(a), crc32.ChecksumIEEE(b), len(b)); got != want {
			t.Errorf("lengths %d+%d: combined %08x, want %08x", n[0], n[1], got, want)
		}
	}
}

// TestCompressRequestOfParts: a request made of batches encoded ahead (and
// compressed, with gzip) and of runs of batches compressed with it
// decompresses, with a decoder other than the one that wrote it (Go's
// compress/gzip checks the CRC and size of its trailer), to the very bytes
// of the same request uncompressed, in one gzip member or zstd frame; it is
// a fraction of that size, and the parts go back to their list.
func TestCompressRequestOfParts(t *testing.T) {
	a := &event.Resource{Attrs: []event.KeyValue{{Key: "service.name", Value: event.String("a")}}}
	b := &event.Resource{Attrs: []event.KeyValue{{Key: "service.name", Value: event.String("b")}}}
	batches := func() []*event.Batch {
		x, y := benchBatch(250), benchBatch(250)
		x.Resource, y.Resource = a, b
		return []*event.Batch{x, batchOf(a, event.Record{Body: event.String("one")}), batchOf(b, event.Record{Body: event.String("two")}), y, benchBatch(40)}
	}
	for _, name := range []string{"gzip", "zstd"} {
		for _, ahead := range [][]bool{nil, {true, false, false, true, true}, {true, true, true, true, true}, {false, true, false, false, true}} {
			t.Run(fmt.Sprintf("%s/%v", name, ahead), func(t *testing.T) {
				c, err := newCodec(name, export.BufferOptions{Size: 2, InFlight: 2})
				if err != nil {
					t.Fatal(err)
				}
				defer c.close()
				// The request as it is sent uncompressed.
				plain, plainParts := newBufferPool(1), newBufferPool(8)
				want := batches()
				var ps []export.Part
				if ahead != nil {
					ps = make([]export.Part, len(want))
					for i, b := range want {
						if ahead[i] {
							ps[i] = plainParts.part(b)
						}
					}
				}
				wantReq := plain.encode(want, ps).request()

				bufs, parts := newBufferPool(1), newBufferPool(8)
				got := batches()
				var invalid atomic.Int64
				ps = nil
				if ahead != nil {
					ps = make([]export.Part, len(got))
					for i, b := range got {
						if !ahead[i] {
							continue
						}
						ps[i] = partOf(c, &parts, b, &invalid)
						b.Records = nil // as detached: the request must not read them
					}
				}
				for range 2 { // the second time from recycled buffers
					zp, n, _ := c.compressRequest(&bufs, &parts, got, ps)
					if n != len(wantReq) {
						t.Errorf("request of %d bytes before compression, want %d", n, len(wantReq))
					}
					if len(*zp) > n/3 {
						t.Errorf("request of %d bytes compressed to %d", n, len(*zp))
					}
					var h zstd.Header
					if name == "zstd" && (h.Decode(*zp) != nil || h.FrameContentSize != uint64(n)) {
						t.Errorf("first zstd frame holds %d bytes of the request's %d", h.FrameContentSize, n)
					}
					if d := decompressAll(t, name, *zp); !bytes.Equal(d, wantReq) {
						t.Fatalf("decompressed %d bytes, not the %d of the request", len(d), len(wantReq))
					}
					bufs.put(zp)
					if ps == nil {
						break
					}
					back := len(c.zparts) // gzip: compressed parts
					if name == "zstd" {
						back = len(parts.free) // encoded parts, compressed with their request
					}
					if back != countTrue(ahead) {
						t.Errorf("%d parts back on their list, want %d", back, countTrue(ahead))
					}
					got = batches()
					for i, b := range got {
						if ahead[i] {
							ps[i] = partOf(c, &parts, b, &invalid)
							b.Records = nil
						}
					}
				}
			})
		}
	}
}

func countTrue(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// decompressAll decompresses a whole request with a decoder that did not
// compress it.
func decompressAll(t *testing.T, name string, z []byte) []byte {
	t.Helper()
	var r io.Reader
	br := bytes.NewReader(z)
	switch name {
	case "gzip":
		zr, err := stdgzip.NewReader(br)
		if err != nil {
			t.Fatal(err)
		}
		zr.Multistream(false) // the request is one member, and nothing after it
		r = zr
	default:
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	}
	d, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decompress: %v", err)
	}
	if br.Len() > 0 {
		t.Fatalf("%d bytes after the compressed request", br.Len())
	}
	return d
}
