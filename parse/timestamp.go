package parse

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/logpump/logpump/event"
)

// TimeOptions says where a parser finds a record's time and how to read it.
type TimeOptions struct {
	// Field names the parsed field holding the time ("time", "ts", "@timestamp").
	Field string `yaml:"field"`
	// Layout is one of: rfc3339 (the default; also accepts a space for the T,
	// any number of fraction digits and no zone), epoch (seconds,
	// milliseconds, microseconds or nanoseconds guessed from the magnitude),
	// epoch_s, epoch_ms, epoch_us, epoch_ns, a strptime pattern containing %
	// ("%Y-%m-%d %H:%M:%S.%f %z"), or a Go layout ("02/Jan/2006:15:04:05 -0700").
	Layout string `yaml:"layout"`
	// Location is the IANA time zone for times that carry no offset
	// ("Europe/Berlin"); UTC by default, "Local" for the host's zone.
	Location string `yaml:"location"`
}

type timeKind uint8

const (
	timeRFC3339 timeKind = iota
	timeEpoch
	timeEpochS
	timeEpochMS
	timeEpochUS
	timeEpochNS
	timeLayout
)

// TimeParser reads timestamps in one layout. It is read-only after
// [NewTimeParser] and safe for concurrent use.
type TimeParser struct {
	kind    timeKind
	layout  string // Go layout for timeLayout
	noYear  bool   // the layout has no year: take it from now
	loc     *time.Location
	now     func() time.Time
	utcOnly bool
}

// errTime is returned when a timestamp does not match the layout; it is a
// constant so that a bad timestamp costs no allocation.
var errTime = errors.New("parse timestamp: does not match the layout")

// NewTimeParser compiles layout (see [TimeOptions.Layout]) for times in the
// zone named location. now supplies the year for layouts without one (RFC
// 3164 syslog); time.Now when nil. Loading a zone other than UTC or Local
// reads the system's zone database.
func NewTimeParser(layout, location string, now func() time.Time) (*TimeParser, error) {
	if now == nil {
		now = time.Now
	}
	p := &TimeParser{now: now, loc: time.UTC}
	switch location {
	case "", "UTC":
	case "Local":
		p.loc = time.Local
	default:
		loc, err := time.LoadLocation(location)
		if err != nil {
			return nil, fmt.Errorf("load time zone %q: %w", location, err)
		}
		p.loc = loc
	}
	p.utcOnly = p.loc == time.UTC
	switch strings.ToLower(layout) {
	case "", "rfc3339", "rfc3339nano", "iso8601":
		p.kind = timeRFC3339
	case "epoch":
		p.kind = timeEpoch
	case "epoch_s", "unix":
		p.kind = timeEpochS
	case "epoch_ms", "unix_ms":
		p.kind = timeEpochMS
	case "epoch_us", "unix_us":
		p.kind = timeEpochUS
	case "epoch_ns", "unix_ns":
		p.kind = timeEpochNS
	default:
		p.kind = timeLayout
		p.layout = layout
		if strings.Contains(layout, "%") {
			l, err := strptimeLayout(layout)
			if err != nil {
				return nil, err
			}
			p.layout = l
		}
		if !strings.Contains(p.layout, "2006") && !strings.Contains(p.layout, "06") {
			p.noYear = true
		}
		// Check the layout round-trips a known time, so a typo fails at load.
		ref := time.Date(2024, 3, 9, 14, 5, 7, 0, p.loc)
		if _, err := time.ParseInLocation(p.layout, ref.Format(p.layout), p.loc); err != nil {
			return nil, fmt.Errorf("check layout %q: %w", layout, err)
		}
	}
	return p, nil
}

// Parse returns s as Unix nanoseconds. It does not allocate for RFC 3339 and
// epoch layouts.
func (p *TimeParser) Parse(s string) (int64, error) {
	switch p.kind {
	case timeRFC3339:
		return p.rfc3339(s)
	case timeLayout:
		t, err := time.ParseInLocation(p.layout, s, p.loc)
		if err != nil {
			return 0, errTime
		}
		if p.noYear && t.Year() == 0 {
			t = p.withYear(t)
		}
		return t.UnixNano(), nil
	}
	whole, frac, fracDigits, ok := parseDecimal(s)
	if !ok {
		return 0, errTime
	}
	return p.epoch(whole, frac, fracDigits)
}

// Value reads a parsed field: a string by [TimeParser.Parse], a number as an
// epoch value (for the epoch layouts) .
func (p *TimeParser) Value(v event.Value) (int64, error) {
	switch v.Kind {
	case event.KindString:
		return p.Parse(v.Str)
	case event.KindInt:
		if p.kind >= timeEpoch && p.kind <= timeEpochNS {
			return p.epoch(v.AsInt(), 0, 0)
		}
	case event.KindDouble:
		if p.kind >= timeEpoch && p.kind <= timeEpochNS {
			f := v.AsDouble()
			if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e19 {
				return 0, errTime
			}
			whole := int64(f)
			frac := int64(math.Round((f - float64(whole)) * 1e9))
			return p.epoch(whole, frac, 9)
		}
	}
	return 0, errTime
}

func (p *TimeParser) withYear(t time.Time) time.Time {
	now := p.now().In(p.loc)
	t = t.AddDate(now.Year(), 0, 0)
	// A December line read in January belongs to last year.
	if t.Sub(now) > 7*24*time.Hour {
		t = t.AddDate(-1, 0, 0)
	}
	return t
}

// epoch scales whole.frac (frac having fracDigits digits) to nanoseconds.
func (p *TimeParser) epoch(whole, frac int64, fracDigits int) (int64, error) {
	kind := p.kind
	if kind == timeEpoch {
		a := whole
		if a < 0 {
			a = -a
		}
		switch {
		case a < 1e11: // seconds until the year 5138
			kind = timeEpochS
		case a < 1e14:
			kind = timeEpochMS
		case a < 1e17:
			kind = timeEpochUS
		default:
			kind = timeEpochNS
		}
	}
	var scale int64
	switch kind {
	case timeEpochS:
		scale = 1e9
	case timeEpochMS:
		scale = 1e6
	case timeEpochUS:
		scale = 1e3
	default:
		scale = 1
	}
	if whole > math.MaxInt64/scale || whole < math.MinInt64/scale {
		return 0, errTime
	}
	ns := whole * scale
	// frac is frac / 10^fracDigits units; convert to nanoseconds.
	for fracDigits > 9 {
		frac /= 10
		fracDigits--
	}
	for ; fracDigits < 9; fracDigits++ {
		frac *= 10
	}
	return ns + frac/(1e9/scale), nil
}

// parseDecimal reads "123", "-123", "123.456" into whole and fraction parts.
func parseDecimal(s string) (whole, frac int64, fracDigits int, ok bool) {
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "" {
		return 0, 0, 0, false
	}
	i := 0
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		if whole > (math.MaxInt64-9)/10 {
			return 0, 0, 0, false
		}
		whole = whole*10 + int64(s[i]-'0')
	}
	if i == 0 {
		return 0, 0, 0, false
	}
	if i < len(s) {
		if s[i] != '.' {
			return 0, 0, 0, false
		}
		for i++; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return 0, 0, 0, false
			}
			if fracDigits < 18 {
				frac = frac*10 + int64(s[i]-'0')
				fracDigits++
			}
		}
	}
	if neg {
		whole, frac = -whole, -frac
	}
	return whole, frac, fracDigits, true
}

// rfc3339 parses YYYY-MM-DD[T ]hh:mm:ss[.frac][Z|±hh:mm|±hhmm] without
// allocating.
func (p *TimeParser) rfc3339(s string) (int64, error) {
	if len(s) < 19 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' || s[16] != ':' {
		return 0, errTime
	}
	year, ok1 := digits(s[0:4])
	month, ok2 := digits(s[5:7])
	day, ok3 := digits(s[8:10])
	hour, ok4 := digits(s[11:13])
	minute, ok5 := digits(s[14:16])
	sec, ok6 := digits(s[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 60 {
		return 0, errTime
	}
	rest := s[19:]
	var nanos int64
	if len(rest) > 0 && (rest[0] == '.' || rest[0] == ',') {
		i := 1
		scale := int64(1e8)
		for ; i < len(rest) && rest[i] >= '0' && rest[i] <= '9'; i++ {
			nanos += int64(rest[i]-'0') * scale
			scale /= 10
		}
		if i == 1 {
			return 0, errTime
		}
		rest = rest[i:]
	}
	var offset int64
	switch {
	case rest == "":
		if !p.utcOnly {
			return time.Date(year, time.Month(month), day, hour, minute, sec, int(nanos), p.loc).UnixNano(), nil
		}
	case rest == "Z" || rest == "z":
	case rest[0] == '+' || rest[0] == '-':
		z := rest[1:]
		var hh, mm int
		var ok bool
		switch {
		case len(z) == 5 && z[2] == ':':
			hh, ok = digits(z[0:2])
			if ok {
				mm, ok = digits(z[3:5])
			}
		case len(z) == 4:
			hh, ok = digits(z[0:2])
			if ok {
				mm, ok = digits(z[2:4])
			}
		case len(z) == 2:
			hh, ok = digits(z)
		}
		if !ok || hh > 23 || mm > 59 {
			return 0, errTime
		}
		offset = int64(hh*3600 + mm*60)
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return 0, errTime
	}
	secs := daysFromCivil(year, month, day)*86400 + int64(hour*3600+minute*60+sec) - offset
	return secs*1e9 + nanos, nil
}

func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns the days since 1970-01-01 of a proleptic Gregorian date.
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y
	if era < 0 {
		era -= 399
	}
	era /= 400
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}

// strptimeLayout converts a strptime pattern to a Go layout.
func strptimeLayout(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 >= len(s) {
			return "", fmt.Errorf("convert strptime layout %q: trailing %%", s)
		}
		i++
		var rep string
		switch s[i] {
		case 'Y':
			rep = "2006"
		case 'y':
			rep = "06"
		case 'm':
			rep = "01"
		case 'd':
			rep = "02"
		case 'e':
			rep = "_2"
		case 'H':
			rep = "15"
		case 'I':
			rep = "03"
		case 'M':
			rep = "04"
		case 'S':
			rep = "05"
		case 'f', 'L', 'N':
			rep = "999999999"
		case 'p':
			rep = "PM"
		case 'b', 'h':
			rep = "Jan"
		case 'B':
			rep = "January"
		case 'a':
			rep = "Mon"
		case 'A':
			rep = "Monday"
		case 'j':
			rep = "002"
		case 'z':
			rep = "-0700"
		case 'Z':
			rep = "MST"
		case 'T':
			rep = "15:04:05"
		case 'F':
			rep = "2006-01-02"
		case 'D':
			rep = "01/02/06"
		case '%':
			rep = "%"
		default:
			return "", fmt.Errorf("convert strptime layout %q: unsupported directive %%%c", s, s[i])
		}
		b.WriteString(rep)
	}
	return b.String(), nil
}
