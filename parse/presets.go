package parse

import (
	"slices"
	"strings"
)

// regexPreset is a ready-made regex parser: a pattern for a well-known log
// format, and the fields that hold its time, severity and message.
type regexPreset struct {
	pattern    string
	timeField  string
	timeLayout string
	sevField   string
	sevMapping map[string][]string
	bodyField  string
}

// The request line of an access log; a line that is not a request (a TLS
// handshake sent to a plain port, "-") still matches, without method, path
// and protocol.
const accessRequest = `"(?:(?P<method>[A-Z]+) (?P<path>[^ "]+)(?: (?P<protocol>[^"]+))?|[^"]*)"`

// regexPresets are hand-written patterns, chosen over grok-style composed
// ones by measurement: BenchmarkPresetGrokStyle parses the same access log
// lines in 3.0-4.0 µs with the preset and 12.5-15.3 µs with the pattern
// composed from general parts (IPORHOST, HTTPDATE, QS, ...), the same
// allocations; RE2 pays for every alternative the general parts allow.
var regexPresets = map[string]regexPreset{
	// Common and combined log format, as nginx and Apache write them:
	// `10.0.0.7 - alice [01/May/2024:10:25:01 +0000] "GET / HTTP/1.1" 200 512 "-" "curl/8"`.
	"nginx_access":  combined,
	"apache_access": combined,
	// `2024/05/01 10:20:00 [error] 1234#5678: *9 open() "/x" failed (2: No such file or directory),
	// client: 10.0.0.1, server: shop, request: "GET /x HTTP/1.1", host: "shop"`.
	"nginx_error": {
		pattern: `^(?P<time>\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}) \[(?P<level>\w+)\] (?P<pid>\d+)#(?P<tid>\d+): ` +
			`(?:\*(?P<connection>\d+) )?(?P<message>.*?)` +
			`(?:, client: (?P<client>[^,]+))?(?:, server: (?P<server>[^,]*))?(?:, request: "(?P<request>[^"]*)")?` +
			`(?:, upstream: "(?P<upstream>[^"]*)")?(?:, host: "(?P<host>[^"]*)")?(?:, referrer: "(?P<referrer>[^"]*)")?$`,
		timeField: "time", timeLayout: "%Y/%m/%d %H:%M:%S", sevField: "level", bodyField: "message",
	},
	// `[Wed May 01 10:20:00.123456 2024] [core:error] [pid 1234:tid 5678] [client 10.0.0.1:5555] AH00126: Invalid URI`.
	"apache_error": {
		pattern: `^\[(?P<time>[^\]]+)\] \[(?:(?P<module>[\w-]+):)?(?P<level>\w+)\] \[pid (?P<pid>\d+)(?::tid (?P<tid>\d+))?\]` +
			`(?: \[client (?P<client>[^\]]+)\])? (?:(?P<error_code>AH\d+): )?(?P<message>.*)$`,
		timeField: "time", timeLayout: "Mon Jan 02 15:04:05 2006", sevField: "level", bodyField: "message",
		sevMapping: map[string][]string{"TRACE": {"trace1", "trace2", "trace3", "trace4", "trace5", "trace6", "trace7", "trace8"}},
	},
	// HAProxy's HTTP log format, after a syslog header or alone:
	// `10.0.0.1:5555 [01/May/2024:10:20:00.123] fe_http be_app/srv1 0/0/1/2/3 200 512 - - ---- 1/1/0/0/0 0/0 "GET /x HTTP/1.1"`.
	"haproxy_http": {
		pattern: `(?P<client_ip>[\d.]+|[0-9a-fA-F:]+):(?P<client_port>\d+) \[(?P<time>[^\]]+)\] (?P<frontend>\S+) ` +
			`(?P<backend>[^/ ]+)/(?P<server>\S+) (?P<timers>[\d/+-]+) (?P<status>-?\d+) (?P<bytes_read>\+?\d+) \S+ \S+ ` +
			`(?P<termination_state>\S+) (?P<connections>[\d/+-]+) (?P<queues>[\d/+-]+)(?: \{[^}]*\})*(?: ` + accessRequest + `)?`,
		timeField: "time", timeLayout: "02/Jan/2006:15:04:05.000",
	},
	// PostgreSQL with log_line_prefix '%m [%p] ' (the default) or
	// '%m [%p] %q%u@%d ': `2024-05-01 10:20:00.123 UTC [1234] app@shop ERROR:  relation "x" does not exist`.
	"postgres": {
		pattern: `^(?P<time>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?) (?P<timezone>[A-Za-z]{2,5}|[+-]\d{2}(?::?\d{2})?) ` +
			`\[(?P<pid>\d+)\] (?:(?P<user>[^@ \[]*)@(?P<database>\S*) )?(?P<level>[A-Z]+\d?):  (?P<message>(?s:.*))$`,
		timeField: "time", timeLayout: "rfc3339", sevField: "level", bodyField: "message",
		sevMapping: map[string][]string{"INFO": {"log", "statement", "detail", "hint", "context", "location"}, "FATAL2": {"panic"}},
	},
	// One entry of MySQL's slow query log, joined by a multiline processor
	// (start: '^# Time: '): "# Time: ...", "# User@Host: ...",
	// "# Query_time: ...", an optional "use db;", "SET timestamp=...;" and
	// the query.
	"mysql_slow": {
		pattern: `(?s)^# Time: (?P<time>\S+)\n# User@Host: (?P<user>[^\[\n]*)\[[^\]\n]*\] @ (?P<host>[^\[\n]*?) ?\[(?P<ip>[^\]\n]*)\]` +
			`(?:\s+Id:\s+(?P<thread_id>\d+))?\n# Query_time: (?P<query_time>[\d.]+)\s+Lock_time: (?P<lock_time>[\d.]+)` +
			`\s+Rows_sent: (?P<rows_sent>\d+)\s+Rows_examined: (?P<rows_examined>\d+)[^\n]*\n` +
			`(?:use (?P<database>[^;\n]+);\n)?(?:SET timestamp=\d+;\n)?(?P<query>.*?)\n?$`,
		timeField: "time", timeLayout: "rfc3339", bodyField: "query",
	},
}

var combined = regexPreset{
	pattern: `^(?P<remote_addr>\S+) (?P<ident>\S+) (?P<remote_user>\S+) \[(?P<time>[^\]]+)\] ` + accessRequest +
		` (?P<status>\d{3}) (?P<body_bytes_sent>\d+|-)(?: "(?P<http_referer>[^"]*)" "(?P<http_user_agent>[^"]*)")?`,
	timeField: "time", timeLayout: "%d/%b/%Y:%H:%M:%S %z",
}

// RegexPresets lists the presets of the regex parser.
func RegexPresets() []string {
	var names []string
	for n := range regexPresets {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func presetNames() string { return strings.Join(RegexPresets(), ", ") }
