//! `movie-recs serve --profile-svg FILE`: a CPU flamegraph of the server's
//! run, sampled 999 times a second with SIGPROF (pprof-rs), written on
//! shutdown. Compiled in with `--features profiling` (`make profile`).

use anyhow::Result;
use std::path::Path;

#[cfg(feature = "profiling")]
pub type Guard = Option<pprof::ProfilerGuard<'static>>;
/// Nothing to hold without the profiler.
#[cfg(not(feature = "profiling"))]
pub struct Guard;

#[cfg(feature = "profiling")]
pub fn start(out: Option<&Path>) -> Result<Guard> {
    Ok(match out {
        Some(_) => Some(
            pprof::ProfilerGuardBuilder::default()
                .frequency(999)
                .blocklist(&["libc", "libgcc", "pthread", "vdso"])
                .build()?,
        ),
        None => None,
    })
}

#[cfg(feature = "profiling")]
pub fn finish(guard: Guard, out: Option<&Path>) -> Result<()> {
    if let (Some(g), Some(path)) = (guard, out) {
        let report = g.report().build()?;
        let file = std::fs::File::create(path)?;
        report.flamegraph(file)?;
        eprintln!("CPU flamegraph written to {}", path.display());
    }
    Ok(())
}

#[cfg(not(feature = "profiling"))]
pub fn start(out: Option<&Path>) -> Result<Guard> {
    if out.is_some() {
        anyhow::bail!("--profile-svg needs a build with --features profiling (make profile)");
    }
    Ok(Guard)
}

#[cfg(not(feature = "profiling"))]
pub fn finish(_guard: Guard, _out: Option<&Path>) -> Result<()> {
    Ok(())
}
