//! `decal calibrate` (placeholder: being implemented).

/// Arguments of `decal calibrate`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `decal calibrate`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("decal calibrate is not implemented yet")
}
