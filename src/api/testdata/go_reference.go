// Reference values from Go, the language of the API server's CEL: for a corpus of duration
// and time strings, what Go's regexp (RE2) makes of keyward's admission patterns, what
// time.ParseDuration and time.Parse(time.RFC3339) return, and whether CEL's timestamp()
// range holds the time. The Rust unit tests in src/api/common.rs read the output and check
// that keyward's patterns, parser and chrono agree with it.
//
//	go run src/api/testdata/go_reference.go > src/api/testdata/go_reference.tsv
//
// The patterns below must equal DURATION_PATTERN, TIMESTAMP_PATTERN and
// LAST_DAY_BEHIND_UTC_PATTERN; the output's first lines carry them, and the tests compare.
package main

import (
	"fmt"
	"math/rand"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const durationPattern = "^([0-9]{1,6}([.][0-9]+)?h)?([0-9]{1,7}([.][0-9]+)?m)?([0-9]{1,9}([.][0-9]+)?s)?([0-9]{1,12}([.][0-9]+)?ms)?([0-9]{1,15}([.][0-9]+)?(us|µs))?([0-9]{1,18}([.][0-9]+)?ns)?$"

const timestampPattern = "^((19[7-9][0-9]|[2-9][0-9]{3})-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))|(19(7[26]|8[048]|9[26])|[2-9][0-9](0[48]|[2468][048]|[13579][26])|([2468][048]|[3579][26])00)-02-29)T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]([.][0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"

const lastDayBehindUTCPattern = "^9999-12-31T[^-]*-"

// cel-go's bounds on a timestamp (types/timestamp.go).
const (
	minUnixTime int64 = -62135596800
	maxUnixTime int64 = 253402300799
)

func digits(r *rand.Rand, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteByte(byte('0' + r.Intn(10)))
	}
	return b.String()
}

func pick(r *rand.Rand, options ...string) string { return options[r.Intn(len(options))] }

func durations(r *rand.Rand) []string {
	out := []string{
		"", "0", "0s", "-0s", "+5m", "-5m", "1h", "720h", "90s", "15m", "1h30m", "1.5h", "300ms",
		"1µs", "1μs", "1us", "1ns", ".5h", "5.h", ".h", "1h1h", "1h30", "30 days", "1d", "h",
		"876000h", "876000h1ns", "876000h0.5ns", "875999h59m59s999ms999us999ns", "876001h",
		"2562047h", "2562048h", "9999999h", "99999999999h", "99999999999999999999h",
		"999999h9999999m999999999s999999999999ms999999999999999us999999999999999999ns",
		"0.0000000000000000001h", "0.3s", "0.1h", "0.7ns", "1.0000000001s",
		"0.0000000000025h", "0.123456789123456789s", "0.29ms", "999ms", "0.5s", "1s",
		"10m", "9m59.999999999s", "1h0m0s", "1.5µs", "3.000000000000000000000000001s",
		"1e3s", "1h-5m", "1.2.3s", "1..2s", "1.s", "1h 30m", " 1h", "1H", "1S", "inf", "NaN",
	}
	units := []string{"ns", "us", "µs", "μs", "ms", "s", "m", "h", "", "x", "hh", "mm", "d", "sm"}
	for i := 0; i < 500; i++ {
		var b strings.Builder
		if r.Intn(20) == 0 {
			b.WriteString(pick(r, "-", "+"))
		}
		for c := r.Intn(5); c >= 0; c-- {
			b.WriteString(digits(r, r.Intn(22)))
			if r.Intn(3) == 0 {
				b.WriteByte('.')
				b.WriteString(digits(r, r.Intn(25)))
			}
			b.WriteString(units[r.Intn(len(units))])
		}
		out = append(out, b.String())
	}
	// Canonical and near-canonical forms: the admitted syntax, with values around the bounds.
	ordered := []string{"h", "m", "s", "ms", "us", "ns"}
	caps := []int{6, 7, 9, 12, 15, 18}
	for i := 0; i < 500; i++ {
		var b strings.Builder
		for u, unit := range ordered {
			if r.Intn(2) == 0 {
				continue
			}
			b.WriteString(digits(r, 1+r.Intn(caps[u]+1)))
			if r.Intn(3) == 0 {
				b.WriteByte('.')
				b.WriteString(digits(r, 1+r.Intn(22)))
			}
			if unit == "us" && r.Intn(2) == 0 {
				unit = "µs"
			}
			b.WriteString(unit)
		}
		out = append(out, b.String())
	}
	// Go's own spelling of random durations up to 2562047h.
	for i := 0; i < 150; i++ {
		d := time.Duration(r.Int63n(int64(1<<62)) >> uint(r.Intn(62)))
		out = append(out, d.String())
	}
	return out
}

func times(r *rand.Rand) []string {
	out := []string{
		"1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1969-12-31T23:59:59Z",
		"10000-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:00:00-05:00",
		"9999-12-31T23:00:00+05:00", "9999-12-31T00:00:00-00:00", "2027-13-01T00:00:00Z",
		"2027-02-30T00:00:00Z", "2028-02-29T00:00:00Z", "2027-02-29T00:00:00Z",
		"2000-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "2400-02-29T00:00:00Z",
		"2027-01-31T00:00:00", "2027-01-31t00:00:00z", "2027-01-31 00:00:00Z",
		"2027-01-31T24:00:00Z", "2027-01-31T23:60:00Z", "2027-01-31T23:59:60Z",
		"2027-01-31T00:00:00.5Z", "2027-01-31T00:00:00.123456789Z", "2027-01-31T00:00:00.1234567891Z",
		"2027-01-31T00:00:00+24:00", "2027-01-31T00:00:00+23:59", "1970-01-01T00:00:00+01:00",
		"1970-01-01T00:30:00-01:00", "9999-12-31T23:59:59.999999999Z", "next tuesday", "",
	}
	for i := 0; i < 700; i++ {
		year := r.Intn(10100)
		if r.Intn(2) == 0 {
			year = 1965 + r.Intn(80)
		}
		if r.Intn(6) == 0 {
			year = 9995 + r.Intn(6)
		}
		month, day := 1+r.Intn(12), 1+r.Intn(31)
		if r.Intn(10) == 0 {
			month = r.Intn(14)
		}
		if r.Intn(5) == 0 {
			month, day = 2, 27+r.Intn(4)
		}
		if r.Intn(10) == 0 {
			day = r.Intn(33)
		}
		hour, minute, second := r.Intn(24), r.Intn(60), r.Intn(60)
		if r.Intn(10) == 0 {
			hour, minute, second = r.Intn(26), r.Intn(62), r.Intn(62)
		}
		if year >= 9999 && r.Intn(2) == 0 {
			month, day = 12, 31
		}
		yearText := fmt.Sprintf("%04d", year)
		s := fmt.Sprintf("%s-%02d-%02dT%02d:%02d:%02d", yearText, month, day, hour, minute, second)
		if r.Intn(3) == 0 {
			s += "." + digits(r, 1+r.Intn(11))
		}
		switch r.Intn(4) {
		case 0, 1:
			s += "Z"
		default:
			oh, om := r.Intn(24), r.Intn(60)
			if r.Intn(10) == 0 {
				oh, om = r.Intn(26), r.Intn(62)
			}
			s += fmt.Sprintf("%s%02d:%02d", pick(r, "+", "-"), oh, om)
		}
		out = append(out, s)
	}
	return out
}

func main() {
	r := rand.New(rand.NewSource(1))
	duration := regexp.MustCompile(durationPattern)
	timestamp := regexp.MustCompile(timestampPattern)
	lastDay := regexp.MustCompile(lastDayBehindUTCPattern)
	fmt.Printf("pattern\tduration\t%s\n", durationPattern)
	fmt.Printf("pattern\ttimestamp\t%s\n", timestampPattern)
	fmt.Printf("pattern\tlast-day\t%s\n", lastDayBehindUTCPattern)
	// duration <tab> text (quoted) <tab> RE2 match <tab> nanoseconds or "error"
	for _, s := range durations(r) {
		value := "error"
		if d, err := time.ParseDuration(s); err == nil {
			value = strconv.FormatInt(int64(d), 10)
		}
		fmt.Printf("duration\t%s\t%t\t%s\n", strconv.Quote(s), duration.MatchString(s), value)
	}
	// time <tab> text <tab> RE2 match <tab> last-day match <tab> unix seconds.nanos, "error" or "range"
	for _, s := range times(r) {
		value := "error"
		if t, err := time.Parse(time.RFC3339, s); err == nil {
			if t.Unix() < minUnixTime || t.Unix() > maxUnixTime {
				value = "range"
			} else {
				value = fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())
			}
		}
		fmt.Printf("time\t%s\t%t\t%t\t%s\n", strconv.Quote(s), timestamp.MatchString(s), lastDay.MatchString(s), value)
	}
}
