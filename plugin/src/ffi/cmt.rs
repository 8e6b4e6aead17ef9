//! Fluent Bit's cmetrics, reached at run time: the output instance's context from
//! `flb_api->output_get_cmt_instance` and four `cmt_*` functions looked up with `dlsym` in
//! the host executable (release builds export them; nothing is linked at build time).
//!
//! Signatures, identical in every tag from v2.0.0 to v5.1.1 of fluent/fluent-bit
//! (`lib/cmetrics/include/cmetrics/cmt_counter.h`, `cmt_gauge.h`):
//!
//! ```c
//! struct cmt_counter *cmt_counter_create(struct cmt *cmt, char *ns, char *subsystem,
//!                                        char *name, char *help,
//!                                        int label_count, char **label_keys);
//! int cmt_counter_set(struct cmt_counter *counter, uint64_t timestamp, double val,
//!                     int labels_count, char **label_vals);
//! struct cmt_gauge *cmt_gauge_create(struct cmt *cmt, char *ns, char *subsystem,
//!                                    char *name, char *help,
//!                                    int label_count, char **label_keys);
//! int cmt_gauge_set(struct cmt_gauge *gauge, uint64_t timestamp, double val,
//!                   int labels_count, char **label_vals);
//! ```
//!
//! cmetrics copies every string it is given (names, help, label keys and values), so they
//! only need to live for the call. Metrics belong to the instance's context, which Fluent Bit
//! destroys after ExitCtx: the plugin never destroys them itself.

use std::ffi::{CString, c_char, c_double, c_int, c_void};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use super::host_function;
use crate::metrics::{Kind, MetricId, MetricsHost, NAMESPACE, SUBSYSTEM};

type Create = unsafe extern "C" fn(
    *mut c_void,
    *mut c_char,
    *mut c_char,
    *mut c_char,
    *mut c_char,
    c_int,
    *mut *mut c_char,
) -> *mut c_void;
type Set = unsafe extern "C" fn(*mut c_void, u64, c_double, c_int, *mut *mut c_char) -> c_int;

/// The host's cmetrics functions, when it exports all of them.
struct Functions {
    counter_create: Create,
    counter_set: Set,
    gauge_create: Create,
    gauge_set: Set,
}

fn functions() -> Option<&'static Functions> {
    static FUNCTIONS: OnceLock<Option<Functions>> = OnceLock::new();
    FUNCTIONS
        .get_or_init(|| {
            // SAFETY: the types are the signatures pinned in the module documentation.
            unsafe {
                Some(Functions {
                    counter_create: host_function::<Create>(c"cmt_counter_create")?,
                    counter_set: host_function::<Set>(c"cmt_counter_set")?,
                    gauge_create: host_function::<Create>(c"cmt_gauge_create")?,
                    gauge_set: host_function::<Set>(c"cmt_gauge_set")?,
                })
            }
        })
        .as_ref()
}

/// Why an instance has no metrics on the host.
pub(super) enum Unavailable {
    /// `flb_api` has no cmetrics member (Fluent Bit 1.9) or it is unset (built without metrics).
    NoContext,
    /// The context exists but the host does not export the `cmt_*` functions.
    NoFunctions,
}

/// One output instance's cmetrics context.
pub(super) struct CmtHost {
    cmt: *mut c_void,
    functions: &'static Functions,
    /// What each registered metric is and its `struct cmt_counter *` / `cmt_gauge *`.
    metrics: Vec<(Kind, *mut c_void)>,
}

// SAFETY: the context and its metrics stay valid until Fluent Bit destroys the instance,
// after ExitCtx; the Exporter drops this before ExitCtx returns. cmetrics serializes changes
// to a metric's series map with its own lock (5.x) and updates values atomically, and every
// series is created during Init, before the host's collector reads the context.
unsafe impl Send for CmtHost {}

impl CmtHost {
    /// The instance's context, if the host offers one and the functions to use it.
    ///
    /// # Safety
    /// `get_cmt` must be the host's `output_get_cmt_instance` and `o_ins` this instance.
    pub(super) unsafe fn new(
        get_cmt: Option<unsafe extern "C" fn(*mut c_void) -> *mut c_void>,
        o_ins: *mut c_void,
    ) -> Result<CmtHost, Unavailable> {
        let get_cmt = get_cmt.ok_or(Unavailable::NoContext)?;
        // SAFETY: guaranteed by the caller; the getter returns the instance's `cmt` field.
        let cmt = unsafe { get_cmt(o_ins) };
        if cmt.is_null() {
            return Err(Unavailable::NoContext);
        }
        let functions = functions().ok_or(Unavailable::NoFunctions)?;
        Ok(CmtHost {
            cmt,
            functions,
            metrics: Vec::new(),
        })
    }
}

fn c_strings(values: &[&str]) -> Option<Vec<CString>> {
    values.iter().map(|v| CString::new(*v).ok()).collect()
}

fn pointers(strings: &[CString]) -> Vec<*mut c_char> {
    strings.iter().map(|s| s.as_ptr().cast_mut()).collect()
}

fn now_nanoseconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl MetricsHost for CmtHost {
    fn register(
        &mut self,
        kind: Kind,
        name: &str,
        help: &str,
        label_keys: &[&str],
    ) -> Option<MetricId> {
        let [namespace, subsystem, name, help] = c_strings(&[NAMESPACE, SUBSYSTEM, name, help])?
            .try_into()
            .ok()?;
        let keys = c_strings(label_keys)?;
        let mut key_pointers = pointers(&keys);
        let create = match kind {
            Kind::Counter => self.functions.counter_create,
            Kind::Gauge => self.functions.gauge_create,
        };
        // SAFETY: cmt is the instance's live context; every string is NUL-terminated and
        // outlives the call (cmetrics copies them); the key array holds exactly label_count
        // pointers. cmetrics never writes through the `char *` parameters.
        let metric = unsafe {
            create(
                self.cmt,
                namespace.as_ptr().cast_mut(),
                subsystem.as_ptr().cast_mut(),
                name.as_ptr().cast_mut(),
                help.as_ptr().cast_mut(),
                key_pointers.len() as c_int,
                key_pointers.as_mut_ptr(),
            )
        };
        if metric.is_null() {
            return None;
        }
        self.metrics.push((kind, metric));
        Some(MetricId(self.metrics.len() - 1))
    }

    fn set(&mut self, metric: MetricId, value: f64, label_values: &[&str]) -> bool {
        let Some(&(kind, pointer)) = self.metrics.get(metric.0) else {
            return false;
        };
        let Some(values) = c_strings(label_values) else {
            return false;
        };
        let mut value_pointers = pointers(&values);
        let set = match kind {
            Kind::Counter => self.functions.counter_set,
            Kind::Gauge => self.functions.gauge_set,
        };
        // SAFETY: pointer is a metric this context created (alive as long as the context);
        // the label values are NUL-terminated, outlive the call, and number exactly as many
        // as the metric's keys (the Exporter passes them per metric). Counters are only ever
        // set to running totals by one publisher at a time, so cmetrics never sees one go back.
        let status = unsafe {
            set(
                pointer,
                now_nanoseconds(),
                value,
                value_pointers.len() as c_int,
                value_pointers.as_mut_ptr(),
            )
        };
        status == 0
    }
}
