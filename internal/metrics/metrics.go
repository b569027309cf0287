// Package metrics is provisiond's Prometheus instrumentation: what the
// protocol servers did (they report through pxe.Observer), how long boots
// take (the boot tracker tells it) and how BMC calls end.
package metrics

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/provisiond/provisiond/internal/events"
)

// Metrics holds provisiond's collectors in its own registry.
type Metrics struct {
	reg *prometheus.Registry

	dhcp        *prometheus.CounterVec
	tftp        *prometheus.CounterVec
	tftpBytes   prometheus.Counter
	tftpSeconds prometheus.Histogram
	drops       *prometheus.CounterVec
	http        *prometheus.CounterVec
	httpBytes   *prometheus.CounterVec
	httpSeconds *prometheus.HistogramVec
	bootSeconds *prometheus.HistogramVec
	bootsDone   *prometheus.CounterVec
	bmcCalls    *prometheus.CounterVec
	bmcSeconds  *prometheus.HistogramVec
	events      *prometheus.CounterVec
	refused     *prometheus.CounterVec
	slurm       *prometheus.CounterVec
}

// New returns the collectors, registered with Go runtime and process
// metrics. Values read at scrape time are added with Func once their source
// exists.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.dhcp = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "provisiond_dhcp_requests_total",
		Help: "DHCP packets received, by message type and decision (offer, ack, ignored_non_pxe, ignored_not_ours, ignored_decision, malformed)."},
		[]string{"type", "decision"})
	m.tftp = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "provisiond_tftp_transfers_total",
		Help: "TFTP read requests, by result (ok, failed, size_query, refused, not_found, busy)."}, []string{"result"})
	m.tftpBytes = prometheus.NewCounter(prometheus.CounterOpts{Name: "provisiond_tftp_bytes_total", Help: "Bytes sent over TFTP."})
	m.tftpSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "provisiond_tftp_transfer_seconds",
		Help: "Duration of TFTP transfers that sent data.", Buckets: prometheus.ExponentialBuckets(0.01, 3, 9)})
	m.drops = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "provisiond_dropped_total",
		Help: "Requests dropped before any work because a bound was reached, by server and reason."}, []string{"server", "reason"})
	m.http = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "provisiond_http_boot_requests_total",
		Help: "Boot endpoint requests (first stage, script, overlay, asset, ipxe, callback), by kind and status code."},
		[]string{"kind", "status"})
	m.httpBytes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "provisiond_http_boot_bytes_total",
		Help: "Bytes sent by the boot endpoints, by kind."}, []string{"kind"})
	m.httpSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "provisiond_http_boot_seconds",
		Help: "Duration of boot endpoint requests, by kind.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}, []string{"kind"})
	m.bootSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "provisiond_boot_seconds",
		Help:    "Boot duration from a machine's first DHCP answer to the end of its boot by its profile's rule (script, assets, callback), by profile.",
		Buckets: []float64{5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200}}, []string{"profile"})
	m.bootsDone = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "provisiond_boots_done_total",
		Help: "Boots done by their profile's rule (script, assets, callback), by profile."}, []string{"profile", "on"})
	m.bmcCalls = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "provisiond_bmc_calls_total",
		Help: "BMC sessions (power_status, power, bootdev, inventory, locate), by operation and result (ok, error, timeout)."}, []string{"op", "result"})
	m.bmcSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "provisiond_bmc_call_seconds",
		Help: "Duration of BMC operations, by operation.", Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60}}, []string{"op"})
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "provisiond_events_total",
		Help: "Timeline events, by type."}, []string{"type"})
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "provisiond_boot_refused_total",
		Help: "Boot-plane requests refused a secret or a state change (script, overlay, callback, facts), by reason (source, no_boot, nonce, again, profile, unknown); reason again is the spoof alarm."},
		[]string{"what", "reason"})
	m.slurm = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "provisiond_slurm_power_total",
		Help: "Nodes slurmctld's power saving asked for, by action (resume, suspend, resume_failed) and result (ok, error, refused: not a Slurm machine)."},
		[]string{"action", "result"})
	m.reg.MustRegister(m.slurm, m.refused, m.dhcp, m.tftp, m.tftpBytes, m.tftpSeconds, m.drops, m.http, m.httpBytes, m.httpSeconds,
		m.bootSeconds, m.bootsDone, m.bmcCalls, m.bmcSeconds, m.events,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Func adds a value read at scrape time: a counter when name ends in
// _total, a gauge otherwise.
func (m *Metrics) Func(name, help string, fn func() float64) {
	if strings.HasSuffix(name, "_total") {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, fn))
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// DHCP implements pxe.Observer.
func (m *Metrics) DHCP(msgType, decision string) {
	m.dhcp.WithLabelValues(msgType, decision).Inc()
}

// TFTP implements pxe.Observer.
func (m *Metrics) TFTP(result string, bytes int64, d time.Duration) {
	m.tftp.WithLabelValues(result).Inc()
	if bytes > 0 {
		m.tftpBytes.Add(float64(bytes))
		m.tftpSeconds.Observe(d.Seconds())
	}
}

// HTTP implements pxe.Observer.
func (m *Metrics) HTTP(kind string, status int, bytes int64, d time.Duration) {
	m.http.WithLabelValues(kind, strconv.Itoa(status)).Inc()
	if bytes > 0 {
		m.httpBytes.WithLabelValues(kind).Add(float64(bytes))
	}
	m.httpSeconds.WithLabelValues(kind).Observe(d.Seconds())
}

// Dropped implements pxe.Observer.
func (m *Metrics) Dropped(server, reason string) {
	m.drops.WithLabelValues(server, reason).Inc()
}

// Refused counts a boot-plane request the boot guard refused.
func (m *Metrics) Refused(what, reason string) {
	m.refused.WithLabelValues(what, reason).Inc()
}

// BMC implements daemon.BMCObserver.
func (m *Metrics) BMC(op, result string, d time.Duration) {
	m.bmcCalls.WithLabelValues(op, result).Inc()
	m.bmcSeconds.WithLabelValues(op).Observe(d.Seconds())
}

// SlurmAction implements slurm.Observer.
func (m *Metrics) SlurmAction(action, result string) {
	m.slurm.WithLabelValues(action, result).Inc()
}

// Emit implements events.Sink: every timeline event is counted by type.
func (m *Metrics) Emit(ev events.Event) {
	m.events.WithLabelValues(ev.Type).Inc()
}

// BootDone implements booter.BootObserver: a boot of profile finished by
// rule on, took after its first DHCP answer.
func (m *Metrics) BootDone(profile, on string, took time.Duration) {
	m.bootsDone.WithLabelValues(profile, on).Inc()
	m.bootSeconds.WithLabelValues(profile).Observe(took.Seconds())
}
