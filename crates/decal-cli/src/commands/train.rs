//! `decal train` (placeholder: being implemented).

/// Arguments of `decal train`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `decal train`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("decal train is not implemented yet")
}
