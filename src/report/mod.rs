//! What people and machines read: tables, JSON. Renders values; does no I/O of its own.

pub mod output;

/// `--output` of the listing commands.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Output {
    #[default]
    Table,
    Json,
}
