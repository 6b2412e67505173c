package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

const tsvHeader = "scenario\tagent\trep\tvariant\tstatus\texpected\tunique\tdup\tnoseq\twall_s\tlines_per_s\tuser_s\tsys_s\tcpu_s_per_m\tcpu_pct\twindow_s\trss_mib\tpeak_rss_mib\tpeak_anon_mib\tharness_cpu_s\tdrain_s\trequests\twire_bytes\traw_bytes\tfile_bytes\texit_cpu_s\tshutdown_s\tmax_gap_s\tmax_gap_at_s\tidle_s\tchild_cpu_s\tdetail"

func (r result) tsv() string {
	return strings.Join([]string{
		r.Scenario, r.Agent, fmt.Sprint(r.Rep), r.Variant, r.Status,
		fmt.Sprint(r.Expected), fmt.Sprint(r.Counts.Unique), fmt.Sprint(r.Counts.Duplicates), fmt.Sprint(r.Counts.NoSeq),
		f3(r.Wall.Seconds()), fmt.Sprintf("%.0f", r.LinesPerSec()), f3(r.User.Seconds()), f3(r.Sys.Seconds()),
		f3(r.CPUPerM()), f3(r.CPUPercent()), f3(r.Window.Seconds()), f3(mib(r.RSS)), f3(mib(r.PeakRSS)), f3(mib(r.PeakAnon)),
		f3(r.HarnessCPU.Seconds()), f3(r.Drain.Seconds()), fmt.Sprint(r.Counts.Requests), fmt.Sprint(r.Counts.WireBytes), fmt.Sprint(r.Counts.RawBytes),
		fmt.Sprint(r.FileBytes), f3(r.ExitCPU.Seconds()), f3(r.Shutdown.Seconds()),
		f3(r.Counts.MaxGap.Seconds()), f3(gapAt(r)), f3(r.Idle.Seconds()), f3(r.ChildCPU.Seconds()),
		strings.NewReplacer("\t", " ", "\n", " ").Replace(r.Detail),
	}, "\t")
}

// gapAt is when the longest pause between requests ended, in seconds
// after the agent was started (throughput runs), or 0.
func gapAt(r result) float64 {
	if r.Started.IsZero() || r.Counts.GapAt.IsZero() {
		return 0
	}
	return r.Counts.GapAt.Sub(r.Started).Seconds()
}

func f3(v float64) string { return fmt.Sprintf("%.3f", v) }

// machine describes the host and the software measured.
func (h *harness) machine() string {
	var b strings.Builder
	model, cores := "", 0
	if cpuinfo, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(cpuinfo)) {
			k, v, _ := strings.Cut(line, ":")
			switch strings.TrimSpace(k) {
			case "model name":
				model = strings.TrimSpace(v)
			case "processor":
				cores++
			}
		}
	}
	var memTotal string
	if mi, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(mi)) {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				var kb int64
				fmt.Sscan(v, &kb)
				memTotal = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
			}
		}
	}
	kernel := strings.TrimSpace(output("uname", "-r"))
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(&b, "- Machine: %d vCPU (%s), %s RAM, Linux %s; load average at start %s\n",
		cores, model, memTotal, kernel, strings.Join(strings.Fields(string(load))[:3], " "))
	fmt.Fprintf(&b, "- Harness: Go %s; agent, sink and writer share the machine; input files in the page cache\n", runtime.Version())
	fmt.Fprintf(&b, "- logpump: %s (%s)\n", h.cfg.Logpump, strings.TrimSpace(output(h.cfg.Logpump, "version")))
	fmt.Fprintf(&b, "- Peer: %s %s (filelog or journald receiver with file_storage, batch processor, otlp exporter)\n",
		h.cfg.Otelcol, strings.TrimSpace(output(h.cfg.Otelcol, "--version")))
	fmt.Fprintf(&b, "- Settings: N=%d REPS=%d PROTOCOL=%s BATCH=%d; idle: %d files at %d lines/s, %d quiet files × %d lines, window %s\n",
		h.cfg.N, h.cfg.Reps, h.cfg.Protocol, h.cfg.Batch, h.cfg.IdleFiles, h.cfg.IdleRate,
		h.cfg.QuietFiles, h.cfg.QuietLines, h.cfg.IdleFor)
	return b.String()
}

func output(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return "unknown"
	}
	s := strings.TrimSpace(string(out))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

func (h *harness) writeMachine() error {
	return os.WriteFile(filepath.Join(h.cfg.OutDir, "machine.md"), []byte(h.machine()), 0o644)
}

// stats of a series of values: median and range.
type stats struct{ med, lo, hi float64 }

func summarize(v []float64) (stats, bool) {
	if len(v) == 0 {
		return stats{}, false
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stats{m, s[0], s[len(s)-1]}, true
}

// medRange formats "1.23 (1.10–1.40)" with format f, or the median alone
// for a single value.
func medRange(v []float64, f string) string {
	st, ok := summarize(v)
	if !ok {
		return "–"
	}
	if st.lo == st.hi {
		return fmt.Sprintf(f, st.med)
	}
	num, unit, _ := strings.Cut(f, "×")
	if unit != "" || strings.HasSuffix(f, "×") {
		unit = "×" + unit
	}
	return fmt.Sprintf(num+unit+" ("+num+"–"+num+")", st.med, st.lo, st.hi)
}

func med(v []float64, f string) string {
	st, ok := summarize(v)
	if !ok {
		return "–"
	}
	return fmt.Sprintf(f, st.med)
}

func (h *harness) runs(scenario, agent, variant string) (ok []result, total int) {
	for _, r := range h.results {
		if r.Scenario == scenario && r.Agent == agent && r.Variant == variant {
			total++
			if r.ok() {
				ok = append(ok, r)
			}
		}
	}
	return ok, total
}

func (h *harness) find(scenario, agent, variant string, rep int) (result, bool) {
	for _, r := range h.results {
		if r.Scenario == scenario && r.Agent == agent && r.Variant == variant && r.Rep == rep && r.ok() {
			return r, true
		}
	}
	return result{}, false
}

func collect(rs []result, f func(result) float64) []float64 {
	var out []float64
	for _, r := range rs {
		out = append(out, f(r))
	}
	return out
}

// pairs returns f(a)/f(b) for every repetition where both a and b ran ok.
func (h *harness) ratios(scenario, variant, a, b string, f func(result) float64) []float64 {
	var out []float64
	for rep := 1; rep <= h.cfg.Reps; rep++ {
		ra, ok1 := h.find(scenario, a, variant, rep)
		rb, ok2 := h.find(scenario, b, variant, rep)
		if ok1 && ok2 && f(rb) != 0 {
			out = append(out, f(ra)/f(rb))
		}
	}
	return out
}

// compressionSets are the compression scenarios, each after the scenario of
// the same lines uncompressed: none, gzip, zstd.
var compressionSets = [][3]string{{"plain", "gzip", "zstd"}, {"json", "json-gzip", "json-zstd"}}

// compressionTable renders the scenarios of set: per agent, the cost of gzip
// and zstd beyond the uncompressed run of the same repetition and, with both
// agents, the ratio of those costs.
func (h *harness) compressionTable(b *strings.Builder, set [3]string, peer string, both bool) {
	fmt.Fprintf(b, "\n## Compression (%s lines; \"none\" is the %s scenario of the same repetitions)\n\n", set[0], set[0])
	b.WriteString("| agent | compression | ok/runs | lines/s | CPU s per M lines | extra CPU s per M vs none | bytes sent per line | ratio | peak RSS MiB |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, a := range h.cfg.Agents {
		for i, sc := range set {
			ok, total := h.runs(sc, a, "")
			if total == 0 {
				continue
			}
			var extra []float64 // none for "none"
			if i > 0 {
				extra = h.extraCPU(sc, set[0], a)
			}
			name := [3]string{"none", "gzip", "zstd"}[i]
			fmt.Fprintf(b, "| %s | %s | %d/%d | %s | %s | %s | %s | %s | %s |\n", a, name, len(ok), total,
				med(collect(ok, rate), "%.0f"), medRange(collect(ok, cpuPerM), "%.2f"),
				medRange(extra, "%+.2f"),
				med(collect(ok, func(r result) float64 { return float64(r.Counts.WireBytes) / float64(r.Counts.Records) }), "%.1f"),
				med(collect(ok, func(r result) float64 { return float64(r.Counts.RawBytes) / float64(r.Counts.WireBytes) }), "%.1f×"),
				med(collect(ok, peak), "%.1f"))
		}
	}
	if both {
		var ratios []string
		for i, sc := range set[1:] {
			var r []float64
			for rep := 1; rep <= h.cfg.Reps; rep++ {
				lp, ok1 := h.extraAt(sc, set[0], "logpump", rep)
				pe, ok2 := h.extraAt(sc, set[0], peer, rep)
				if ok1 && ok2 && pe > 0 {
					r = append(r, lp/pe)
				}
			}
			if len(r) > 0 {
				ratios = append(ratios, [2]string{"gzip", "zstd"}[i]+" "+medRange(r, "%.2f×"))
			}
		}
		if len(ratios) > 0 {
			fmt.Fprintf(b, "\nExtra CPU s per M lines of compression, logpump / Collector, per repetition, median (range): %s\n", strings.Join(ratios, "; "))
		}
	}
}

// extraCPU is, for each repetition, the CPU s per M lines agent a spent in
// scenario beyond its run of base (the same lines, compression off) in the
// same repetition.
func (h *harness) extraCPU(scenario, base, a string) []float64 {
	var out []float64
	for rep := 1; rep <= h.cfg.Reps; rep++ {
		if x, ok := h.extraAt(scenario, base, a, rep); ok {
			out = append(out, x)
		}
	}
	return out
}

func (h *harness) extraAt(scenario, base, a string, rep int) (float64, bool) {
	r, ok1 := h.find(scenario, a, "", rep)
	b, ok2 := h.find(base, a, "", rep)
	return r.CPUPerM() - b.CPUPerM(), ok1 && ok2
}

func (h *harness) has(scenario string) bool { return slices.Contains(h.cfg.Scenarios, scenario) }

var (
	cpuPerM = func(r result) float64 { return r.CPUPerM() }
	rate    = func(r result) float64 { return r.LinesPerSec() }
	peak    = func(r result) float64 { return mib(r.PeakRSS) }
	anon    = func(r result) float64 { return mib(r.PeakAnon) }
	cpuPct  = func(r result) float64 { return r.CPUPercent() }
	// perRequest is the mean number of records in an export request.
	perRequest = func(r result) float64 { return float64(r.Counts.Records) / float64(r.Counts.Requests) }
)

// report renders every table of the run as Markdown.
func (h *harness) report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# logpump benchmark, %s\n\n", h.started.Format("2006-01-02 15:04 MST"))
	b.WriteString(h.machine())
	b.WriteString("\nMedians over the runs that delivered every line exactly once (ok/runs); ranges in brackets. " +
		"CPU = agent user+sys seconds until the last line was counted; cores busy = CPU s / wall s; " +
		"peak RSS = VmHWM at that moment; peak anon = the largest RssAnon (heap, stacks: RSS without the executable's " +
		"file-backed pages) sampled every 20 ms; sink CPU = the harness process (OTLP sink) over the run; stop s = SIGTERM to exit.\n")

	peer := "otelcol"
	both := slices.Contains(h.cfg.Agents, "logpump") && slices.Contains(h.cfg.Agents, peer)

	var tp []string
	for _, name := range []string{"plain", "plain3", "json", "cri"} {
		if h.has(name) {
			tp = append(tp, name)
		}
	}
	if len(tp) > 0 {
		fmt.Fprintf(&b, "\n## Throughput: %d lines from one file, delivered over OTLP/%s\n\n", h.cfg.N, h.cfg.Protocol)
		h.throughputTable(&b, tp, peer, both)
	}
	if h.has("journald") {
		reader := h.cfg.Reader
		if reader == "" {
			reader = "not set"
		}
		fmt.Fprintf(&b, "\n## journald: %d journal entries (%s), priority %s and more severe, delivered over OTLP/%s\n\n"+
			"CPU and memory are the agent's and its children's (journalctl) together; CPU s in children is the part of CPU s "+
			"spent in them; peak RSS is the largest sum of VmRSS sampled every 20 ms (journalctl's includes the journal "+
			"pages it has mapped). logpump's reader option: %s.\n\n",
			h.cfg.N, h.cfg.JournalDir, h.cfg.JournalPriority, h.cfg.Protocol, reader)
		h.throughputTable(&b, []string{"journald"}, peer, both)
	}

	for _, set := range compressionSets {
		if h.has(set[1]) || h.has(set[2]) {
			h.compressionTable(&b, set, peer, both)
		}
	}

	for _, idle := range []struct{ name, title string }{
		{"trickle", fmt.Sprintf("Idle: %d files receiving %d lines/s in total (one write per line) for %s", h.cfg.IdleFiles, h.cfg.IdleRate, h.cfg.IdleFor)},
		{"quiet", fmt.Sprintf("Idle: %d quiet files (%d lines each, all delivered first), nothing written for %s", h.cfg.QuietFiles, h.cfg.QuietLines, h.cfg.IdleFor)},
	} {
		if !h.has(idle.name) {
			continue
		}
		fmt.Fprintf(&b, "\n## %s\n\n", idle.title)
		drain := "drain s (writer stop to last line)"
		if idle.name == "quiet" {
			drain = "s to deliver the files"
		}
		fmt.Fprintf(&b, "| agent | ok/runs | CPU %% of one core | RSS MiB | peak RSS MiB | %s | records per request |\n|---|---|---|---|---|---|---|\n", drain)
		for _, a := range h.cfg.Agents {
			ok, total := h.runs(idle.name, a, "")
			if total == 0 {
				continue
			}
			fmt.Fprintf(&b, "| %s | %d/%d | %s | %s | %s | %s | %s |\n", a, len(ok), total,
				medRange(collect(ok, cpuPct), "%.2f"), med(collect(ok, func(r result) float64 { return mib(r.RSS) }), "%.1f"),
				med(collect(ok, peak), "%.1f"), med(collect(ok, func(r result) float64 { return r.Drain.Seconds() }), "%.2f"),
				med(collect(ok, perRequest), "%.1f"))
		}
		if both {
			fmt.Fprintf(&b, "\nlogpump / Collector: CPU %s, peak RSS %s\n",
				medRange(h.ratios(idle.name, "", "logpump", peer, cpuPct), "%.3f×"),
				medRange(h.ratios(idle.name, "", "logpump", peer, peak), "%.2f×"))
		}
	}

	if h.has("rss") {
		b.WriteString("\n## Peak RSS against file size (plain lines)\n\n")
		b.WriteString("| agent | small file | peak RSS MiB | large file | peak RSS MiB | large / small | lines/s (large) |\n|---|---|---|---|---|---|---|\n")
		for _, a := range h.cfg.Agents {
			small, _ := h.runs("rss", a, "small")
			big, _ := h.runs("rss", a, "big")
			fmt.Fprintf(&b, "| %s | %.0f MiB | %s | %.0f MiB | %s | %s | %s |\n", a,
				mib(h.cfg.RSSSmall), med(collect(small, peak), "%.1f"), mib(h.cfg.RSSBig), med(collect(big, peak), "%.1f"),
				medRange(h.ratios2("rss", a, "big", "small", peak), "%.2f×"), med(collect(big, rate), "%.0f"))
		}
	}

	var paused []result
	for _, r := range h.results {
		if r.paused() {
			paused = append(paused, r)
		}
	}
	if len(paused) > 0 {
		b.WriteString("\n## Runs in which delivery paused for over a second\n\n| scenario | agent | rep | wall s | longest pause s | pause ended, s after start | time with no arrivals s |\n|---|---|---|---|---|---|---|\n")
		for _, r := range paused {
			fmt.Fprintf(&b, "| %s %s | %s | %d | %.2f | %.2f | %.2f | %.1f |\n", r.Scenario, r.Variant, r.Agent, r.Rep,
				r.Wall.Seconds(), r.Counts.MaxGap.Seconds(), gapAt(r), r.Idle.Seconds())
		}
	}

	var bad []result
	for _, r := range h.results {
		if !r.ok() {
			bad = append(bad, r)
		}
	}
	if len(bad) > 0 {
		b.WriteString("\n## Runs that did not deliver every line exactly once\n\n| scenario | agent | rep | status | delivered | dup | detail |\n|---|---|---|---|---|---|---|\n")
		for _, r := range bad {
			fmt.Fprintf(&b, "| %s %s | %s | %d | %s | %d/%d | %d | %s |\n", r.Scenario, r.Variant, r.Agent, r.Rep, r.Status,
				r.Counts.Unique, r.Expected, r.Counts.Duplicates, strings.ReplaceAll(r.Detail, "|", "\\|"))
		}
	}
	fmt.Fprintf(&b, "\nRun took %s.\n", time.Since(h.started).Round(time.Second))
	return b.String()
}

// throughputTable renders the rows of the throughput scenarios scs and,
// with both agents, their ratios. The journald scenario gets a column for
// the CPU of the agent's children.
func (h *harness) throughputTable(b *strings.Builder, scs []string, peer string, both bool) {
	child := slices.Contains(scs, "journald")
	b.WriteString("| scenario | agent | ok/runs | wall s | lines/s | CPU s | CPU s per M lines | cores busy | peak RSS MiB | peak anon MiB | sink CPU s | stop s |")
	sep := "|---|---|---|---|---|---|---|---|---|---|---|---|"
	if child {
		b.WriteString(" CPU s in children |")
		sep += "---|"
	}
	b.WriteString("\n" + sep + "\n")
	for _, sc := range scs {
		for _, a := range h.cfg.Agents {
			ok, total := h.runs(sc, a, "")
			if total == 0 {
				continue
			}
			fmt.Fprintf(b, "| %s | %s | %d/%d | %s | %s | %s | %s | %s | %s | %s | %s | %s |", sc, a, len(ok), total,
				med(collect(ok, func(r result) float64 { return r.Wall.Seconds() }), "%.2f"),
				med(collect(ok, rate), "%.0f"),
				med(collect(ok, func(r result) float64 { return (r.User + r.Sys).Seconds() }), "%.2f"),
				medRange(collect(ok, cpuPerM), "%.2f"),
				med(collect(ok, func(r result) float64 { return (r.User + r.Sys).Seconds() / r.Wall.Seconds() }), "%.2f"),
				med(collect(ok, peak), "%.1f"),
				med(collect(ok, anon), "%.1f"),
				med(collect(ok, func(r result) float64 { return r.HarnessCPU.Seconds() }), "%.2f"),
				med(collect(ok, func(r result) float64 { return r.Shutdown.Seconds() }), "%.2f"))
			if child {
				fmt.Fprintf(b, " %s |", med(collect(ok, func(r result) float64 { return r.ChildCPU.Seconds() }), "%.2f"))
			}
			b.WriteString("\n")
		}
	}
	if both {
		b.WriteString("\nRatio logpump / Collector, per repetition (back-to-back runs), median (range); " +
			"below 1 is better for CPU and RSS, above 1 is better for lines/s:\n\n")
		b.WriteString("| scenario | CPU s per M lines | lines/s | peak RSS | peak anon |\n|---|---|---|---|---|\n")
		for _, sc := range scs {
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", sc,
				medRange(h.ratios(sc, "", "logpump", peer, cpuPerM), "%.2f×"),
				medRange(h.ratios(sc, "", "logpump", peer, rate), "%.2f×"),
				medRange(h.ratios(sc, "", "logpump", peer, peak), "%.2f×"),
				medRange(h.ratios(sc, "", "logpump", peer, anon), "%.2f×"))
		}
	}
}

// ratios2 is f(variant a)/f(variant b) of one agent, per repetition.
func (h *harness) ratios2(scenario, agent, a, b string, f func(result) float64) []float64 {
	var out []float64
	for rep := 1; rep <= h.cfg.Reps; rep++ {
		ra, ok1 := h.find(scenario, agent, a, rep)
		rb, ok2 := h.find(scenario, agent, b, rep)
		if ok1 && ok2 && f(rb) != 0 {
			out = append(out, f(ra)/f(rb))
		}
	}
	return out
}
