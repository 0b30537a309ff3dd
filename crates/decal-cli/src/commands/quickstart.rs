//! `decal quickstart` (placeholder: being implemented).

/// Arguments of `decal quickstart`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `decal quickstart`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("decal quickstart is not implemented yet")
}
