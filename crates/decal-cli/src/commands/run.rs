//! `decal run` (placeholder: being implemented).

/// Arguments of `decal run`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `decal run`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("decal run is not implemented yet")
}
