//! The per-request metrics, counted in cells each thread owns: requests by
//! route and status, request and upstream durations, token checks by result.
//!
//! A worker writes only its own cells (plain loads and stores: one writer
//! per cell), so no cache line is written by two workers on the request
//! path, where the Prometheus crate's counters and histograms are atomics
//! every worker increments. A scrape sums every thread's cells; a thread
//! that ends first adds its cells into `retired` (a counter never goes
//! back). The exposition is the one the Prometheus types gave: the same
//! names, help, labels and buckets, the duration histograms of every route
//! and every token result shown from the start, a route and status pair
//! once it was counted.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};

use super::{Route, TokenResult};

/// Status codes are three digits (RFC 9110 15); one slot each, so a label
/// is always the status answered.
const STATUS_SLOTS: usize = 1000;
const ROUTES: usize = Route::ALL.len();
const RESULTS: usize = TokenResult::ALL.len();

/// One thread's counts. Only the thread that owns it writes it.
struct Cells {
    /// `route * STATUS_SLOTS + status`.
    requests: Box<[AtomicU64]>,
    durations: Box<[Histogram]>,
    upstream: Histogram,
    tokens: [AtomicU64; RESULTS],
}

/// Counts per bucket (not cumulative; the last one is `+Inf`) and the sum's bits.
struct Histogram {
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

fn zeros(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

/// `+1` by the cell's one writer: no read-modify-write instruction needed.
fn bump(cell: &AtomicU64, by: u64) {
    cell.store(cell.load(Relaxed).wrapping_add(by), Relaxed);
}

impl Histogram {
    fn new(buckets: usize) -> Histogram {
        Histogram {
            counts: zeros(buckets + 1),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    fn observe(&self, bounds: &[f64], v: f64) {
        let i = bounds.iter().position(|&b| v <= b).unwrap_or(bounds.len());
        bump(&self.counts[i], 1);
        let sum = f64::from_bits(self.sum.load(Relaxed)) + v;
        self.sum.store(sum.to_bits(), Relaxed);
    }

    /// Adds `other` into `self` (only under the shared lock, see `retire`).
    fn absorb(&self, other: &Histogram) {
        for (a, b) in self.counts.iter().zip(other.counts.iter()) {
            bump(a, b.load(Relaxed));
        }
        let sum = f64::from_bits(self.sum.load(Relaxed)) + f64::from_bits(other.sum.load(Relaxed));
        self.sum.store(sum.to_bits(), Relaxed);
    }
}

impl Cells {
    fn new(buckets: usize) -> Cells {
        Cells {
            requests: zeros(ROUTES * STATUS_SLOTS),
            durations: (0..ROUTES).map(|_| Histogram::new(buckets)).collect(),
            upstream: Histogram::new(buckets),
            tokens: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn absorb(&self, other: &Cells) {
        for (a, b) in self.requests.iter().zip(other.requests.iter()) {
            bump(a, b.load(Relaxed));
        }
        for (a, b) in self.durations.iter().zip(other.durations.iter()) {
            a.absorb(b);
        }
        self.upstream.absorb(&other.upstream);
        for (a, b) in self.tokens.iter().zip(other.tokens.iter()) {
            bump(a, b.load(Relaxed));
        }
    }
}

/// What the threads' cells are summed into at a scrape.
struct Shared {
    /// Told apart in the threads' lists (a process may hold several: tests).
    id: usize,
    bounds: Vec<f64>,
    /// Every live thread's cells, and the sum of the cells of those that ended.
    threads: Mutex<Vec<Arc<Cells>>>,
    retired: Cells,
}

impl Shared {
    fn threads(&self) -> MutexGuard<'_, Vec<Arc<Cells>>> {
        // A panic elsewhere while holding the lock left a valid Vec.
        self.threads.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// This thread's cells, one entry per [`RequestMetrics`] it counted for,
/// found by the registry's id (an upgrade of the `Weak` would write the
/// shared reference count on every request).
struct Local(Vec<(usize, Weak<Shared>, Arc<Cells>)>);

impl Drop for Local {
    /// A thread that ends hands its counts to `retired`.
    fn drop(&mut self) {
        for (_, shared, cells) in self.0.drain(..) {
            if let Some(shared) = shared.upgrade() {
                let mut threads = shared.threads();
                threads.retain(|c| !Arc::ptr_eq(c, &cells));
                shared.retired.absorb(&cells);
            }
        }
    }
}

thread_local! {
    static LOCAL: RefCell<Local> = const { RefCell::new(Local(Vec::new())) };
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// The per-request metrics (see the module doc), registered in the
/// registry as one collector of four metric families.
#[derive(Clone)]
pub struct RequestMetrics {
    shared: Arc<Shared>,
    descs: Arc<[Desc; 4]>,
}

struct Family {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
}

const FAMILIES: [Family; 4] = [
    Family {
        name: super::HTTP_REQUESTS,
        help: "Requests answered, by route and status.",
        labels: &["route", "status"],
    },
    Family {
        name: super::HTTP_DURATION,
        help: "Time from request head to the end of the response, by route.",
        labels: &["route"],
    },
    Family {
        name: super::UPSTREAM_DURATION,
        help: "Time from sending to the upstream to the end of its response.",
        labels: &[],
    },
    Family {
        name: super::TOKEN_VALIDATIONS,
        help: "Access-token checks, by result.",
        labels: &["result"],
    },
];

impl RequestMetrics {
    /// Histograms with these upper bounds (`+Inf` comes on top).
    pub fn new(bounds: Vec<f64>) -> RequestMetrics {
        let desc = |f: &Family| {
            Desc::new(
                f.name.to_owned(),
                f.help.to_owned(),
                f.labels.iter().map(|l| (*l).to_owned()).collect(),
                HashMap::new(),
            )
            .expect("valid metric names")
        };
        RequestMetrics {
            descs: Arc::new(FAMILIES.each_ref().map(desc)),
            shared: Arc::new(Shared {
                id: NEXT_ID.fetch_add(1, Relaxed),
                retired: Cells::new(bounds.len()),
                bounds,
                threads: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Runs `f` on this thread's cells, made and listed on first use. A
    /// thread whose thread-locals are already gone (something dropped
    /// during its exit) counts into `retired`, under the lock.
    fn with(&self, f: impl FnOnce(&Cells, &[f64])) {
        let mut f = Some(f);
        let _ = LOCAL.try_with(|local| {
            let mut local = local.borrow_mut();
            let id = self.shared.id;
            let i = match local.0.iter().position(|(i, _, _)| *i == id) {
                Some(i) => i,
                None => {
                    // Forget the cells of registries gone (tests make many).
                    local.0.retain(|(_, s, _)| s.strong_count() > 0);
                    let cells = Arc::new(Cells::new(self.shared.bounds.len()));
                    self.shared.threads().push(cells.clone());
                    local.0.push((id, Arc::downgrade(&self.shared), cells));
                    local.0.len() - 1
                }
            };
            if let Some(f) = f.take() {
                f(&local.0[i].2, &self.shared.bounds);
            }
        });
        if let Some(f) = f {
            let _lock = self.shared.threads();
            f(&self.shared.retired, &self.shared.bounds);
        }
    }

    pub fn request(&self, route: Route, status: u16, seconds: f64) {
        let slot = usize::from(status).min(STATUS_SLOTS - 1);
        self.with(|c, bounds| {
            bump(&c.requests[route as usize * STATUS_SLOTS + slot], 1);
            c.durations[route as usize].observe(bounds, seconds);
        });
    }

    pub fn upstream(&self, seconds: f64) {
        self.with(|c, bounds| c.upstream.observe(bounds, seconds));
    }

    pub fn token(&self, result: TokenResult) {
        self.with(|c, _| bump(&c.tokens[result as usize], 1));
    }

    /// Every thread's cells and the retired ones, summed.
    fn sum(&self) -> Cells {
        let total = Cells::new(self.shared.bounds.len());
        let threads = self.shared.threads();
        total.absorb(&self.shared.retired);
        for cells in threads.iter() {
            total.absorb(cells);
        }
        total
    }

    fn histogram(&self, h: &Histogram) -> proto::Histogram {
        let mut out = proto::Histogram::default();
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.shared.bounds.len());
        for (count, bound) in h.counts.iter().zip(&self.shared.bounds) {
            cumulative += count.load(Relaxed);
            let mut b = proto::Bucket::default();
            b.set_cumulative_count(cumulative);
            b.set_upper_bound(*bound);
            buckets.push(b);
        }
        cumulative += h.counts.last().map_or(0, |c| c.load(Relaxed));
        out.set_bucket(buckets);
        out.set_sample_count(cumulative);
        out.set_sample_sum(f64::from_bits(h.sum.load(Relaxed)));
        out
    }
}

fn labelled(pairs: &[(&str, &str)]) -> proto::Metric {
    let label = pairs
        .iter()
        .map(|(name, value)| {
            let mut l = proto::LabelPair::default();
            l.set_name((*name).to_owned());
            l.set_value((*value).to_owned());
            l
        })
        .collect();
    proto::Metric::from_label(label)
}

fn family(f: &Family, kind: MetricType, metrics: Vec<proto::Metric>) -> MetricFamily {
    let mut m = MetricFamily::default();
    m.set_name(f.name.to_owned());
    m.set_help(f.help.to_owned());
    m.set_field_type(kind);
    m.set_metric(metrics);
    m
}

impl Collector for RequestMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let total = self.sum();
        let mut requests = Vec::new();
        for route in Route::ALL {
            let row = &total.requests[route as usize * STATUS_SLOTS..][..STATUS_SLOTS];
            for (status, n) in row.iter().enumerate() {
                let n = n.load(Relaxed);
                if n > 0 {
                    let mut m =
                        labelled(&[("route", route.as_str()), ("status", &status.to_string())]);
                    let mut c = proto::Counter::default();
                    c.set_value(n as f64);
                    m.set_counter(c);
                    requests.push(m);
                }
            }
        }
        let durations = Route::ALL
            .iter()
            .map(|route| {
                let mut m = labelled(&[("route", route.as_str())]);
                m.set_histogram(self.histogram(&total.durations[*route as usize]));
                m
            })
            .collect();
        let mut upstream = labelled(&[]);
        upstream.set_histogram(self.histogram(&total.upstream));
        let tokens = TokenResult::ALL
            .iter()
            .map(|r| {
                let mut m = labelled(&[("result", r.as_str())]);
                let mut c = proto::Counter::default();
                c.set_value(total.tokens[*r as usize].load(Relaxed) as f64);
                m.set_counter(c);
                m
            })
            .collect();
        vec![
            family(&FAMILIES[0], MetricType::COUNTER, requests),
            family(&FAMILIES[1], MetricType::HISTOGRAM, durations),
            family(&FAMILIES[2], MetricType::HISTOGRAM, vec![upstream]),
            family(&FAMILIES[3], MetricType::COUNTER, tokens),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, Registry, TextEncoder};

    fn render(m: &RequestMetrics) -> String {
        let registry = Registry::new();
        registry.register(Box::new(m.clone())).unwrap();
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.parse().unwrap())
    }

    // Proves counts of several threads are summed at a scrape, and that the
    // counts of a thread that ended stay (a counter never goes back).
    #[test]
    fn every_threads_counts_are_summed_and_kept_after_it_ends() {
        let m = RequestMetrics::new(vec![0.1, 1.0]);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..250 {
                        m.request(Route::Proxy, 200, 0.05);
                        m.upstream(0.5);
                        m.token(TokenResult::Ok);
                    }
                })
            })
            .collect();
        // A join returns once the thread is gone, its thread-locals dropped.
        for t in threads {
            t.join().unwrap();
        }
        assert!(m.shared.threads().is_empty());
        m.request(Route::Proxy, 200, 2.0);
        let text = render(&m);
        let proxy_200 = r#"sessiongate_http_requests_total{route="proxy",status="200"}"#;
        assert_eq!(value(&text, proxy_200), Some(1001.0));
        assert_eq!(
            value(&text, r#"sessiongate_token_validations_total{result="ok"}"#),
            Some(1000.0)
        );
        let duration = "sessiongate_http_request_duration_seconds";
        assert_eq!(
            value(
                &text,
                &format!(r#"{duration}_bucket{{route="proxy",le="0.1"}}"#)
            ),
            Some(1000.0)
        );
        assert_eq!(
            value(
                &text,
                &format!(r#"{duration}_bucket{{route="proxy",le="1"}}"#)
            ),
            Some(1000.0)
        );
        assert_eq!(
            value(
                &text,
                &format!(r#"{duration}_bucket{{route="proxy",le="+Inf"}}"#)
            ),
            Some(1001.0)
        );
        assert_eq!(
            value(&text, &format!(r#"{duration}_count{{route="proxy"}}"#)),
            Some(1001.0)
        );
        let sum = value(&text, &format!(r#"{duration}_sum{{route="proxy"}}"#)).unwrap();
        assert!((sum - 52.0).abs() < 1e-6, "{sum}");
        let upstream = "sessiongate_upstream_request_duration_seconds";
        assert_eq!(value(&text, &format!("{upstream}_count")), Some(1000.0));
        assert_eq!(
            value(&text, &format!(r#"{upstream}_bucket{{le="1"}}"#)),
            Some(1000.0)
        );
        // The four threads ended: only this one is still listed.
        assert_eq!(m.shared.threads().len(), 1);
    }

    // Proves the exposition the Prometheus types gave: every route's duration
    // histogram and every token result from the start, a route and status
    // pair once counted, under the status actually answered.
    #[test]
    fn the_exposition_keeps_its_shape() {
        let m = RequestMetrics::new(vec![0.5]);
        let text = render(&m);
        assert!(!text.contains("sessiongate_http_requests_total{"), "{text}");
        for route in Route::ALL {
            let series = format!(
                r#"sessiongate_http_request_duration_seconds_count{{route="{}"}}"#,
                route.as_str()
            );
            assert_eq!(value(&text, &series), Some(0.0), "{series}");
        }
        for result in TokenResult::ALL {
            let series = format!(
                r#"sessiongate_token_validations_total{{result="{}"}}"#,
                result.as_str()
            );
            assert_eq!(value(&text, &series), Some(0.0), "{series}");
        }
        assert!(text.contains("# TYPE sessiongate_http_request_duration_seconds histogram"));
        assert!(text.contains(
            "# HELP sessiongate_upstream_request_duration_seconds Time from sending to the upstream to the end of its response."
        ));
        m.request(Route::Admin, 599, 0.1);
        m.request(Route::Admin, 999, 0.1);
        m.request(Route::Login, 101, 0.1);
        let text = render(&m);
        for series in [
            r#"sessiongate_http_requests_total{route="admin",status="599"}"#,
            r#"sessiongate_http_requests_total{route="admin",status="999"}"#,
            r#"sessiongate_http_requests_total{route="login",status="101"}"#,
        ] {
            assert_eq!(value(&text, series), Some(1.0), "{series}");
        }
        assert_eq!(text.matches("sessiongate_http_requests_total{").count(), 3);
        assert!(text.contains("# TYPE sessiongate_http_requests_total counter"));
    }

    // Proves a count made while a thread exits, after its cells are gone
    // (a thread-local dropped later counts a request), is kept and does not
    // panic.
    #[test]
    fn a_count_during_thread_exit_is_kept() {
        struct Late(RequestMetrics);
        impl Drop for Late {
            fn drop(&mut self) {
                self.0.token(TokenResult::Revoked);
            }
        }
        thread_local! {
            static LATE: RefCell<Option<Late>> = const { RefCell::new(None) };
        }
        let m = RequestMetrics::new(vec![1.0]);
        let m2 = m.clone();
        std::thread::spawn(move || {
            // Registered before LOCAL, so dropped after it.
            LATE.with(|l| *l.borrow_mut() = Some(Late(m2.clone())));
            m2.token(TokenResult::Revoked);
        })
        .join()
        .expect("no panic while the thread exits");
        let revoked = r#"sessiongate_token_validations_total{result="revoked"}"#;
        assert_eq!(value(&render(&m), revoked), Some(2.0));
    }

    // Proves two registries counted on one thread keep apart, and one dropped
    // is forgotten by the thread.
    #[test]
    fn registries_on_one_thread_keep_apart() {
        let a = RequestMetrics::new(vec![1.0]);
        let b = RequestMetrics::new(vec![1.0]);
        a.token(TokenResult::Invalid);
        b.token(TokenResult::Invalid);
        b.token(TokenResult::Invalid);
        let invalid = r#"sessiongate_token_validations_total{result="invalid"}"#;
        assert_eq!(value(&render(&a), invalid), Some(1.0));
        assert_eq!(value(&render(&b), invalid), Some(2.0));
        drop(a);
        let c = RequestMetrics::new(vec![1.0]);
        c.token(TokenResult::Ok);
        LOCAL.with(|l| {
            let ids: Vec<usize> = l.borrow().0.iter().map(|(id, _, _)| *id).collect();
            assert_eq!(ids, vec![b.shared.id, c.shared.id]);
        });
    }
}
