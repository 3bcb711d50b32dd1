package scenarios

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"
)

// Scenario o: an HPA scales a Deployment on a rate computed from a counter pushed through the Pushgateway endpoint
// (docs/wire-contract.md §4.5, §4.6), as an Object metric.

// counterPusher pushes the counter `requests_total{pod="web-1"}` to the group /metrics/job/o/namespace/NS every
// second with client_golang's push package, growing at a rate that can be changed:
// the value is the integral of the rate over wall-clock time, so the adapter's rate is that rate whatever the
// pushes' jitter.
type counterPusher struct {
	mu     sync.Mutex
	rate   float64 // per second
	value  float64
	at     time.Time
	errors []error
}

func (p *counterPusher) set(rate float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.advance()
	p.rate = rate
}

// reset makes the counter restart from 0, as a restarted process's counter does.
func (p *counterPusher) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.advance()
	p.value = 0
}

func (p *counterPusher) advance() {
	now := time.Now()
	p.value += p.rate * now.Sub(p.at).Seconds()
	p.at = now
}

// current is the counter's value now.
func (p *counterPusher) current() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.advance()
	return p.value
}

// push sends the counter with Go's official Pushgateway client (client_golang's push package, its default delimited
// protobuf format) to the adapter's push endpoint, with the writer's token: the way an existing pusher is pointed at
// the adapter (docs/wire-contract.md §4.5). A CounterFunc reports the value as a counter, resets included.
func (p *counterPusher) push(ns string) error {
	client, err := adapterClient("")
	if err != nil {
		return err
	}
	counter := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name:        "requests_total",
		Help:        "Requests served by web-1.",
		ConstLabels: prometheus.Labels{"pod": "web-1"},
	}, p.current)
	return push.New(adapterURL, "o").
		Grouping("namespace", ns).
		Collector(counter).
		Client(client).
		Header(http.Header{"Authorization": []string{"Bearer " + writerToken}}).
		Push()
}

func (p *counterPusher) run(c context.Context, ns string) {
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	for {
		if err := p.push(ns); err != nil {
			p.mu.Lock()
			p.errors = append(p.errors, err)
			p.mu.Unlock()
		}
		select {
		case <-c.Done():
			return
		case <-ticker.C:
		}
	}
}

func (p *counterPusher) failures() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.errors) > 0 {
		return fmt.Errorf("%d pushes failed, the first: %v", len(p.errors), p.errors[0])
	}
	return nil
}

// rateIs: the adapter serves requests_per_second of pod web-1 within 10 % of WANT, with a window.
func rateIs(c context.Context, ns string, want float64) error {
	var l struct {
		Items []struct {
			Metric        struct{ Name string } `json:"metric"`
			WindowSeconds *int64                `json:"windowSeconds"`
			Value         string                `json:"value"`
		} `json:"items"`
	}
	path := c2 + "/namespaces/" + ns + "/pods/web-1/requests_per_second"
	if err := rawJSON(c, path, &l); err != nil {
		return err
	}
	if len(l.Items) != 1 || l.Items[0].WindowSeconds == nil || l.Items[0].Metric.Name != "requests_per_second" {
		return fmt.Errorf("GET %s: %+v, want one rate with its window", path, l.Items)
	}
	got, err := parseQuantity(l.Items[0].Value)
	if err != nil {
		return err
	}
	if got < want*0.9 || got > want*1.1 {
		return fmt.Errorf("GET %s: rate %s (window %ds), want about %g", path, l.Items[0].Value, *l.Items[0].WindowSeconds, want)
	}
	return nil
}

// parseQuantity reads the quantities a rate is written as: "55", "54900m".
func parseQuantity(q string) (float64, error) {
	if m, ok := strings.CutSuffix(q, "m"); ok {
		v, err := strconv.ParseFloat(m, 64)
		return v / 1000, err
	}
	return strconv.ParseFloat(q, 64)
}

// TestO_HPAOnPushedCounterRate: the counter grows at 55/s, then restarts from 0 (a reset) at the same pace, then
// grows at 4/s: replicas = ceil(rate / 10) go 1 -> 6, stay 6 across the reset, and come back to 1 once the slow
// pace outweighs the fast one in the window (--rate-window, 2m).
func TestO_HPAOnPushedCounterRate(t *testing.T) {
	ns := newNamespace(t, "e2e-o")
	c := ctx(t)
	checkErr(t, "apply Deployment + HPA rate, Pod web-1", func() error { return applyManifest(t, ns, "hpa-object-rate.yaml") })
	checkEventually(t, scaleTimeout, "deployment rate has 1 pod", func() error { return podsAre(c, ns, "rate", 1, false) })
	p := &counterPusher{at: time.Now(), value: 1000}
	p.set(55)
	pushing, stop := context.WithCancel(c)
	done := make(chan struct{})
	started := time.Now()
	go func() { p.run(pushing, ns); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	checkEventually(t, scaleTimeout, "the adapter serves requests_per_second of pod web-1: about 55 with its windowSeconds", func() error {
		return rateIs(c, ns, 55)
	})
	checkEventually(t, scaleTimeout, "55/s / 10 -> spec.replicas 6", func() error { return replicasIs(c, ns, "rate", 6) })
	checkEventually(t, statusTimeout, "ScalingActive=True/ValidMetricFound", func() error { return hpaValid(c, ns, "rate") })
	// A reset loses what the counter grew since its last push (up to a second's worth), as Prometheus does: over at
	// least 30 s of samples that is under 4 % of the rate, within the HPA's 10 % tolerance. Right after the first
	// pushes it would be a real dip.
	time.Sleep(time.Until(started.Add(30 * time.Second)))
	p.reset()
	checkErr(t, "the counter restarts from 0: the reset is no dip, stays at 6 for 5s", func() error {
		return staysAt(c, ns, "rate", 6, 5*time.Second)
	})
	checkErr(t, "after the reset the rate is still about 55", func() error { return rateIs(c, ns, 55) })
	p.set(4)
	// The 2m window holds both paces at first: the rate falls below the target's 10 once the slow one outweighs the
	// fast one, at the latest when the window holds only the slow pace.
	checkEventually(t, 2*time.Minute+scaleTimeout, "4/s / 10 -> spec.replicas 1 once the window holds the slow pace", func() error {
		return replicasIs(c, ns, "rate", 1)
	})
	// The window holds at most --rate-max-samples (64) samples, a push a second: the rate is the slow pace's alone
	// within 64 s of the change.
	checkEventually(t, 64*time.Second+scaleTimeout, "the rate reads about 4", func() error { return rateIs(c, ns, 4) })
	checkErr(t, "every push was answered 200", p.failures)
}
