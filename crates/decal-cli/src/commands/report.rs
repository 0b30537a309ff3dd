//! `decal report` (placeholder: being implemented).

/// Arguments of `decal report`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `decal report`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("decal report is not implemented yet")
}
