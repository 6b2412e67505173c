package selfmetrics

// Every metric logpump exports, by its Prometheus name. Names follow
// logpump_<subsystem>_<name>_<unit>[_total]; labels are bounded by the
// configuration (source, exporter and processor names) or by a fixed set
// (reason, result), never by file paths. Per-file detail is served by
// /debug/pipeline instead.
const (
	// Counters recorded per batch or per request.

	// ReadLines counts lines read from files. Labels: source.
	ReadLines = "logpump_tailer_read_lines_total"
	// ReadBytes counts bytes read from files, line ends included. Labels: source.
	ReadBytes = "logpump_tailer_read_bytes_total"
	// SentRecords counts records an exporter's destination accepted. Labels: exporter.
	SentRecords = "logpump_exporter_sent_records_total"
	// ExportRetries counts failed export attempts that were retried. Labels: exporter.
	ExportRetries = "logpump_exporter_retries_total"
	// ExportFailures counts failed export attempts, retried or not, by the
	// reason of the failure. Labels: exporter, reason (connection, timeout,
	// unavailable, rate_limited, auth, not_found, server_error, too_large,
	// bad_request, redirect, other).
	ExportFailures = "logpump_exporter_failed_attempts_total"
	// ExportDuration is the time of one export request, by outcome. Labels:
	// exporter, result (ok, retryable, permanent).
	ExportDuration = "logpump_exporter_request_duration_seconds"
	// ProcessorDropped counts records a processor removed. Labels:
	// processor, reason (parse_error, filter, sample, rate_limit, excluded).
	ProcessorDropped = "logpump_processor_dropped_records_total"
	// ProcessorErrors counts records a processor kept unchanged because it
	// failed on them. Labels: processor, reason (filter_error,
	// invalid_annotation).
	ProcessorErrors = "logpump_processor_errors_total"
	// ExporterDropped counts records an exporter lost: rejected by the
	// destination in a partial success, or in a request that failed
	// permanently or was given up by retry.max_attempts/max_elapsed.
	// Labels: exporter, reason (rejected, permanent_error, gave_up).
	ExporterDropped = "logpump_exporter_dropped_records_total"
	// Reloads counts SIGHUP reloads. Labels: result (success, failure).
	Reloads = "logpump_config_reloads_total"

	// Counters read at collection time from the tailers' own counts. A
	// source restarted by a reload starts them again from 0 (a counter
	// reset to Prometheus).

	// LostBytes counts bytes known to have been on disk, never
	// acknowledged, and no longer readable (a rotated file gone before it
	// was read). Labels: source, reason (not_found, truncated, closed),
	// every reason always present.
	LostBytes = "logpump_tailer_lost_bytes_total"
	// LostFiles counts the files lost bytes were in. Labels: source.
	LostFiles = "logpump_tailer_lost_files_total"
	// RecoveredFiles counts files found holding the unread end of a file
	// that rotation moved out of the patterns (follow_rotated). Labels: source.
	RecoveredFiles = "logpump_tailer_recovered_files_total"
	// ForcedCloses counts files closed with bytes not read yet, to respect
	// max_open_files. Labels: source.
	ForcedCloses = "logpump_tailer_forced_closes_total"
	// UnreadableFiles counts matched files that could not be opened
	// (permission denied), each once until it is readable or gone. Labels:
	// source.
	UnreadableFiles = "logpump_tailer_unreadable_files_total"
	// JournalRestarts counts the times a journald source started
	// journalctl again after it failed or ended. Labels: source.
	JournalRestarts = "logpump_journald_restarts_total"
	// JournalGaps counts the times a journald source resumed after an
	// entry the journal no longer held (vacuumed or rotated away before it
	// was read, or another journal's cursor). Labels: source.
	JournalGaps = "logpump_journald_gaps_total"
	// JournalSkipped counts the journal files, and fields of entries, that
	// a journald source's native reader skipped as damaged or unreadable
	// (each logged). Labels: source.
	JournalSkipped = "logpump_journald_skipped_total"

	// Gauges read at collection time.

	// QueueBatches is the number of batches waiting in an exporter's queue. Labels: exporter.
	QueueBatches = "logpump_exporter_queue_batches"
	// InFlightRequests is the number of export requests being sent or waiting
	// for a retry. Labels: exporter.
	InFlightRequests = "logpump_exporter_in_flight_requests"
	// FailingSeconds is how long an exporter's attempts have been failing,
	// 0 while its destination accepts requests. Labels: exporter.
	FailingSeconds = "logpump_exporter_failing_seconds"
	// OpenFiles is the number of files a source holds open. Labels: source.
	OpenFiles = "logpump_tailer_open_files"
	// LagBytes is the sum over a source's files of the bytes between the read
	// position and the end of the file. Labels: source.
	LagBytes = "logpump_tailer_lag_bytes"
	// BehindBytes is the sum over a source's files of the bytes on disk not
	// acknowledged yet (read or not). Labels: source.
	BehindBytes = "logpump_tailer_behind_bytes"
	// BehindSeconds is how long the oldest byte not acknowledged yet has
	// been on disk, 0 when every byte is. Labels: source.
	BehindSeconds = "logpump_tailer_behind_seconds"
	// CheckpointAge is the time since checkpoints were last written.
	CheckpointAge = "logpump_checkpoint_age_seconds"
	// LastReloadSuccessful is 1 when the last reload applied the new
	// configuration and 0 when it was rejected (the old one keeps running).
	LastReloadSuccessful = "logpump_config_last_reload_successful"
	// LastReloadSuccessTime is when a configuration was last applied, in Unix seconds.
	LastReloadSuccessTime = "logpump_config_last_reload_success_timestamp_seconds"
	// EndpointRequests counts attempts sent to one endpoint of an exporter
	// (an address of a resolved name, or an entry of endpoints). Labels:
	// exporter, endpoint (bounded by the configuration and the addresses
	// its names resolve to).
	EndpointRequests = "logpump_exporter_endpoint_requests_total"
	// EndpointErrors counts attempts that failed on an endpoint and took it
	// out (the request went on to another). Labels: exporter, endpoint.
	EndpointErrors = "logpump_exporter_endpoint_errors_total"
	// EndpointUp is 1 while an endpoint takes requests, 0 while it is out
	// after a failure (probed back after a backoff). Labels: exporter, endpoint.
	EndpointUp = "logpump_exporter_endpoint_up"
	// EndpointRecords counts records in the attempts an endpoint accepted
	// (partly rejected ones included). Labels: exporter, endpoint.
	EndpointRecords = "logpump_exporter_endpoint_records_total"
	// EndpointDuration is the time of one attempt on one endpoint, answered
	// or failed. Labels: exporter, endpoint.
	EndpointDuration = "logpump_exporter_endpoint_request_duration_seconds"
	// BuildInfo is 1, labelled with the agent's version and Go version.
	BuildInfo = "logpump_build_info"
)

// Names lists every metric name, for documentation and tests.
func Names() []string {
	return []string{
		ReadLines, ReadBytes, SentRecords, ExportRetries, ExportFailures, ExportDuration, ProcessorDropped, ProcessorErrors, ExporterDropped, Reloads,
		LostBytes, LostFiles, RecoveredFiles, ForcedCloses, UnreadableFiles, JournalRestarts, JournalGaps, JournalSkipped,
		QueueBatches, InFlightRequests, FailingSeconds, OpenFiles, LagBytes, BehindBytes, BehindSeconds, CheckpointAge,
		LastReloadSuccessful, LastReloadSuccessTime, EndpointRequests, EndpointErrors, EndpointUp,
		EndpointRecords, EndpointDuration, BuildInfo,
	}
}
