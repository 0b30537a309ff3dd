//! `decal import` (placeholder: being implemented).

/// Arguments of `decal import`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `decal import`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("decal import is not implemented yet")
}
