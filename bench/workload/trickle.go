package workload

import (
	"context"
	"fmt"
	"os"
	"time"
)

// Trickle appends lines of format f at rate lines per second in total,
// round-robin over files, one write(2) per line, for duration d or until ctx
// is done. Sequence numbers start at first. It returns how many lines it
// wrote; their numbers are first .. first+written-1.
//
// Lines are written on a 10 ms tick, catching up to rate×elapsed on every
// tick, so a late tick does not lower the average rate.
func Trickle(ctx context.Context, files []*os.File, f Format, first uint64, rate int, d time.Duration) (uint64, error) {
	if len(files) == 0 || rate <= 0 {
		return 0, nil
	}
	total := uint64(float64(rate) * d.Seconds())
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	var written uint64
	var line []byte
	for written < total {
		select {
		case <-ctx.Done():
			return written, ctx.Err()
		case <-tick.C:
		}
		due := min(total, uint64(float64(rate)*time.Since(start).Seconds()))
		for ; written < due; written++ {
			seq := first + written
			line = append(Append(line[:0], f, seq), '\n')
			file := files[written%uint64(len(files))]
			if _, err := file.Write(line); err != nil {
				return written, fmt.Errorf("append to %s: %w", file.Name(), err)
			}
		}
	}
	return written, nil
}
