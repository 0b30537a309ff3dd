//! One module per subcommand: argument struct (clap derive) + `run`.

pub mod calibrate;
pub mod corrupt;
pub mod data;
pub mod eval;
pub mod heads;
pub mod import;
pub mod metrics;
pub mod quickstart;
pub mod report;
pub mod run;
pub mod train;
pub mod unit;
