//! `decal data …` (placeholder: being implemented).

/// `decal data` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum DataCommand {
    /// Generate a CIFAR-10-C style corruption benchmark from a 32×32 dataset ("generated corruptions").
    Corrupt(super::corrupt::Args),
    /// Counts, image sizes and statistics of a dataset.
    Inspect(InspectArgs),
}

/// Arguments of `decal data inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {}

/// Runs a `decal data` subcommand.
pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    if let DataCommand::Corrupt(a) = cmd {
        return super::corrupt::run(a);
    }
    anyhow::bail!("decal data is not implemented yet")
}
