//! `eggroll._native.Federation`: one party's federation session through its roll-site, for
//! `eggroll.federation` (EggRoll's `RollSiteContext`, as FATE's eggroll federation calls it).
//! Every call blocks with Python's lock released, so FATE's pushes and pulls run on threads.

use crate::{err, Context, Table};
use eggroll_federation::{BlockingFederation, FederationOptions, Party, Received};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::time::Duration;

/// The `(role, party_id)` pairs FATE names parties by.
fn parties(list: Vec<(String, String)>) -> PyResult<Vec<Party>> {
    if list.is_empty() {
        return Err(PyValueError::new_err(
            "no party to send to: give (role, party_id) pairs",
        ));
    }
    Ok(list.iter().map(|(r, p)| Party::new(r, p)).collect())
}

/// One party's federation session, talking to its roll-site at `rollsite` (`host:port`).
#[pyclass(module = "eggroll._native", frozen)]
pub(crate) struct Federation {
    fed: BlockingFederation,
}

#[pymethods]
impl Federation {
    /// A federation session `session_id` as `role`/`party_id`; a get fails once no data came
    /// for `get_idle_timeout_ms` (0: the roll-site config's default); the parties it exchanges
    /// with hear that it lives every `heartbeat_interval_ms` (None: the default; 0: never).
    #[new]
    #[pyo3(signature = (rollsite, session_id, role, party_id, get_idle_timeout_ms=0,
        heartbeat_interval_ms=None))]
    fn new(
        py: Python<'_>,
        rollsite: String,
        session_id: String,
        role: String,
        party_id: String,
        get_idle_timeout_ms: u64,
        heartbeat_interval_ms: Option<u64>,
    ) -> PyResult<Self> {
        let mut opts = FederationOptions::default();
        if get_idle_timeout_ms > 0 {
            opts.get_idle_timeout = Duration::from_millis(get_idle_timeout_ms);
        }
        if let Some(ms) = heartbeat_interval_ms {
            opts.heartbeat_interval = Duration::from_millis(ms);
        }
        let me = Party::new(&role, &party_id);
        let fed = py
            .allow_threads(|| BlockingFederation::connect(&rollsite, &session_id, me, opts))
            .map_err(err)?;
        Ok(Self { fed })
    }

    /// Sends `data` to `parties`; returns the bytes sent to each.
    fn remote_bytes(
        &self,
        py: Python<'_>,
        data: &[u8],
        name: &str,
        tag: &str,
        parties: Vec<(String, String)>,
    ) -> PyResult<u64> {
        let to = self::parties(parties)?;
        let data = bytes::Bytes::copy_from_slice(data);
        py.allow_threads(|| self.fed.remote_bytes(data, name, tag, &to))
            .map_err(err)
    }

    /// Sends the byte table `table` to `parties`, from where its partitions are; returns
    /// the bytes of table data sent to each.
    fn remote_table(
        &self,
        py: Python<'_>,
        table: PyRef<'_, Table>,
        name: &str,
        tag: &str,
        parties: Vec<(String, String)>,
    ) -> PyResult<u64> {
        let to = self::parties(parties)?;
        // The push holds its own handle: the Python object is not borrowed while it runs.
        let t = table.table()?.clone();
        drop(table);
        py.allow_threads(|| self.fed.remote_byte_table(&t, name, tag, &to))
            .map_err(err)
    }

    /// What `role`/`party_id` sent under `name`/`tag`: `bytes`, or a `Table` of `ctx`'s session.
    fn get(
        &self,
        py: Python<'_>,
        ctx: &Context,
        name: &str,
        tag: &str,
        role: &str,
        party_id: &str,
    ) -> PyResult<PyObject> {
        let from = Party::new(role, party_id);
        let got = py
            .allow_threads(|| self.fed.get_any(&ctx.ctx, name, tag, &from))
            .map_err(err)?;
        Ok(match got {
            Received::Object(b) => PyBytes::new(py, &b).into_any().unbind(),
            Received::Table(t) => Py::new(py, Table { t: Some(t) })?.into_any(),
        })
    }

    /// Tells `parties` that this party gave up, and why: their gets fail with `reason`.
    fn abort(&self, py: Python<'_>, reason: &str, parties: Vec<(String, String)>) -> PyResult<()> {
        let to = self::parties(parties)?;
        py.allow_threads(|| self.fed.abort(reason, &to))
            .map_err(err)
    }

    /// The session id.
    #[getter]
    fn session_id(&self) -> String {
        self.fed.session().to_string()
    }
}
