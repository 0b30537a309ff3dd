//! `decal eval` (placeholder: being implemented).

/// Arguments of `decal eval`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `decal eval`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("decal eval is not implemented yet")
}
