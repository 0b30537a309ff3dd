//! `decal metrics` (placeholder: being implemented).

/// Arguments of `decal metrics`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `decal metrics`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("decal metrics is not implemented yet")
}
