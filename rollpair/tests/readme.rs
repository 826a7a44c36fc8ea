//! The example of README.md ("Using the API"), kept compiling and correct.

use eggroll_core::functions::MapValues;
use eggroll_rollpair::{Options, RollPairContext};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Scale {
    factor: i64,
}
#[eggroll_core::function]
impl MapValues for Scale {
    fn map_values(&self, v: i64) -> i64 {
        v * self.factor
    }
}

#[test]
fn readme_example_runs() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let ctx = RollPairContext::standalone(dir.path())?;
    let table = ctx.parallelize((0..1000i64).map(|i| (i, i)), Options::partitions(4))?;
    let scaled = table.map_values(&Scale { factor: 3 })?;
    let total = scaled.reduce(&eggroll_core::functions::builtin::SumI64)?;
    assert_eq!(total, Some(3 * 999 * 1000 / 2));
    ctx.stop()?;
    Ok(())
}
