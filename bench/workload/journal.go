package workload

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
)

// Journal export format (systemd's "Journal Export Format"): one field per
// line, NAME=value, an empty line after each entry. systemd-journal-remote
// turns a stream of it into journal files.

var (
	units      = []string{"checkout.service", "catalog.service", "payments.service", "search.service", "accounts.service", "shipping.service"}
	priorities = []byte{'6', '6', '6', '6', '5', '4', '6', '3'} // as levels: info, notice for DEBUG, warning, err
)

// AppendJournalEntry appends entry seq in journal export format, its
// closing empty line included, to b. MESSAGE is a 120-150 byte text with
// "seq=N"; the other fields are those journald adds to a service's output
// (_SYSTEMD_UNIT, _PID, _COMM, _HOSTNAME, _BOOT_ID, ...). Entries are 1 ms
// apart from the workload's base time. bootID and machineID are 32 hex
// digits.
func AppendJournalEntry(b []byte, seq uint64, bootID, machineID string) []byte {
	r := mix(seq)
	svc := (r >> 3) % uint64(len(services))
	us := uint64(base.UnixMicro()) + seq*1000
	b = append(b, "__REALTIME_TIMESTAMP="...)
	b = strconv.AppendUint(b, us, 10)
	b = append(b, "\n__MONOTONIC_TIMESTAMP="...)
	b = strconv.AppendUint(b, 5_000_000+seq*1000, 10)
	b = append(b, "\n_BOOT_ID="...)
	b = append(b, bootID...)
	b = append(b, "\n_MACHINE_ID="...)
	b = append(b, machineID...)
	b = append(b, "\n_HOSTNAME=bench-node-1\n_TRANSPORT=stdout\n_UID=998\n_GID=998\n_SYSTEMD_SLICE=system.slice\n_SYSTEMD_UNIT="...)
	b = append(b, units[svc]...)
	b = append(b, "\n_PID="...)
	b = strconv.AppendUint(b, 1200+svc*37, 10)
	b = append(b, "\n_COMM="...)
	b = append(b, services[svc]...)
	b = append(b, "\nSYSLOG_IDENTIFIER="...)
	b = append(b, services[svc]...)
	b = append(b, "\nPRIORITY="...)
	b = append(b, pick(r, priorities))
	b = append(b, "\nMESSAGE="...)
	lv := pick(r, levels)
	b = append(b, lv...)
	b = appendSeqRequest(b, seq, r)
	b = append(b, " region="...)
	b = append(b, pick(r>>17, regions)...)
	b = append(b, " trace_id="...)
	b = strconv.AppendUint(b, mix(r)|1<<63, 16)
	b = append(b, "\n\n"...)
	return b
}

// WriteJournalExport writes entries first .. first+n-1 to w in journal
// export format and returns the number of bytes written.
func WriteJournalExport(w io.Writer, first, n uint64, bootID, machineID string) (int64, error) {
	if !hex32(bootID) || !hex32(machineID) {
		return 0, fmt.Errorf("journal export: boot and machine IDs must be 32 lower-case hex digits; got %q, %q", bootID, machineID)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var entry []byte
	var size int64
	for seq := first; seq < first+n; seq++ {
		entry = AppendJournalEntry(entry[:0], seq, bootID, machineID)
		size += int64(len(entry))
		if _, err := bw.Write(entry); err != nil {
			return size, fmt.Errorf("write journal export: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return size, fmt.Errorf("write journal export: %w", err)
	}
	return size, nil
}

func hex32(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
