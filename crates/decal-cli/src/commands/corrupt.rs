//! `decal data corrupt` (placeholder: being implemented).

/// Arguments of `decal data corrupt`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `decal data corrupt`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("decal data corrupt is not implemented yet")
}
